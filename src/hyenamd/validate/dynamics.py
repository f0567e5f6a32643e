"""Dynamical metrics: mean-squared displacement, diffusion coefficient, velocity autocorrelation.

Both correlation functions are averaged over atoms (per group, e.g. per species) and over
time origins taken every ``origin_every`` frames; each origin lives for ``max_lag`` frames.
Only the live origins' snapshots are kept, so memory is ``(max_lag / origin_every + 1)``
arrays of [n_atoms, 3], whatever the trajectory length (this is the windowed-origin
estimator; with ``origin_every = 1`` it is the usual all-origins average).

    MSD(τ)  = < |x_i(t0 + τ) − x_i(t0)|² >_{i, t0}         Å²   (x unwrapped in time)
    VACF(τ) = < v_i(t0) · v_i(t0 + τ) >_{i, t0}            Å²/fs²
    D       = slope of MSD(τ) / (2 d),  d = 3              fitted on a window of lags
    D_GK    = (1 / d) ∫_0^τmax VACF(τ) dτ                  (Green–Kubo, trapezoid rule)

D is returned in Å²/ps (1 Å²/fs = 1000 Å²/ps; 1 Å²/ps = 10⁻⁸ m²/s). Water at 300 K:
D ≈ 0.23 Å²/ps (2.3 × 10⁻⁹ m²/s).

Frames must be equally spaced in time (checked by :func:`frame_interval`); unwrapping is done
by the caller (:class:`hyenamd.validate.trajectory.Unwrapper`). Centre-of-mass drift of the
whole system can be removed (``remove_com``) before the MSD.
"""

from __future__ import annotations

import numpy as np

__all__ = ["CorrelationAccumulator", "diffusion_coefficient", "frame_interval", "green_kubo_diffusion"]

#: Å²/fs → Å²/ps
A2_PER_FS_TO_A2_PER_PS = 1000.0


def frame_interval(times: np.ndarray, rtol: float = 1e-4) -> float:
    """The constant spacing (fs) of ``times`` [n_frames]; raises if frames are not equally spaced."""
    t = np.asarray(times, dtype=np.float64)
    if len(t) < 2:
        raise ValueError("need at least two frames for time correlations")
    dt = np.diff(t)
    if dt[0] <= 0 or np.any(np.abs(dt - dt[0]) > rtol * abs(dt[0])):
        raise ValueError(
            f"frames are not equally spaced in time (intervals {dt.min():g}…{dt.max():g} fs): "
            "time correlations need a constant frame interval"
        )
    return float(dt.mean())


class CorrelationAccumulator:
    """Streams a time-correlation function of per-atom vectors, averaged per group.

    kind: ``"msd"`` (|a(t0+τ) − a(t0)|², a = unwrapped positions) or ``"vacf"``
    (a(t0)·a(t0+τ), a = velocities). groups: [n_atoms] int in [0, n_groups) (e.g. species
    types). ``update(a)`` once per frame, frames equally spaced; ``result()`` →
    ``(lags [max_lag + 1] in frames, values [n_groups, max_lag + 1])`` averaged over atoms of
    each group and all origins that reached that lag.
    """

    def __init__(
        self,
        kind: str,
        groups: np.ndarray,
        max_lag: int,
        origin_every: int = 1,
        *,
        masses: np.ndarray | None = None,
        remove_com: bool = False,
    ) -> None:
        if kind not in ("msd", "vacf"):
            raise ValueError(f"kind must be 'msd' or 'vacf', got {kind!r}")
        if max_lag < 1 or origin_every < 1:
            raise ValueError(f"need max_lag >= 1 and origin_every >= 1, got {max_lag}, {origin_every}")
        self.kind = kind
        self.groups = np.asarray(groups, dtype=np.int64)
        self.n_groups = int(self.groups.max()) + 1 if len(self.groups) else 0
        self.group_size = np.bincount(self.groups, minlength=self.n_groups).astype(np.float64)
        self.max_lag, self.origin_every = int(max_lag), int(origin_every)
        self.weights = None
        if remove_com:
            m = np.ones(len(self.groups)) if masses is None else np.asarray(masses, dtype=np.float64)
            self.weights = m / m.sum()
        self._origins: dict[int, np.ndarray] = {}
        self._sum = np.zeros((self.n_groups, self.max_lag + 1))
        self._count = np.zeros(self.max_lag + 1)
        self.n_frames = 0

    def update(self, a: np.ndarray) -> None:
        a = np.asarray(a, dtype=np.float64)
        if self.weights is not None:
            a = a - self.weights @ a  # remove centre-of-mass position (or velocity)
        t = self.n_frames
        if t % self.origin_every == 0:
            self._origins[t] = a.copy()
        for t0 in list(self._origins):
            lag = t - t0
            a0 = self._origins[t0]
            per_atom = ((a - a0) ** 2).sum(1) if self.kind == "msd" else (a * a0).sum(1)
            self._sum[:, lag] += np.bincount(self.groups, weights=per_atom, minlength=self.n_groups)
            self._count[lag] += 1
            if lag >= self.max_lag:
                del self._origins[t0]
        self.n_frames += 1

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        lags = np.arange(self.max_lag + 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            vals = self._sum / (self._count[None, :] * self.group_size[:, None])
        return lags[self._count > 0], vals[:, self._count > 0]


def diffusion_coefficient(
    lag_times: np.ndarray,
    msd: np.ndarray,
    fit: tuple[float, float] = (0.2, 0.8),
    dim: int = 3,
    *,
    fit_ps: tuple[float, float] | None = None,
) -> tuple[float, float]:
    """Diffusion coefficient (Å²/ps) from a straight-line fit ``MSD = 2 d D τ + c``.

    lag_times: [n] fs; msd: [n] Å²; the fit uses lags between ``fit[0]`` and ``fit[1]`` of the
    largest lag (skipping the ballistic start and the noisy end), or, with ``fit_ps``, lags in
    ``[fit_ps[0], min(fit_ps[1], largest lag)]`` picoseconds. Returns ``(D, intercept Å²)``.
    """
    t = np.asarray(lag_times, dtype=np.float64)
    y = np.asarray(msd, dtype=np.float64)
    if fit_ps is not None:
        lo_fs, hi_fs = 1000.0 * fit_ps[0], 1000.0 * fit_ps[1]
        if not 0 <= lo_fs < hi_fs:
            raise ValueError(f"fit_ps must satisfy 0 <= start < end, got {fit_ps}")
        sel = (t >= lo_fs - 1e-9) & (t <= hi_fs + 1e-9) & np.isfinite(y)
        window = f"{fit_ps} ps"
    else:
        lo, hi = fit
        if not 0 <= lo < hi <= 1:
            raise ValueError(f"fit window must satisfy 0 <= start < end <= 1, got {fit}")
        sel = (t >= lo * t.max()) & (t <= hi * t.max()) & np.isfinite(y)
        window = str(fit)
    if sel.sum() < 2:
        raise ValueError(f"too few lags ({int(sel.sum())}) in the MSD fit window {window}")
    slope, intercept = np.polyfit(t[sel], y[sel], 1)
    return float(slope / (2 * dim) * A2_PER_FS_TO_A2_PER_PS), float(intercept)


def green_kubo_diffusion(lag_times: np.ndarray, vacf: np.ndarray, dim: int = 3) -> float:
    """Diffusion coefficient (Å²/ps) as ``(1/d) ∫ VACF dτ`` (trapezoid); lag_times fs, vacf Å²/fs²."""
    t = np.asarray(lag_times, dtype=np.float64)
    c = np.asarray(vacf, dtype=np.float64)
    return float(np.trapezoid(c, t) / dim * A2_PER_FS_TO_A2_PER_PS)
