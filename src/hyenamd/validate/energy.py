"""Energy conservation: NVE drift by a linear fit, and its size relative to the KE fluctuation.

For total energy E(t) = E_pot + E_kin (eV) sampled at times t (fs) of an NVE run of N atoms:

    E(t) ≈ E_0 + s t                        least-squares line, s in eV/fs
    drift         = s / N · 10⁶             meV/atom/ps   (eV→meV ×10³, 1/fs→1/ps ×10³)
    drift_ratio   = |s| · (t_end − t_0) / σ(E_kin)
    noise_ratio   = σ(E − line) / σ(E_kin)

``drift_ratio`` compares the energy gained or lost over the whole run with the natural size
of the kinetic-energy fluctuations (≪ 1 for a well-conserving integrator); ``noise_ratio`` is
the classic short-time conservation measure (the fluctuation of the conserved quantity
relative to that of the kinetic energy). Units: eV, fs in; meV/atom/ps out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hyenamd.units import kinetic_energy_ev, temperature_k

__all__ = ["EnergyDrift", "energy_drift", "frame_kinetic_energy", "linear_fit", "temperature_series"]


def linear_fit(t: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares line ``y ≈ slope · t + intercept`` over the finite samples; ``(slope, intercept)``."""
    t = np.asarray(t, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    ok = np.isfinite(t) & np.isfinite(y)
    if ok.sum() < 2:
        raise ValueError("a linear fit needs at least two finite samples")
    slope, intercept = np.polyfit(t[ok], y[ok], 1)
    return float(slope), float(intercept)


@dataclass(frozen=True)
class EnergyDrift:
    """Result of :func:`energy_drift` (see the module docstring for the definitions).

    drift: meV/atom/ps; slope: eV/fs; intercept: eV; total_change: ``slope · duration`` eV;
    ke_std: σ(E_kin) eV (NaN without kinetic energies); drift_ratio, noise_ratio: dimensionless.
    """

    drift: float
    slope: float
    intercept: float
    total_change: float
    ke_std: float
    drift_ratio: float
    noise_ratio: float


def energy_drift(
    times: np.ndarray, total_energy: np.ndarray, n_atoms: int, kinetic_energy: np.ndarray | None = None
) -> EnergyDrift:
    """NVE drift of ``total_energy`` [n_frames] eV at ``times`` [n_frames] fs for ``n_atoms`` atoms."""
    t = np.asarray(times, dtype=np.float64)
    e = np.asarray(total_energy, dtype=np.float64)
    if t.shape != e.shape:
        raise ValueError(f"times {t.shape} and energies {e.shape} differ in shape")
    if n_atoms < 1:
        raise ValueError(f"n_atoms must be positive, got {n_atoms}")
    slope, intercept = linear_fit(t, e)
    ok = np.isfinite(t) & np.isfinite(e)
    duration = float(t[ok].max() - t[ok].min())
    resid_std = float(np.std(e[ok] - (slope * t[ok] + intercept)))
    ke_std = float("nan")
    if kinetic_energy is not None:
        ke = np.asarray(kinetic_energy, dtype=np.float64)
        ke_std = float(np.std(ke[np.isfinite(ke)]))
    with np.errstate(invalid="ignore", divide="ignore"):
        drift_ratio = abs(slope) * duration / ke_std if ke_std > 0 else float("nan")
        noise_ratio = resid_std / ke_std if ke_std > 0 else float("nan")
    return EnergyDrift(
        drift=slope / n_atoms * 1e6,
        slope=slope,
        intercept=intercept,
        total_change=slope * duration,
        ke_std=ke_std,
        drift_ratio=float(drift_ratio),
        noise_ratio=float(noise_ratio),
    )


def frame_kinetic_energy(masses: np.ndarray, velocities: np.ndarray) -> float:
    """Kinetic energy (eV) of one frame: masses [n] amu, velocities [n, 3] Å/fs."""
    return float(kinetic_energy_ev(np.asarray(masses, np.float64), np.asarray(velocities, np.float64)))


def temperature_series(kinetic_energy: np.ndarray, n_atoms: int, n_constraints: int = 0) -> np.ndarray:
    """Temperatures (K) of kinetic energies [n_frames] eV with ``3 n_atoms − 3 − n_constraints`` dof."""
    dof = max(3 * n_atoms - 3 - n_constraints, 1)
    return np.array([temperature_k(k, dof) for k in np.asarray(kinetic_energy, np.float64)])
