"""Settings of ``hyenamd validate``: what to analyse, and the thresholds a surrogate must meet.

:class:`ValidateConfig` maps 1:1 onto the YAML presets in ``configs/validate/`` (``default``,
``water``, ``protein``, ``tiny``). Every threshold may be ``null`` to report a metric without
judging it. Units: Å, fs (ps where the name says so), eV (meV/atom where it says so).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Selection", "Thresholds", "ValidateConfig"]

Selection = Literal["none", "all", "heavy", "solute", "backbone", "ca"]


@dataclass(frozen=True)
class Thresholds:
    """Pass/fail limits (``None`` = report only).

    max_rdf_mae: mean |g_sur(r) − g_ref(r)| over the bins, per judged species pair.
    max_rg_rel_error: |<Rg>_sur − <Rg>_ref| / <Rg>_ref of the solute.
    min_rmsf_correlation, max_rmsf_mae (Å): per-atom RMSF of the RMSF selection.
    max_torsion_js: Jensen–Shannon divergence (base 2) of the φ/ψ Ramachandran histograms.
    max_diffusion_rel_error: |D_sur / D_ref − 1| per judged group.
    max_vacf_mae: mean |C_sur(t) − C_ref(t)| of the normalised VACFs C(t)/C(0).
    max_temperature_rel_error: |⟨T_sur⟩ / T − 1| with T the thermostat temperature (``temperature_k``,
    else the reference's mean; judged for NVT runs only).
    min_kinetic_ks_p: Kolmogorov–Smirnov p-value of the surrogate's kinetic energies against the
    canonical Gamma(3N/2, k_B T) (frames thinned by their statistical inefficiency; NVT only).
    max_nve_drift: |drift| of the surrogate's total energy, meV/atom/ps (judged for NVE runs only).
    max_drift_ratio: |drift| · duration / σ(E_kin) (NVE only).
    require_no_blowup: fail when the surrogate has a non-finite or over-hot frame.
    min_simulated_time_ps: the surrogate must reach this time without blow-up.
    max_broken_bond_fraction: fraction of bonds with an excursion > bond_excursion Å.
    max_detached_h: most hydrogens detached in any frame.
    max_force_rel_rmse: force RMSE / σ(reference forces) on held-out frames (needs ``--model``).
    max_energy_mae: meV/atom;  max_force_rmse: eV/Å.
    """

    max_rdf_mae: float | None = 0.05
    max_rg_rel_error: float | None = 0.1
    min_rmsf_correlation: float | None = 0.5
    max_rmsf_mae: float | None = 0.5
    max_torsion_js: float | None = 0.1
    max_diffusion_rel_error: float | None = 0.2
    max_vacf_mae: float | None = None
    max_temperature_rel_error: float | None = 0.03
    min_kinetic_ks_p: float | None = 0.01
    max_nve_drift: float | None = 1.0
    max_drift_ratio: float | None = None
    require_no_blowup: bool = True
    min_simulated_time_ps: float | None = None
    max_broken_bond_fraction: float | None = 0.0
    max_detached_h: int | None = 0
    max_force_rel_rmse: float | None = 0.1
    max_energy_mae: float | None = None
    max_force_rmse: float | None = None


@dataclass(frozen=True)
class ValidateConfig:
    """What ``hyenamd validate`` analyses (fields map 1:1 onto ``configs/validate/*.yaml``).

    stride, max_frames: analyse every stride-th frame, at most max_frames of them (per trajectory).
    rdf_r_max (Å, clamped to half the narrowest cell width), rdf_bins, rdf_max_frames (the RDF
    is averaged over at most this many evenly spread analysed frames), rdf_pairs (judged pairs
    such as "O-O"; empty = all).
    msd_max_lag_fraction: longest MSD/VACF lag as a fraction of the analysed duration;
    msd_origins: time origins alive at once (memory = msd_origins + 1 frames of positions);
    msd_fit: lag window of the diffusion fit (fractions of the longest lag); msd_fit_ps: the
    window in picoseconds instead (``[start, end]``, None: use msd_fit); the longest lag is then
    at most ``end``, so the fit's statistical error shrinks as the runs grow (a window that is a
    fraction of the run does not: BENCHMARKS.md "What an exact run scores"); remove_com: remove
    the centre-of-mass drift before the MSD; diffusion_groups: judged groups, element symbols
    or "all" (empty = "all").
    rmsf_selection, align_selection (superposition atoms, "none" = no alignment), rg_selection:
    named selections (see :func:`hyenamd.validate.trajectory.select`).
    torsion_bins: bins per angle of the φ/ψ histograms.
    bond_factor: bonded when d < factor · (r_cov,i + r_cov,j); bond_excursion: Å;
    h_detach_factor: a hydrogen is detached with no heavy atom X within factor · (r_H + r_X).
    max_temperature_factor: a surrogate frame hotter than this × the reference's mean
    temperature counts as a blow-up.
    ensemble: "auto" reads the surrogate store's ``ensemble`` attribute (drift is judged only
    for "nve", temperature and the kinetic-energy distribution only for "nvt"; unknown =
    reported, not judged). temperature_k: the thermostat temperature of NVT runs (K; None: the
    reference's mean temperature).
    accuracy_frames: held-out reference frames the model (``--model``) is evaluated on.
    spread_factor: with a baseline (a second, independent reference run), metrics that have a
    reference spread are judged against ``spread × spread_factor`` (or ``spread /
    spread_factor`` for correlations) instead of the fixed thresholds; None = only shown.
    device: where the model runs.  progress: show progress bars.
    compile: run the model (``--model``) through the compiled small-system path: false (default),
    true (inductor) or a ``torch.compile`` backend name (:mod:`hyenamd.engine.compile_switch`;
    each accuracy frame is one system of the reference's size, so one graph serves them all;
    the first call compiles for 30-50 s, so it pays only for many frames).
    """

    stride: int = 1
    max_frames: int | None = None
    rdf_r_max: float = 8.0
    rdf_bins: int = 160
    rdf_max_frames: int = 200
    rdf_pairs: tuple[str, ...] = ()
    msd_max_lag_fraction: float = 0.5
    msd_origins: int = 20
    msd_fit: tuple[float, float] = (0.2, 0.8)
    msd_fit_ps: tuple[float, float] | None = None
    remove_com: bool = True
    diffusion_groups: tuple[str, ...] = ()
    rmsf_selection: Selection = "solute"
    align_selection: Selection = "backbone"
    rg_selection: Selection = "solute"
    torsion_bins: int = 36
    bond_factor: float = 1.2
    bond_excursion: float = 0.5
    h_detach_factor: float = 1.5
    max_temperature_factor: float = 5.0
    ensemble: Literal["auto", "nve", "nvt", "npt"] = "auto"
    temperature_k: float | None = None
    accuracy_frames: int = 50
    spread_factor: float | None = None
    device: str = "cpu"
    progress: bool = True
    compile: bool | str = False
    thresholds: Thresholds = field(default_factory=Thresholds)

    def __post_init__(self) -> None:
        problems = []
        if self.stride < 1:
            problems.append(f"stride must be >= 1, got {self.stride}")
        if self.max_frames is not None and self.max_frames < 2:
            problems.append(f"max_frames must be >= 2 or null, got {self.max_frames}")
        if self.rdf_r_max <= 0 or self.rdf_bins < 1 or self.rdf_max_frames < 1:
            problems.append("need rdf_r_max > 0, rdf_bins >= 1 and rdf_max_frames >= 1")
        if not 0 < self.msd_max_lag_fraction <= 1:
            problems.append(f"msd_max_lag_fraction must be in (0, 1], got {self.msd_max_lag_fraction}")
        if self.msd_origins < 1:
            problems.append(f"msd_origins must be >= 1, got {self.msd_origins}")
        lo, hi = self.msd_fit
        if not 0 <= lo < hi <= 1:
            problems.append(f"msd_fit must satisfy 0 <= start < end <= 1, got {self.msd_fit}")
        if self.msd_fit_ps is not None and not 0 <= self.msd_fit_ps[0] < self.msd_fit_ps[1] < math.inf:
            problems.append(f"msd_fit_ps must satisfy 0 <= start < end (ps, finite), got {self.msd_fit_ps}")
        if self.torsion_bins < 2:
            problems.append(f"torsion_bins must be >= 2, got {self.torsion_bins}")
        if (
            min(self.bond_factor, self.bond_excursion, self.h_detach_factor) <= 0
            or self.max_temperature_factor <= 1
        ):
            problems.append(
                "need bond_factor, bond_excursion, h_detach_factor > 0 and max_temperature_factor > 1"
            )
        if self.accuracy_frames < 1:
            problems.append(f"accuracy_frames must be >= 1, got {self.accuracy_frames}")
        if self.temperature_k is not None and not self.temperature_k > 0:
            problems.append(f"temperature_k must be positive or null, got {self.temperature_k}")
        if self.spread_factor is not None and self.spread_factor <= 0:
            problems.append(f"spread_factor must be positive or null, got {self.spread_factor}")
        if not isinstance(self.compile, bool):
            from hyenamd.engine.compile_switch import compile_backend

            try:
                compile_backend(self.compile, what="compile")
            except (TypeError, ValueError) as e:
                problems.append(str(e))
        if problems:
            raise ValueError("; ".join(problems))
