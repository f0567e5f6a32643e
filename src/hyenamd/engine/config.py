"""Typed settings of an MD run (``configs/engine/*.yaml``) and the builders that turn them into objects.

``cfg = load_config("configs/engine/nvt.yaml", MDConfig)``;
``sim = build_simulation(cfg, potential, system)``; ``sim.run_to(cfg.n_steps)``. With
``resume=True`` and an existing ``reporters.checkpoint`` file, the simulation continues from it
(see :mod:`hyenamd.engine.checkpoint`). YAML names no code: the integrator is a ``Literal``.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Literal

import torch
from torch import nn

from hyenamd.engine.guard import BlowUpGuard

__all__ = [
    "GuardSettings",
    "IntegratorSettings",
    "MDConfig",
    "ReporterSettings",
    "build_integrator",
    "build_reporters",
    "build_simulation",
]


@dataclasses.dataclass(frozen=True)
class IntegratorSettings:
    """kind: ``velocity_verlet`` (NVE), ``langevin_baoab`` (NVT) or ``learned`` (O–Φ–O strides of the
    dynamics head; its Δτ is the model's horizon, ``dt_fs`` is then ignored; friction_per_fs 0 is
    its NVE mode). dt_fs, temperature_k (K), friction_per_fs (1/fs), seed (RNG: thermostat noise
    and initial velocities), skin (Å), remove_com, wrap, learned_forces (what the learned
    propagator puts in the state's forces), learned_energy_model (a force-field checkpoint for
    the learned propagator's energy rescale; None: no rescale), learned_sample (draw each stride
    from a stochastic dynamics head's Gaussians)."""

    kind: Literal["velocity_verlet", "langevin_baoab", "learned"] = "langevin_baoab"
    dt_fs: float = 1.0
    temperature_k: float = 300.0
    friction_per_fs: float = 0.01
    seed: int = 0
    skin: float = 1.0
    remove_com: bool = False
    wrap: bool = False
    learned_forces: Literal["none", "conservative"] = "none"
    learned_energy_model: str | None = None
    learned_sample: bool = False


@dataclasses.dataclass(frozen=True)
class GuardSettings:
    """The blow-up guard (``enabled: false`` turns it off); limits as :class:`BlowUpGuard`."""

    enabled: bool = True
    max_temperature_k: float | None = 1.0e4
    max_force: float | None = 100.0
    check_every: int = 10


@dataclasses.dataclass(frozen=True)
class ReporterSettings:
    """Paths (None: no such reporter) and intervals (steps) of the built-in reporters."""

    state_data: str | None = "md.csv"
    state_data_interval: int = 100
    progress: bool = True
    trajectory: str | None = None
    trajectory_interval: int = 100
    velocities: bool = True
    forces: bool = True
    checkpoint: str | None = None
    checkpoint_interval: int = 10_000
    overwrite: bool = False


@dataclasses.dataclass(frozen=True)
class MDConfig:
    """n_steps: the trajectory's total length (a resumed run continues up to it).
    initial_temperature_k: Maxwell-Boltzmann velocities for systems without velocities (None:
    the thermostat temperature for Langevin, zeros otherwise)."""

    n_steps: int = 1000
    initial_temperature_k: float | None = None
    integrator: IntegratorSettings = dataclasses.field(default_factory=IntegratorSettings)
    guard: GuardSettings = dataclasses.field(default_factory=GuardSettings)
    reporters: ReporterSettings = dataclasses.field(default_factory=ReporterSettings)

    def __post_init__(self) -> None:
        if self.n_steps < 0:
            raise ValueError(f"n_steps must be >= 0, got {self.n_steps}")


def build_integrator(cfg: IntegratorSettings, potential: nn.Module):
    """The integrator named by ``cfg.kind`` around ``potential``."""
    common = {"skin": cfg.skin, "remove_com": cfg.remove_com, "wrap": cfg.wrap}
    if cfg.kind == "velocity_verlet":
        from hyenamd.engine.integrators import VelocityVerlet

        return VelocityVerlet(potential, cfg.dt_fs, **common)
    if cfg.kind == "langevin_baoab":
        from hyenamd.engine.integrators import LangevinBAOAB

        return LangevinBAOAB(potential, cfg.dt_fs, cfg.temperature_k, cfg.friction_per_fs, cfg.seed, **common)
    from hyenamd.engine.learned import LearnedPropagator

    energy_model = None
    if cfg.learned_energy_model is not None:
        from hyenamd.surrogate import load_model

        energy_model = load_model(cfg.learned_energy_model, dtype=getattr(potential, "dtype", None))
    return LearnedPropagator(
        potential,
        cfg.temperature_k,
        cfg.friction_per_fs,
        energy_model=energy_model,
        seed=cfg.seed,
        forces=cfg.learned_forces,
        sample=cfg.learned_sample,
        **common,
    )


def build_reporters(cfg: ReporterSettings) -> list:
    from hyenamd.engine.reporters import CheckpointReporter, StateDataReporter, TrajectoryReporter

    out: list = []
    if cfg.state_data is not None or cfg.progress:
        out.append(
            StateDataReporter(
                cfg.state_data, cfg.state_data_interval, progress=cfg.progress, overwrite=cfg.overwrite
            )
        )
    if cfg.trajectory is not None:
        out.append(
            TrajectoryReporter(
                cfg.trajectory, cfg.trajectory_interval, velocities=cfg.velocities, forces=cfg.forces,
                overwrite=cfg.overwrite,
            )
        )  # fmt: skip
    if cfg.checkpoint is not None:
        out.append(CheckpointReporter(cfg.checkpoint, cfg.checkpoint_interval, overwrite=cfg.overwrite))
    return out


def check_resumed_system(path, state, system) -> None:
    """Refuse to resume ``state`` (read from checkpoint ``path``) for a different ``system``.

    Compares the atom count, species, masses and periodicity of every system (``system``: a
    System, a sequence of them, or a Batch); positions and velocities are the checkpoint's.
    """
    from hyenamd.engine.checkpoint import CheckpointError

    if system is None:
        return
    systems = getattr(system, "systems", None)
    systems = (
        systems() if callable(systems) else (list(system) if isinstance(system, list | tuple) else [system])
    )
    if len(systems) != state.n_systems:
        raise CheckpointError(
            f"{path} holds {state.n_systems} system(s) but {len(systems)} were given: not this run's checkpoint"
        )
    for k, sys_k in enumerate(systems):
        saved = state.system(k)
        what = f"system {k}" if len(systems) > 1 else "the system"
        if saved.n_atoms != sys_k.n_atoms:
            raise CheckpointError(
                f"{path} holds a system of {saved.n_atoms} atoms but {what} given has {sys_k.n_atoms}: "
                "not this run's checkpoint (remove it or point reporters.checkpoint elsewhere)"
            )
        if not torch.equal(saved.species.cpu(), sys_k.species.cpu()):
            raise CheckpointError(
                f"{path} holds other species than {what} given (same atom count): not this run's checkpoint"
            )
        if not torch.equal(saved.pbc.cpu(), sys_k.pbc.cpu()) or not torch.allclose(
            saved.masses.cpu().double(), sys_k.masses.cpu().double(), rtol=1e-6
        ):
            raise CheckpointError(f"{path} holds other masses or periodicity than {what} given")


def build_simulation(cfg: MDConfig, potential: nn.Module, system, *, resume: bool = False, device=None):
    """A :class:`~hyenamd.engine.Simulation` for ``cfg`` (resumed from ``reporters.checkpoint`` if asked and present)."""
    from hyenamd.engine.simulation import Simulation

    integrator = build_integrator(cfg.integrator, potential)
    g = cfg.guard
    guard = BlowUpGuard(g.max_temperature_k, g.max_force, g.check_every) if g.enabled else None
    reporters = build_reporters(cfg.reporters)
    ckpt = cfg.reporters.checkpoint
    if resume and ckpt is not None and pathlib.Path(ckpt).exists():
        sim = Simulation.from_checkpoint(ckpt, integrator, reporters, guard=guard, device=device)
        check_resumed_system(ckpt, sim.state, system)
        return sim
    temp = cfg.initial_temperature_k
    if temp is None and cfg.integrator.kind == "langevin_baoab":
        temp = cfg.integrator.temperature_k
    return Simulation(
        integrator, system, reporters, guard=guard, temperature_k=temp, seed=cfg.integrator.seed
    )
