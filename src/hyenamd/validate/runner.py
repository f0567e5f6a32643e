"""``validate(reference, surrogate)``: analyse both trajectories, compare, optionally report.

    from hyenamd.validate import ValidateConfig, validate
    result = validate("ref.h5", "surrogate.zarr", ValidateConfig(), model="model.safetensors",
                      out_dir="validation/")
    print(result.table()); result.passed

The reference is analysed first: its first frame gives the bond list, its mean temperature
the blow-up limit of the surrogate, its cell (with the surrogate's) the common RDF range.
Inputs are checked (same atoms, same species) before any analysis.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hyenamd.validate.accuracy import AccuracyResult, evaluate_model, evenly_spaced
from hyenamd.validate.analysis import TrajectoryStats, analyze_trajectory, rdf_range
from hyenamd.validate.config import ValidateConfig
from hyenamd.validate.metrics import GROUPS, Metric, compare
from hyenamd.validate.stability import infer_bonds
from hyenamd.validate.trajectory import Trajectory

__all__ = ["ValidationResult", "as_trajectory", "validate"]


@dataclass
class ValidationResult:
    """Metrics and the statistics behind them. ``passed``: no judged metric failed."""

    metrics: list[Metric]
    reference: TrajectoryStats
    surrogate: TrajectoryStats
    config: ValidateConfig
    ensemble: str = "unknown"
    accuracy: AccuracyResult | None = None
    baseline: TrajectoryStats | None = None
    notes: list[str] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(m.passed is not False for m in self.metrics)

    @property
    def failed(self) -> list[Metric]:
        return [m for m in self.metrics if m.passed is False]

    def metric(self, name: str) -> Metric:
        for m in self.metrics:
            if m.name == name:
                return m
        raise KeyError(f"no metric {name!r}; have {[m.name for m in self.metrics]}")

    def table(self) -> str:
        """The metrics as a plain-text table (what the CLI prints)."""
        from hyenamd.validate.report import format_limit, format_value

        spread = any(m.spread is not None for m in self.metrics)
        head = ("group", "metric", "value", "limit", "status") + (("baseline run",) if spread else ())
        rows = [head]
        for m in self.metrics:
            status = {True: "PASS", False: "FAIL", None: "-"}[m.passed]
            row = (m.group, m.name, format_value(m.value, m.unit), format_limit(m), status)
            if spread:
                row += ("" if m.spread is None else format_value(m.spread, m.unit),)
            rows.append(row)
        widths = [max(len(r[k]) for r in rows) for k in range(len(head))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        if spread:
            lines.append(
                "(baseline run: the same metric for an independent reference run against the reference)"
            )
        n_fail = len(self.failed)
        lines.append(f"\n{'PASSED' if self.passed else f'FAILED ({n_fail} metric(s))'}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: every metric, pass/fail, settings, notes."""
        return {
            "passed": self.passed,
            "n_failed": len(self.failed),
            "ensemble": self.ensemble,
            "sources": self.sources,
            "metrics": [m.to_dict() for m in self.metrics],
            "by_group": {
                g: {m.name: m.to_dict()["value"] for m in self.metrics if m.group == g} for g in GROUPS
            },
            "trajectories": {
                name: _summary(st)
                for name, st in (
                    ("reference", self.reference),
                    ("surrogate", self.surrogate),
                    ("baseline", self.baseline),
                )
                if st is not None
            },
            "config": asdict(self.config),
            "notes": self.notes,
        }


def _summary(st: TrajectoryStats) -> dict[str, Any]:
    def f(x):
        return None if x is None or not math.isfinite(x) else float(x)

    return {
        "n_atoms": st.n_atoms,
        "n_frames_analysed": st.n_frames,
        "duration_ps": st.duration / 1000.0,
        "blowup_time_ps": "inf" if not math.isfinite(st.blowup_time) else st.blowup_time / 1000.0,
        "blowup_reason": st.blowup_reason,
        "diffusion_A2_per_ps": {k: f(v) for k, v in st.diffusion.items()},
        "diffusion_green_kubo_A2_per_ps": {k: f(v) for k, v in st.diffusion_gk.items()},
        "mean_rg_A": None if st.rg is None else float(st.rg.mean()),
        "mean_temperature_K": None if st.temperature is None else f(float(np.nanmean(st.temperature))),
        "nve_drift_meV_per_atom_ps": None if st.drift is None else f(st.drift.drift),
        "n_backbone_residues": 0 if st.torsions is None else int(st.torsions["n_residues"]),
    }


def as_trajectory(source: Trajectory | str | os.PathLike) -> Trajectory:
    """A trajectory object, or a store path opened with :func:`hyenamd.validate.store.open_trajectory`."""
    if isinstance(source, str | os.PathLike):
        from hyenamd.validate.store import open_trajectory

        return open_trajectory(source)
    if not isinstance(source, Trajectory):
        raise TypeError(f"expected a Trajectory or a store path, got {type(source).__name__}")
    return source


def _check_same_system(ref: Trajectory, other: Trajectory, what: str) -> None:
    if len(ref.species) != len(other.species):
        raise ValueError(f"{what} has {len(other.species)} atoms, the reference {len(ref.species)}")
    if not np.array_equal(np.asarray(ref.species), np.asarray(other.species)):
        k = int(np.flatnonzero(np.asarray(ref.species) != np.asarray(other.species))[0])
        raise ValueError(f"{what} and the reference differ in species (first at atom {k})")
    if len(other) < 2:
        raise ValueError(f"{what} has {len(other)} frame(s): at least two are needed")


def _load_model(model: Any, device: str, compile: bool | str = False):
    """The accuracy model: a potential as given or a checkpoint loaded, wrapped when ``compile``."""
    if model is None:
        return None
    from hyenamd.engine.compile_switch import compiled_potential

    if hasattr(model, "forward"):
        return compiled_potential(model, compile)
    from hyenamd.surrogate import load_model

    return compiled_potential(load_model(model, device=device), compile)


def validate(
    reference: Trajectory | str | os.PathLike,
    surrogate: Trajectory | str | os.PathLike,
    cfg: ValidateConfig | None = None,
    *,
    model: Any = None,
    baseline: Trajectory | str | os.PathLike | None = None,
    out_dir: str | os.PathLike | None = None,
    echo=print,
) -> ValidationResult:
    """Compare a surrogate trajectory with reference MD of the same system (see module docstring).

    model: an ``nn.Module`` potential or a checkpoint path, evaluated on ``cfg.accuracy_frames``
    reference frames (which must hold forces). baseline: a second independent reference run;
    its metrics against the reference give the ``spread`` column. out_dir: write the report
    there (:func:`hyenamd.validate.report.write_report`).
    """
    cfg = cfg or ValidateConfig()
    sources = {
        k: str(v)
        for k, v in (("reference", reference), ("surrogate", surrogate), ("baseline", baseline))
        if isinstance(v, str | os.PathLike)
    }
    ref, sur = as_trajectory(reference), as_trajectory(surrogate)
    base = None if baseline is None else as_trajectory(baseline)
    if len(ref) < 2:
        raise ValueError(f"the reference has {len(ref)} frame(s): at least two are needed")
    _check_same_system(ref, sur, "the surrogate trajectory")
    if base is not None:
        _check_same_system(ref, base, "the baseline trajectory")
    model = _load_model(model, cfg.device, cfg.compile)

    first = next(iter(ref.frames(0, 1)))
    bonds = infer_bonds(first.positions, ref.species, first.cell, first.pbc, cfg.bond_factor)
    trajs = [t for t in (ref, sur, base) if t is not None]
    periodic = [bool(np.all(next(iter(t.frames(0, 1))).pbc)) for t in trajs]
    r_max = min(rdf_range(t, cfg) for t in trajs) if all(periodic) else None

    echo(f"validate: reference {len(ref)} frames, surrogate {len(sur)} frames, {len(ref.species)} atoms")
    ref_st = analyze_trajectory(ref, cfg, bonds=bonds, rdf_r_max=r_max, name="reference")
    t_mean = float(np.nanmean(ref_st.temperature)) if ref_st.temperature is not None else math.nan
    t_max = cfg.max_temperature_factor * t_mean if math.isfinite(t_mean) else math.inf
    sur_st = analyze_trajectory(
        sur, cfg, bonds=bonds, rdf_r_max=r_max, max_temperature=t_max, name="surrogate"
    )
    base_st = None
    if base is not None:
        base_st = analyze_trajectory(base, cfg, bonds=bonds, rdf_r_max=r_max, name="baseline")

    accuracy = None
    if model is not None:
        idx = evenly_spaced(len(ref), cfg.accuracy_frames)
        accuracy = evaluate_model(model, ref, idx, device=cfg.device, progress=cfg.progress)

    ensemble = cfg.ensemble
    if ensemble == "auto":
        ensemble = str(sur.info.get("ensemble", "unknown")).lower()
    metrics = compare(ref_st, sur_st, cfg, accuracy=accuracy, baseline=base_st, ensemble=ensemble)
    notes = ref_st.notes + sur_st.notes + ([] if base_st is None else base_st.notes)
    if r_max is not None and r_max < cfg.rdf_r_max:
        notes.append(f"RDF range clamped to {r_max:.3f} Å (half the narrowest cell width)")
    if not len(bonds[0]):
        notes.append("no covalent bonds found in the reference's first frame")
    result = ValidationResult(metrics, ref_st, sur_st, cfg, ensemble, accuracy, base_st, notes, sources)
    if out_dir is not None:
        from hyenamd.validate.report import write_report

        path = write_report(result, Path(out_dir))
        echo(f"validate: report written to {path}")
    return result
