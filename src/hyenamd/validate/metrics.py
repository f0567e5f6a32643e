"""Reference-vs-surrogate metrics with pass/fail against the thresholds of :class:`ValidateConfig`.

:func:`compare` turns two :class:`~hyenamd.validate.analysis.TrajectoryStats` (and optionally a
model's :class:`~hyenamd.validate.accuracy.AccuracyResult`) into a list of :class:`Metric`.
A metric is *judged* when its threshold is set (``passed`` True/False) and informational
otherwise (``passed`` None). With a baseline (a second independent reference run) each
comparison metric also gets ``spread``: the same metric between the two references.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from hyenamd.validate.accuracy import AccuracyResult
from hyenamd.validate.analysis import TrajectoryStats
from hyenamd.validate.canonical import kinetic_energy_test
from hyenamd.validate.config import ValidateConfig
from hyenamd.validate.dynamics import diffusion_coefficient
from hyenamd.validate.torsions import jensen_shannon

__all__ = ["Metric", "compare", "pair_metrics"]

GROUPS = ("stability", "energy", "structure", "dynamics", "accuracy")


@dataclass(frozen=True)
class Metric:
    """One row of the report.

    group: stability/energy/structure/dynamics/accuracy; name: e.g. ``rdf_mae[O-O]``; value in
    ``unit``; reference/surrogate: the underlying per-trajectory values where that makes sense;
    limit and op (``"<="`` or ``">="``): the threshold judged; passed: True/False, or None when
    not judged; spread: the same metric between two reference runs (None without a baseline).
    """

    group: str
    name: str
    value: float
    unit: str = ""
    description: str = ""
    reference: float | None = None
    surrogate: float | None = None
    limit: float | None = None
    op: str = "<="
    passed: bool | None = None
    spread: float | None = None

    def to_dict(self) -> dict[str, object]:
        """JSON-ready: NaN becomes null, ±inf the strings "inf" / "-inf"."""

        def clean(v):
            if isinstance(v, float) and not math.isfinite(v):
                return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
            return v

        return {k: clean(v) for k, v in asdict(self).items()}


def _judge(value: float, limit: float | None, op: str) -> bool | None:
    if limit is None:
        return None
    if not math.isfinite(value) and not (op == ">=" and value == math.inf):
        return False
    return value <= limit if op == "<=" else value >= limit


def _m(group, name, value, unit, desc, limit=None, op="<=", ref=None, sur=None) -> Metric:
    value = float(value)
    return Metric(group, name, value, unit, desc, ref, sur, limit, op, _judge(value, limit, op))


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 2 or np.std(a) == 0 or np.std(b) == 0:
        return 1.0 if np.allclose(a, b) else math.nan
    return float(np.corrcoef(a, b)[0, 1])


def pair_metrics(ref: TrajectoryStats, sur: TrajectoryStats, cfg: ValidateConfig) -> list[Metric]:
    """The metrics that compare two trajectories' statistics (structure and dynamics)."""
    th = cfg.thresholds
    out: list[Metric] = []
    # --- structure
    if ref.rdf and sur.rdf:
        judged = set(cfg.rdf_pairs) or set(ref.rdf)
        for pair, g_ref in ref.rdf.items():
            if pair in sur.rdf and len(sur.rdf[pair]) == len(g_ref):
                mae = float(np.mean(np.abs(sur.rdf[pair] - g_ref)))
                lim = th.max_rdf_mae if pair in judged else None
                out.append(_m("structure", f"rdf_mae[{pair}]", mae, "", f"mean |Δg(r)| of {pair}", lim))
    if ref.rg is not None and sur.rg is not None:
        r, s = float(ref.rg.mean()), float(sur.rg.mean())
        out.append(
            _m(
                "structure",
                "rg_rel_error",
                abs(s - r) / r,
                "",
                "|ΔRg| / Rg_ref (solute)",
                th.max_rg_rel_error,
                ref=r,
                sur=s,
            )
        )
    if ref.rmsf is not None and sur.rmsf is not None and len(ref.rmsf) == len(sur.rmsf):
        corr = _pearson(ref.rmsf, sur.rmsf)
        out.append(
            _m(
                "structure",
                "rmsf_correlation",
                corr,
                "",
                "Pearson r of per-atom RMSF",
                th.min_rmsf_correlation,
                ">=",
            )
        )
        mae = float(np.mean(np.abs(ref.rmsf - sur.rmsf)))
        out.append(
            _m(
                "structure",
                "rmsf_mae",
                mae,
                "Å",
                "mean |ΔRMSF| per atom",
                th.max_rmsf_mae,
                ref=float(ref.rmsf.mean()),
                sur=float(sur.rmsf.mean()),
            )
        )
        if ref.rmsf_residues is not None and sur.rmsf_residues is not None and len(ref.rmsf_residues[1]) > 1:
            out.append(
                _m(
                    "structure",
                    "rmsf_residue_correlation",
                    _pearson(ref.rmsf_residues[1], sur.rmsf_residues[1]),
                    "",
                    "Pearson r of per-residue RMSF",
                )
            )
    if ref.torsions is not None and sur.torsions is not None:
        rr, ss = ref.torsions, sur.torsions
        if rr["rama"].shape == ss["rama"].shape and rr["rama"].sum() and ss["rama"].sum():
            out.append(
                _m(
                    "structure",
                    "torsion_js",
                    jensen_shannon(rr["rama"], ss["rama"]),
                    "",
                    "Jensen–Shannon divergence of φ/ψ histograms",
                    th.max_torsion_js,
                )
            )
            for ang in ("phi", "psi"):
                out.append(
                    _m(
                        "structure",
                        f"torsion_js[{ang}]",
                        jensen_shannon(rr[ang], ss[ang]),
                        "",
                        f"JS divergence of {ang}",
                    )
                )
    # --- dynamics
    judged_groups = set(cfg.diffusion_groups) or {"all"}
    for g, d_ref in ref.diffusion.items():
        if g in sur.diffusion and d_ref > 0:
            d_ref, d_sur = _common_window_diffusion(
                ref, sur, g, cfg.msd_fit, d_ref, sur.diffusion[g], fit_ps=cfg.msd_fit_ps
            )
            lim = th.max_diffusion_rel_error if g in judged_groups else None
            out.append(
                _m(
                    "dynamics",
                    f"diffusion_rel_error[{g}]",
                    abs(d_sur / d_ref - 1),
                    "",
                    f"|D_sur / D_ref − 1| of {g} (D in Å²/ps, both fitted on the shorter run's lag window)",
                    lim,
                    ref=d_ref,
                    sur=d_sur,
                )
            )
    if ref.vacf and sur.vacf and "all" in ref.vacf and "all" in sur.vacf:
        mae = _vacf_mae(ref.lag_times, ref.vacf["all"], sur.lag_times, sur.vacf["all"])
        if math.isfinite(mae):
            out.append(_m("dynamics", "vacf_mae", mae, "", "mean |ΔC(t)/C(0)| (all atoms)", th.max_vacf_mae))
    return out


def _common_window_diffusion(
    ref, sur, g: str, fit, d_ref: float, d_sur: float, *, fit_ps: tuple[float, float] | None = None
) -> tuple[float, float]:
    """Both diffusion coefficients fitted on the same lags: the fit window of the shorter run.

    Each run's own D is fitted on a window scaled to its own longest lag, so a 5-ps run and a
    10-ps reference would compare slopes at different lag times (in a liquid the MSD is not a
    straight line below ~1 ps), a systematic error measured at 20–30 % on 108-atom argon.
    Falls back to the runs' own values when the curves are missing.
    """
    if ref.lag_times is None or sur.lag_times is None or g not in ref.msd or g not in sur.msd:
        return d_ref, d_sur
    t_max = min(float(np.max(ref.lag_times)), float(np.max(sur.lag_times)))
    out = []
    for st in (ref, sur):
        sel = np.asarray(st.lag_times) <= t_max + 1e-9
        try:
            out.append(
                diffusion_coefficient(
                    np.asarray(st.lag_times)[sel], np.asarray(st.msd[g])[sel], fit, fit_ps=fit_ps
                )[0]
            )
        except ValueError:
            return d_ref, d_sur
    return out[0], out[1]


def _vacf_mae(t_ref, c_ref, t_sur, c_sur) -> float:
    """Mean |C_sur/C_sur(0) − C_ref/C_ref(0)| at the surrogate's lags within the common range."""
    if c_ref[0] <= 0 or c_sur[0] <= 0:
        return math.nan
    tmax = min(t_ref[-1], t_sur[-1])
    sel = t_sur <= tmax + 1e-9
    ref_at = np.interp(t_sur[sel], t_ref, c_ref / c_ref[0])
    return float(np.mean(np.abs(c_sur[sel] / c_sur[0] - ref_at)))


def compare(
    ref: TrajectoryStats,
    sur: TrajectoryStats,
    cfg: ValidateConfig,
    *,
    accuracy: AccuracyResult | None = None,
    baseline: TrajectoryStats | None = None,
    ensemble: str = "unknown",
) -> list[Metric]:
    """All metrics of a surrogate trajectory against a reference (see the module docstring)."""
    th = cfg.thresholds
    out: list[Metric] = []
    # --- stability
    blown = math.isfinite(sur.blowup_time)
    stable_ps = (sur.blowup_time if blown else sur.duration) / 1000.0
    out.append(
        _m(
            "stability",
            "blowup_time",
            sur.blowup_time / 1000.0,
            "ps",
            "time to the first non-finite or over-hot frame (inf: none)",
            math.inf if th.require_no_blowup else None,
            ">=",
        )
    )
    out.append(
        _m(
            "stability",
            "stable_time",
            stable_ps,
            "ps",
            "simulated time before any blow-up",
            th.min_simulated_time_ps,
            ">=",
            ref=ref.duration / 1000.0,
        )
    )
    if sur.bonds is not None:
        b = sur.bonds
        out.append(
            _m(
                "stability",
                "broken_bond_fraction",
                b["broken_fraction"],
                "",
                f"bonds ever off their first-frame length by > {cfg.bond_excursion} Å (of {b['n_bonds']})",
                th.max_broken_bond_fraction,
            )
        )
        out.append(
            _m("stability", "max_bond_excursion", b["max_excursion"], "Å", "largest |d − d0| of any bond")
        )
        if b["n_hydrogens"]:
            out.append(
                _m(
                    "stability",
                    "detached_h",
                    b["max_detached_h"],
                    "",
                    "most H without a heavy-atom partner in a frame",
                    th.max_detached_h,
                )
            )
    # --- energy
    if sur.temperature is not None and ref.temperature is not None:
        out.append(
            _m(
                "energy",
                "mean_temperature",
                float(np.nanmean(sur.temperature)),
                "K",
                "mean temperature",
                ref=float(np.nanmean(ref.temperature)),
                sur=float(np.nanmean(sur.temperature)),
            )
        )
    out.extend(_canonical_metrics(ref, sur, cfg, ensemble))
    if sur.drift is not None:
        nve = ensemble == "nve"
        why = "" if nve else f" (not judged: ensemble {ensemble})"
        out.append(
            _m(
                "energy",
                "nve_drift",
                abs(sur.drift.drift),
                "meV/atom/ps",
                "|slope| of the total energy" + why,
                th.max_nve_drift if nve else None,
                ref=None if ref.drift is None else ref.drift.drift,
                sur=sur.drift.drift,
            )
        )
        if math.isfinite(sur.drift.drift_ratio):
            out.append(
                _m(
                    "energy",
                    "drift_ratio",
                    sur.drift.drift_ratio,
                    "",
                    "|drift| · duration / σ(E_kin)" + why,
                    th.max_drift_ratio if nve else None,
                    ref=None if ref.drift is None else ref.drift.drift_ratio,
                )
            )
    # --- structure and dynamics, with the reference spread when a baseline is given
    pairs = pair_metrics(ref, sur, cfg)
    if baseline is not None:
        spread = {m.name: m.value for m in pair_metrics(ref, baseline, cfg)}
        pairs = [_with_spread(m, spread.get(m.name), cfg.spread_factor) for m in pairs]
    out.extend(pairs)
    # --- accuracy
    if accuracy is not None:
        a = accuracy
        n = f" ({a.n_frames} held-out frames)"
        out.append(
            _m(
                "accuracy",
                "force_rel_rmse",
                a.force_rel_rmse,
                "",
                "force RMSE / σ(F_ref)" + n,
                th.max_force_rel_rmse,
            )
        )
        out.append(
            _m(
                "accuracy",
                "force_rmse",
                a.force_rmse,
                "eV/Å",
                "force RMSE",
                th.max_force_rmse,
                ref=a.force_ref_std,
            )
        )
        out.append(_m("accuracy", "force_mae", a.force_mae, "eV/Å", "force MAE"))
        if math.isfinite(a.energy_mae):
            out.append(
                _m("accuracy", "energy_mae", a.energy_mae, "meV/atom", "energy MAE", th.max_energy_mae)
            )
            out.append(_m("accuracy", "energy_rmse", a.energy_rmse, "meV/atom", "energy RMSE"))
    return out


def _canonical_metrics(ref: TrajectoryStats, sur: TrajectoryStats, cfg: ValidateConfig, ensemble: str):
    """⟨T⟩ against the thermostat's T and a KS test of K against Gamma(3N/2, k_B T) (judged for NVT)."""
    th = cfg.thresholds
    t_target = cfg.temperature_k
    if t_target is None and ref.temperature is not None:
        t_target = float(np.nanmean(ref.temperature))
    if t_target is None or not t_target > 0:
        return []
    nvt = ensemble == "nvt"
    why = "" if nvt else f" (not judged: ensemble {ensemble})"
    out = []
    if sur.temperature is not None:
        t_sur = float(np.nanmean(sur.temperature))
        out.append(
            _m(
                "energy",
                "temperature_rel_error",
                abs(t_sur / t_target - 1),
                "",
                f"|⟨T⟩ / {t_target:.4g} K − 1|" + why,
                th.max_temperature_rel_error if nvt else None,
                ref=t_target,
                sur=t_sur,
            )
        )
    if sur.kinetic_energy is not None and sur.n_frames >= 2:
        kt = kinetic_energy_test(sur.kinetic_energy, 3 * sur.n_atoms, t_target)
        out.append(
            _m(
                "energy",
                "kinetic_ks_p",
                kt.p_value,
                "",
                f"KS p-value of K vs Gamma(3N/2, k_B·{t_target:.4g} K) ({kt.n} frames, every {kt.every}){why}",
                th.min_kinetic_ks_p if nvt else None,
                ">=",
                sur=kt.statistic,
            )
        )
    return out


def _with_spread(m: Metric, spread: float | None, factor: float | None) -> Metric:
    if spread is None:
        return m
    limit, passed = m.limit, m.passed
    if factor is not None and m.limit is not None:
        limit = spread * factor if m.op == "<=" else spread / factor
        passed = _judge(m.value, limit, m.op)
    return Metric(
        m.group, m.name, m.value, m.unit, m.description, m.reference, m.surrogate, limit, m.op, passed, spread
    )
