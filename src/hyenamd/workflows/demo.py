"""``hyenamd demo`` (``make demo``): reference MD → training → surrogate rollouts → validation.

Stages (each prints progress; the default config, ``configs/demo.yaml``, targets ≤ 10 min on a
2-core CPU; ``configs/demo_tiny.yaml`` runs in CI in about a minute):

0. foundation: a large periodic system (100k atoms by default), its neighbour list and a
   Verlet-list reuse — the data contract and the geometry at scale (``foundation.n_atoms: 0``
   skips it).
1. reference: two independent OpenMM runs of LJ argon (:func:`hyenamd.engine.reference.reference_md`):
   one to train on (NVE segments started from NVT states: deterministic strides for the large
   step, canonical frames for the force field), one continuous NVT run held out for validation
   (different seed).
2. force field: a small G-Hyena trained on energies + forces of the training run.
3. large step: the dynamics head, initialised from the force field, trained on
   ``(x_t, v_t) → (x_{t+k}, v_{t+k})`` with Δτ = k · (frame interval).
4. rollouts: Langevin NVT MD with the force field (dt of the reference) and a learned-propagator
   rollout (O–Φ–O: OU half-steps at the reference's temperature and friction around the dynamics
   head, energy rescale with the force field), both from the held-out run's first frame.
   Runs in-process (the Ray cluster layer is used once ``hyenamd.cluster.run_rollouts`` exists).
5. validation: :func:`hyenamd.validate.validate` of both rollouts against the held-out run
   (Markdown/HTML/JSON report with plots); the metrics tables and the report paths are printed,
   and ``summary.json`` collects every number (timings, OpenMM vs large-step speed).

Argon is the default system: one species, a 4 fs reference step and a pair potential that a
small model learns within the CPU budget (see docs/training.md for why not TIP3P water).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import pathlib
import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from hyenamd.engine.reference import ArgonSettings, ReferenceConfig
from hyenamd.surrogate.model import GHyenaConfig
from hyenamd.surrogate.training import TrainSettings
from hyenamd.system import System
from hyenamd.validate.config import Thresholds, ValidateConfig
from hyenamd.workflows.train import DataConfig, TrainConfig

__all__ = ["DemoConfig", "FoundationStage", "RolloutStage", "liquid_like_system", "run_demo"]


@dataclass(frozen=True)
class FoundationStage:
    """Stage 0: ``n_atoms`` (0 skips it) at ``density`` atoms/Å³; neighbour ``cutoff`` and ``skin`` in Å."""

    n_atoms: int = 100_000
    density: float = 0.1
    cutoff: float = 5.0
    skin: float = 1.0

    def __post_init__(self) -> None:
        if self.n_atoms < 0 or self.density <= 0 or self.cutoff <= 0 or self.skin < 0:
            raise ValueError("need n_atoms >= 0, density > 0, cutoff > 0, skin >= 0")


@dataclass(frozen=True)
class RolloutStage:
    """Stage 4: ``md_steps`` force-field Langevin steps (frames every ``report_interval``),
    ``large_steps`` learned-propagator steps of Δτ each (Δτ = ``large_step_substeps`` × the dynamics
    model's horizon: Φ R applied that many times inside one O–Φ–O stride; R after every Φ, or only
    after the last with ``large_step_rescale_every: stride``); ``skin`` Å of the Verlet lists.
    use_ray: run the force-field rollout through ``hyenamd.cluster.run_rollouts`` on a fresh
    embedded Ray instance (``address="local"``), its actor asking for ``ray_cpus`` CPUs (False:
    in-process). compile: run the force-field rollout's model through the compiled small-system
    path (false, the default; true: inductor; or a ``torch.compile`` backend name:
    :mod:`hyenamd.engine.compile_switch`); the learned propagator has no compiled path.
    ``validate.compile`` does the same for the validation's accuracy model."""

    md_steps: int = 6250
    report_interval: int = 10
    large_steps: int = 500
    large_step_substeps: int = 5
    large_step_rescale_every: Literal["substep", "stride"] = "substep"
    skin: float = 1.0
    use_ray: bool = True
    ray_cpus: int = 1
    compile: bool | str = False

    def __post_init__(self) -> None:
        if not isinstance(self.compile, bool):
            from hyenamd.engine.compile_switch import compile_backend

            compile_backend(self.compile, what="rollout.compile")  # TypeError/ValueError at load
        if (
            self.md_steps < 2
            or self.report_interval < 1
            or self.large_steps < 2
            or self.large_step_substeps < 1
            or self.skin < 0
            or self.ray_cpus < 1
        ):
            raise ValueError(
                "need md_steps >= 2, report_interval >= 1, large_steps >= 2, large_step_substeps >= 1, "
                "skin >= 0, ray_cpus >= 1"
            )


def _default_reference() -> ReferenceConfig:
    return ReferenceConfig(
        system="argon",
        ensemble="nvt",
        temperature_k=90.0,
        friction_per_ps=1.0,
        dt_fs=4.0,
        n_steps=4000,
        report_interval=10,
        equilibration_steps=1000,
        melt_temperature_k=180.0,
        melt_steps=1000,
        store_dtype="float64",
        argon=ArgonSettings(n_cells=3),
        segments="nve",
        segment_steps=500,
        segment_gap_steps=250,
    )


@dataclass(frozen=True)
class DemoConfig:
    """Settings of ``hyenamd demo`` (``configs/demo.yaml``; every section maps onto its own config).

    output_dir: everything the demo writes. reuse_reference: keep reference stores that exist.
    heldout_steps: production steps of the held-out reference run (its seed is reference.seed + 1).
    torch_threads: intra-op threads (0: torch's default). seed: weights and training.
    large_step_max_diffusion_rel_error: the large-step rollout's diffusion tolerance (the force
    field's is ``validate.thresholds.max_diffusion_rel_error``; None: the same for both).
    force_field_checkpoint: skip stage 2 and use this trained force field (same architecture as
    ``model``; e.g. a longer training run); None: train it.
    """

    output_dir: str = "demo_output"
    reuse_reference: bool = True
    heldout_steps: int = 50000
    torch_threads: int = 1
    seed: int = 0
    large_step_max_diffusion_rel_error: float | None = 0.15
    force_field_checkpoint: str | None = None
    foundation: FoundationStage = field(default_factory=FoundationStage)
    reference: ReferenceConfig = field(default_factory=_default_reference)
    data: DataConfig = field(default_factory=lambda: DataConfig(horizon_frames=1, n_segments=5))
    model: GHyenaConfig = field(
        default_factory=lambda: GHyenaConfig(
            species=(18,),
            cutoff=6.0,
            n_scalar=32,
            n_vector=8,
            avg_neighbors=25.0,
            pattern=("local", "global", "local"),
            pair_cutoff=8.5,
        )
    )
    force_field: TrainSettings = field(
        default_factory=lambda: TrainSettings(
            epochs=25,
            batch_size=4,
            lr=5e-3,
            warmup_steps=50,
            ema_decay=0.995,
            monitor="force_rmse",
            patience=6,
        )
    )
    dynamics: TrainSettings = field(
        default_factory=lambda: TrainSettings(
            task="dynamics", epochs=10, batch_size=4, lr=2e-3, noise_std=0.03
        )
    )
    rollout: RolloutStage = field(default_factory=RolloutStage)
    validate: ValidateConfig = field(
        default_factory=lambda: ValidateConfig(
            ensemble="nvt",
            accuracy_frames=20,
            rmsf_selection="none",
            rg_selection="none",
            align_selection="none",
            temperature_k=90.0,
            msd_fit_ps=(0.5, 2.0),
            msd_origins=100,
            thresholds=Thresholds(max_diffusion_rel_error=0.10, max_vacf_mae=0.05),
        )
    )

    def __post_init__(self) -> None:
        if self.heldout_steps < self.reference.report_interval * 2:
            raise ValueError("heldout_steps must cover at least two reference frames")
        if self.torch_threads < 0:
            raise ValueError(f"torch_threads must be >= 0, got {self.torch_threads}")


def liquid_like_system(
    n_atoms: int,
    density: float = 0.1,
    *,
    species: int = 18,
    seed: int = 0,
    triclinic: bool = False,
    dtype: torch.dtype = torch.float32,
) -> System:
    """A periodic box of ``n_atoms`` at ``density`` atoms/Å³: a rattled simple-cubic lattice.

    The lattice is rattled by 0.1 of its spacing, so no two atoms overlap (as in a liquid).
    ``triclinic=True`` shears the cell (positions follow), a test of the triclinic paths.
    """
    rng = np.random.default_rng(seed)
    m = int(np.ceil(n_atoms ** (1 / 3)))
    length = (n_atoms / density) ** (1 / 3)
    grid = np.stack(np.meshgrid(*(np.arange(m),) * 3, indexing="ij"), -1).reshape(-1, 3)[:n_atoms]
    frac = (grid + 0.5 + rng.normal(0, 0.1, grid.shape)) / m
    cell = np.eye(3) * length
    if triclinic:
        cell[1, 0] = 0.2 * length
        cell[2, 0] = -0.1 * length
        cell[2, 1] = 0.15 * length
    return System(
        positions=torch.tensor(frac @ cell, dtype=dtype),
        species=torch.full((n_atoms,), species, dtype=torch.int64),
        cell=torch.tensor(cell, dtype=dtype),
        pbc=True,
    )


def foundation_stage(cfg: FoundationStage, seed: int, echo=print) -> dict[str, float]:
    """Stage 0: build a big periodic system and its neighbour lists; returns timings (s) and counts."""
    from hyenamd.geometry import VerletList, neighbor_list, wrap_positions

    out: dict[str, float] = {}
    echo(f"[0/5] foundation: a {cfg.n_atoms:,}-atom periodic system and its neighbour list")
    t = time.perf_counter()
    system = liquid_like_system(cfg.n_atoms, cfg.density, seed=seed, triclinic=True)
    out["build_s"] = time.perf_counter() - t
    t = time.perf_counter()
    nb = neighbor_list(system.positions, system.cell, system.pbc, cfg.cutoff, full=False)
    out["neighbor_list_s"] = time.perf_counter() - t
    out["pairs"] = len(nb)
    vl = VerletList(cfg.cutoff, cfg.skin, full=False)
    vl(system.positions, system.cell, system.pbc)
    gen = torch.Generator().manual_seed(seed)
    x = wrap_positions(
        system.positions + 0.05 * torch.randn(system.positions.shape, generator=gen), system.cell, system.pbc
    )
    t = time.perf_counter()
    vl(x, system.cell, system.pbc)
    out["verlet_reuse_s"] = time.perf_counter() - t
    echo(
        f"      built in {out['build_s']:.2f} s; {len(nb):,} pairs within {cfg.cutoff} Å "
        f"({2 * len(nb) / cfg.n_atoms:.1f}/atom) in {out['neighbor_list_s']:.2f} s; "
        f"Verlet reuse after a small move {out['verlet_reuse_s']:.2f} s (rebuilds {vl.n_builds})"
    )
    return out


def _trained(res) -> dict:
    """The summary entry of one training stage (a :class:`~hyenamd.workflows.train.TrainResult`)."""
    return {
        "best": str(res.best_path),
        "valid_metrics": res.best_metrics,
        "epochs": res.epochs_run,
        "steps": res.steps,
        "curve": str(res.curve_path),
    }


def run_demo(cfg: DemoConfig = DemoConfig(), *, echo=print) -> dict:
    """Run every stage of ``cfg``; returns the summary that is also written to ``summary.json``."""
    from hyenamd.workflows.demo_stages import (
        openmm_speed,
        reference_stage,
        rollout_dynamics,
        rollout_force_field,
        validate_stage,
    )
    from hyenamd.workflows.train import train

    t_all = time.perf_counter()
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    out = pathlib.Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict = {"config": _jsonable(cfg), "stages_s": {}}
    echo(f"hyenamd demo → {out.resolve()}")

    summary["stages_cpu_s"] = {}

    def timed(name: str, fn, *a, **k):
        t, c = time.perf_counter(), time.process_time()
        r = fn(*a, **k)
        summary["stages_s"][name] = round(time.perf_counter() - t, 2)
        # CPU seconds of this process only (not of Ray workers or OpenMM threads); the stages that run
        # side by side (see concurrent_stages) each count the other's thread too (the Ray driver: ~idle)
        summary["stages_cpu_s"][name] = round(time.process_time() - c, 2)
        return r

    if cfg.foundation.n_atoms:
        summary["foundation"] = timed("foundation", foundation_stage, cfg.foundation, cfg.seed, echo)
    train_store, heldout = timed("reference", reference_stage, cfg, out, echo)
    summary["openmm"] = timed("openmm_speed", openmm_speed, cfg)

    echo("[2/5] force field: energies + forces of the training run")
    data = dataclasses.replace(cfg.data, stores=(str(train_store),))
    ff_cfg = TrainConfig(
        task="force_field",
        output_dir=str(out / "force_field"),
        overwrite=True,  # the demo regenerates its own output_dir on every run
        data=data,
        model=dataclasses.replace(cfg.model, seed=cfg.seed),
        training=dataclasses.replace(cfg.force_field, task="force_field", seed=cfg.seed),
    )
    if cfg.force_field_checkpoint is None:
        ff = timed("train_force_field", train, ff_cfg, echo=echo)
        summary["force_field"] = _trained(ff)
        ff_path = ff.best_path
    else:
        ff_path = pathlib.Path(cfg.force_field_checkpoint)
        if not ff_path.exists():
            raise FileNotFoundError(f"force_field_checkpoint {ff_path} not found")
        echo(f"      using the trained force field {ff_path} (force_field_checkpoint)")
        summary["force_field"] = {"best": str(ff_path), "given": True}

    dyn_cfg = dataclasses.replace(
        ff_cfg,
        task="dynamics",
        output_dir=str(out / "dynamics"),
        init_from=str(ff_path),
        training=dataclasses.replace(cfg.dynamics, task="dynamics", seed=cfg.seed),
    )

    def large_step() -> None:
        """Stage 3 and the large-step half of stage 4 (Φ's training, then its rollout)."""
        dyn = timed("train_dynamics", train, dyn_cfg, echo=echo)
        summary["dynamics"] = _trained(dyn)
        summary["rollout_dynamics"] = timed(
            "rollout_dynamics",
            rollout_dynamics,
            cfg,
            dyn.best_path,
            heldout,
            out / "surrogate_large_step.h5",
            echo,
            energy_model=ff_path,
        )

    def force_field_md() -> None:
        summary["rollout_force_field"] = timed(
            "rollout_force_field", rollout_force_field, cfg, ff_path, heldout, out / "surrogate_md.h5", echo
        )

    if cfg.rollout.use_ray:  # the force-field MD runs on a Ray worker: Φ meanwhile, on the other core
        echo(
            "[3/5] large step (the dynamics head, initialised from the force field) and "
            "[4/5] the force-field MD from the held-out run's first frame, side by side"
        )
        summary["concurrent_stages"] = ["rollout_force_field", "train_dynamics + rollout_dynamics"]
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="large-step") as pool:
            job = pool.submit(large_step)  # torch in a worker thread; Ray stays in the main thread
            t_both = time.perf_counter()
            try:
                force_field_md()
            finally:
                job.result()  # re-raises the large step's error, if any
            summary["stages_s"]["stages_3_4_wall"] = round(time.perf_counter() - t_both, 2)
    else:
        echo("[3/5] large step: the dynamics head, initialised from the force field")
        large_step()
        echo("[4/5] rollouts from the held-out run's first frame")
        force_field_md()
    fs_per_s = summary["rollout_dynamics"]["simulated_fs_per_wall_s"]
    summary["large_step_speedup_vs_openmm"] = fs_per_s / summary["openmm"]["simulated_fs_per_wall_s"]

    echo("[5/5] validation against the held-out reference run")
    summary["validation"] = timed(
        "validate",
        validate_stage,
        cfg,
        heldout,
        ff_path,
        {"force_field_md": out / "surrogate_md.h5", "large_step": out / "surrogate_large_step.h5"},
        out,
        echo,
    )
    summary["total_s"] = round(time.perf_counter() - t_all, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    echo(
        f"\nlarge step: Δτ = {summary['rollout_dynamics']['horizon_fs']:.0f} fs "
        f"({summary['rollout_dynamics']['horizon_fs'] / cfg.reference.dt_fs:.0f} × dt, "
        f"{summary['rollout_dynamics']['substeps']} learned maps Φ per stride); "
        f"{fs_per_s:,.0f} simulated fs per wall second vs OpenMM CPU "
        f"{summary['openmm']['simulated_fs_per_wall_s']:,.0f} ({summary['large_step_speedup_vs_openmm']:.2f}×)"
    )
    echo(f"demo finished in {summary['total_s']:.0f} s; summary: {out / 'summary.json'}")
    for name, v in summary["validation"].items():
        echo(f"  report ({name}): {v['report']}")
    return summary


def _jsonable(cfg) -> dict:
    from hyenamd.config import to_dict

    return to_dict(cfg)


# ---------------------------------------------------------------------- CLI
def add_arguments(p) -> None:
    """``hyenamd demo [--config FILE] [--set KEY=VALUE ...]``."""
    from hyenamd.config import add_config_args

    add_config_args(p, positional=True, config_cls=DemoConfig, example="seed=1")


def run(args) -> int:
    from hyenamd.config import load_config

    cfg = load_config(args.config, DemoConfig, args.overrides)
    run_demo(cfg)
    return 0
