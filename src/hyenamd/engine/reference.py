"""Reference MD with OpenMM into a hyenamd store (``hyenamd reference CONFIG``).

``reference_md(config) -> path`` builds one of the systems of
:mod:`hyenamd.engine.reference_systems` (files from installed wheels only), optionally
minimises and equilibrates it, then runs NVT (``LangevinMiddleIntegrator``) or NVE
(``VerletIntegrator``) and writes a frame every ``report_interval`` steps, step 0 included:
positions (Å), velocities (Å/fs), forces (eV/Å), the box (Å) and the observables
``potential_energy``, ``kinetic_energy``, ``total_energy`` (eV) and ``temperature`` (K), with
the topology labels (residues, chains, atom names) in the store's template. Units are
converted here, at the OpenMM boundary, with the constants of :mod:`hyenamd.units`.

NVE segments (``segments: nve``, the training data of the learned large step): after the NVT
equilibration the production is a chain of segments, each ``segment_gap_steps`` of NVT (not
stored: re-thermalisation and decorrelation) followed by ``segment_steps`` of NVE (stored, a
frame every ``report_interval`` steps, the segment's first frame included), switched in one
context by an ``openmm.CompoundIntegrator`` (same Δt). So every stored stride is deterministic
Hamiltonian dynamics started from a canonical (NVT) state; the store's ``segment`` observable
numbers the segments (training pairs never straddle two), ``n_steps`` counts the stored NVE
steps (``n_steps // segment_steps`` segments) and the store's time includes the NVT gaps.

Both OpenMM integrators are leapfrog schemes: the velocities OpenMM reports (and the store
holds) are half a step behind the positions, while OpenMM's kinetic energy is the on-step
estimate; this is OpenMM's own convention, kept as is.

Determinism: the platform (default CPU), its thread count (``threads``, default 1), the
integrator seed (``setRandomNumberSeed``) and the velocity seed are all fixed by the config,
so the same config gives the same store on the same machine and OpenMM version. The CPU
platform is deterministic for a fixed thread count; changing ``threads`` or the platform
changes the rounding of force sums and hence the trajectory. A JSON provenance file
``<output>.provenance.json`` records the config, OpenMM version, platform and properties.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from hyenamd.config import to_dict
from hyenamd.engine.reference_systems import (
    ReferenceSystem,
    alanine_dipeptide,
    argon_box,
    openmm_platform,
    villin_in_water,
    water_box,
)
from hyenamd.units import (
    BOLTZMANN_EV_PER_K,
    KJ_PER_MOL_NM_TO_EV_PER_ANGSTROM,
    KJ_PER_MOL_TO_EV,
    NM_PER_PS_TO_ANGSTROM_PER_FS,
    NM_TO_ANGSTROM,
)

__all__ = ["ArgonSettings", "ReferenceConfig", "build_reference_system", "make_context", "reference_md"]


@dataclass(frozen=True)
class ArgonSettings:
    """LJ argon: ``4 n_cells³`` atoms at ``density`` atoms/Å³; σ, cutoff, switch_on in Å, ε in eV."""

    n_cells: int = 4
    density: float = 0.0212
    sigma: float = 3.405
    epsilon: float = 0.010323
    cutoff: float = 8.5
    switch_on: float | None = 7.5
    rattle: float = 0.05


@dataclass(frozen=True)
class ReferenceConfig:
    """Settings of ``hyenamd reference`` (``configs/reference/*.yaml``).

    system: which reference system. output: the store (``.h5md`` or ``.zarr``); an existing one
    is replaced only with ``overwrite: true``. ensemble: ``nvt`` (LangevinMiddle, friction in
    1/ps) or ``nve`` (Verlet). dt_fs, n_steps (production steps), report_interval (steps per
    frame), equilibration_steps (not stored), minimize (energy minimisation first), seed
    (integrator and initial velocities), platform/threads (OpenMM), store_dtype (positions,
    velocities, forces), water_box_nm / cutoff_nm / rigid_water (water and villin; flexible
    water needs dt ≤ 0.5 fs), peptide_solvent (alanine dipeptide: vacuum or OBC2).
    segments: ``none`` (one continuous run) or ``nve`` (NVT-thermalised NVE segments, see the
    module doc; needs ensemble nvt); segment_steps: stored NVE steps per segment (a multiple of
    report_interval); segment_gap_steps: NVT steps before each segment.
    """

    system: Literal["argon", "water", "villin", "alanine_dipeptide"] = "argon"
    output: str = "reference.h5md"
    overwrite: bool = False
    ensemble: Literal["nvt", "nve"] = "nvt"
    temperature_k: float = 90.0
    friction_per_ps: float = 1.0
    dt_fs: float = 4.0
    n_steps: int = 1000
    report_interval: int = 10
    equilibration_steps: int = 0
    minimize: bool = True
    seed: int = 0
    platform: Literal["CPU", "Reference", "CUDA", "auto"] = "CPU"
    threads: int = 1
    store_dtype: Literal["float32", "float64"] = "float32"
    progress: bool = True
    argon: ArgonSettings = field(default_factory=ArgonSettings)
    water_box_nm: float = 2.0
    cutoff_nm: float = 0.9
    rigid_water: bool = False
    peptide_solvent: Literal["vacuum", "obc2"] = "vacuum"
    segments: Literal["none", "nve"] = "none"
    segment_steps: int = 500
    segment_gap_steps: int = 250
    melt_temperature_k: float | None = None
    melt_steps: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.melt_steps < 0:
            problems.append(f"melt_steps must be >= 0, got {self.melt_steps}")
        if self.melt_steps and not (self.melt_temperature_k or 0) > 0:
            problems.append("melt_steps > 0 needs a positive melt_temperature_k (K)")
        if self.melt_steps and self.ensemble != "nvt":
            problems.append("melting (melt_steps > 0) needs ensemble: nvt (a thermostat heats the system)")
        if not self.dt_fs > 0:
            problems.append(f"dt_fs must be > 0, got {self.dt_fs}")
        if self.n_steps < 0 or self.equilibration_steps < 0:
            problems.append("n_steps and equilibration_steps must be >= 0")
        if self.report_interval < 1:
            problems.append(f"report_interval must be >= 1, got {self.report_interval}")
        if self.temperature_k < 0 or self.friction_per_ps < 0:
            problems.append("temperature_k and friction_per_ps must be >= 0")
        if self.threads < 0:
            problems.append("threads must be >= 0 (0: OpenMM's default)")
        if self.segments == "nve":
            if self.ensemble != "nvt":
                problems.append("segments: nve needs ensemble: nvt (the segments start from NVT states)")
            if self.segment_steps < self.report_interval or self.segment_steps % self.report_interval:
                problems.append(
                    f"segment_steps ({self.segment_steps}) must be a positive multiple of report_interval "
                    f"({self.report_interval})"
                )
            if self.segment_gap_steps < 0 or self.n_steps < self.segment_steps:
                problems.append("need segment_gap_steps >= 0 and n_steps >= segment_steps")
        if problems:
            raise ValueError("; ".join(problems))


def build_reference_system(cfg: ReferenceConfig) -> ReferenceSystem:
    """The OpenMM system named by ``cfg.system``."""
    if cfg.system == "argon":
        return argon_box(**dataclasses.asdict(cfg.argon), seed=cfg.seed)
    if cfg.system == "water":
        return water_box(cfg.water_box_nm, cutoff_nm=cfg.cutoff_nm, rigid_water=cfg.rigid_water)
    if cfg.system == "villin":
        return villin_in_water(cutoff_nm=cfg.cutoff_nm, rigid_water=cfg.rigid_water)
    return alanine_dipeptide(solvent=cfg.peptide_solvent)


def make_context(cfg: ReferenceConfig, ref: ReferenceSystem | None = None):
    """``(ref, context, integrator, platform_properties)`` set up exactly as :func:`reference_md` does
    (positions set, minimised if asked, velocities drawn); no equilibration yet."""
    import openmm
    import openmm.unit as u

    ref = ref or build_reference_system(cfg)
    dt = cfg.dt_fs * 1e-3 * u.picoseconds
    if cfg.ensemble == "nvt":
        integ = openmm.LangevinMiddleIntegrator(
            cfg.temperature_k * u.kelvin, cfg.friction_per_ps / u.picosecond, dt
        )
        integ.setRandomNumberSeed(int(cfg.seed) + 1)  # 0 would mean "pick a random seed"
        if cfg.segments == "nve":  # 0: Langevin (current), 1: Verlet for the NVE segments
            compound = openmm.CompoundIntegrator()
            compound.addIntegrator(integ)
            compound.addIntegrator(openmm.VerletIntegrator(dt))
            compound.setCurrentIntegrator(0)
            integ = compound
    else:
        integ = openmm.VerletIntegrator(dt)
    platform, props = openmm_platform(cfg.platform, cfg.threads)
    ctx = openmm.Context(ref.system, integ, platform, props)
    if ref.system.usesPeriodicBoundaryConditions():
        ctx.setPeriodicBoxVectors(*ref.system.getDefaultPeriodicBoxVectors())
    ctx.setPositions(ref.positions * u.nanometer)
    if cfg.minimize:
        openmm.LocalEnergyMinimizer.minimize(ctx, 10.0, 2000)
    ctx.setVelocitiesToTemperature(cfg.temperature_k * u.kelvin, int(cfg.seed) + 1)
    return ref, ctx, integ, props


def degrees_of_freedom(system) -> int:
    """``3 N − constraints − 3`` (when a CMMotionRemover is present), counting massive particles."""
    import openmm

    n = sum(1 for k in range(system.getNumParticles()) if system.getParticleMass(k)._value > 0)
    dof = 3 * n - system.getNumConstraints()
    if any(isinstance(f, openmm.CMMotionRemover) for f in system.getForces()):
        dof -= 3
    return max(dof, 1)


def state_to_internal(state) -> dict[str, np.ndarray | float]:
    """An OpenMM ``State`` (positions, velocities, forces, energies) in hyenamd units (Å, Å/fs, eV/Å, eV)."""
    import openmm.unit as u

    out: dict[str, np.ndarray | float] = {
        "positions": state.getPositions(asNumpy=True).value_in_unit(u.nanometer) * NM_TO_ANGSTROM,
        "velocities": state.getVelocities(asNumpy=True).value_in_unit(u.nanometer / u.picosecond)
        * NM_PER_PS_TO_ANGSTROM_PER_FS,
        "forces": state.getForces(asNumpy=True).value_in_unit(u.kilojoule_per_mole / u.nanometer)
        * KJ_PER_MOL_NM_TO_EV_PER_ANGSTROM,
        "potential_energy": state.getPotentialEnergy().value_in_unit(u.kilojoule_per_mole) * KJ_PER_MOL_TO_EV,
        "kinetic_energy": state.getKineticEnergy().value_in_unit(u.kilojoule_per_mole) * KJ_PER_MOL_TO_EV,
    }
    box = state.getPeriodicBoxVectors(asNumpy=True)
    if box is not None:
        out["cell"] = np.asarray(box.value_in_unit(u.nanometer)) * NM_TO_ANGSTROM
    return out


def _get_state(ctx):
    return ctx.getState(getPositions=True, getVelocities=True, getForces=True, getEnergy=True)


def _melt(cfg: ReferenceConfig, ctx, integ) -> None:
    """``melt_steps`` of Langevin NVT at ``melt_temperature_k``, then velocities redrawn at the target."""
    import openmm
    import openmm.unit as u

    lang = integ.getIntegrator(0) if isinstance(integ, openmm.CompoundIntegrator) else integ
    lang.setTemperature(cfg.melt_temperature_k * u.kelvin)
    ctx.setVelocitiesToTemperature(cfg.melt_temperature_k * u.kelvin, int(cfg.seed) + 2)
    integ.step(cfg.melt_steps)
    lang.setTemperature(cfg.temperature_k * u.kelvin)
    ctx.setVelocitiesToTemperature(cfg.temperature_k * u.kelvin, int(cfg.seed) + 3)


def reference_md(cfg: ReferenceConfig) -> pathlib.Path:
    """Run the reference MD of ``cfg`` and return the path of the store it wrote."""
    import openmm
    import torch

    from hyenamd.io import open_store
    from hyenamd.progress import progress_bar

    out = pathlib.Path(cfg.output)
    if out.exists() and not cfg.overwrite:
        raise FileExistsError(
            f"{out} already exists; set overwrite: true (or --set overwrite=true) to replace it"
        )
    ref, ctx, integ, props = make_context(cfg)
    periodic = ref.system.usesPeriodicBoundaryConditions()
    dof = degrees_of_freedom(ref.system)
    if cfg.melt_steps:
        _melt(cfg, ctx, integ)
    if cfg.equilibration_steps:
        integ.step(cfg.equilibration_steps)
    first = state_to_internal(_get_state(ctx))
    dtype = torch.float32 if cfg.store_dtype == "float32" else torch.float64
    template = ref.to_hyenamd(dtype=torch.float64)
    template = template.replace(
        positions=torch.as_tensor(first["positions"]),
        cell=torch.as_tensor(first["cell"]) if periodic else None,
    ).to(dtype=dtype)
    units = {"potential_energy": "eV", "kinetic_energy": "eV", "total_energy": "eV", "temperature": "K"}
    if cfg.segments == "nve":
        units["segment"] = ""
    plan = _frame_plan(cfg)
    step = 0

    def record(store, segment: int | None) -> None:
        s = first if step == 0 else state_to_internal(_get_state(ctx))
        pe, ke = float(s["potential_energy"]), float(s["kinetic_energy"])
        extra = {} if segment is None else {"segment": float(segment)}
        store.append(
            s["positions"],
            step=step,
            time=step * cfg.dt_fs,
            velocities=s["velocities"],
            forces=s["forces"],
            cell=s["cell"] if periodic else None,
            potential_energy=pe,
            kinetic_energy=ke,
            total_energy=pe + ke,
            temperature=2.0 * ke / (dof * BOLTZMANN_EV_PER_K),
            **extra,
        )

    with open_store(
        out, "w", system=template, fields=("velocity", "force"), observables=tuple(units), units=units,
        dtype=cfg.store_dtype, overwrite=cfg.overwrite,
    ) as store:  # fmt: skip
        bar = progress_bar(
            total=cfg.n_steps, unit="step", desc=f"reference {ref.name}", disable=not cfg.progress
        )
        for seg, gap, n_stored in plan:
            if gap:  # NVT between NVE segments (not stored)
                integ.setCurrentIntegrator(0)
                integ.step(gap)
                step += gap
            if seg is not None:
                integ.setCurrentIntegrator(1)
            record(store, seg)
            for _ in range(n_stored // cfg.report_interval):
                integ.step(cfg.report_interval)
                step += cfg.report_interval
                bar.update(cfg.report_interval)
                record(store, seg)
        bar.close()
        rest = cfg.n_steps - sum(p[2] for p in plan)
        if rest:  # finish the requested steps (not stored)
            integ.step(rest)
    provenance = {
        "config": to_dict(cfg),
        "system": ref.name,
        "n_atoms": ref.n_atoms,
        "degrees_of_freedom": dof,
        "openmm_version": openmm.__version__,
        "platform": ctx.getPlatform().getName(),
        "platform_properties": props,
        "units": {"length": "Å", "time": "fs", "energy": "eV", "force": "eV/Å", "velocity": "Å/fs"},
        "cutoff_angstrom": _cutoff(ref),
        "velocities": "leapfrog: half a step behind the positions (OpenMM convention)",
        "segments": _segments_note(cfg),
    }
    out.with_name(out.name + ".provenance.json").write_text(json.dumps(provenance, indent=2, default=str))
    return out


def _frame_plan(cfg: ReferenceConfig) -> list[tuple[int | None, int, int]]:
    """``(segment or None, NVT gap steps before it, stored steps)`` of the production run."""
    if cfg.segments == "none":
        return [(None, 0, (cfg.n_steps // cfg.report_interval) * cfg.report_interval)]
    return [(k, cfg.segment_gap_steps, cfg.segment_steps) for k in range(cfg.n_steps // cfg.segment_steps)]


def _segments_note(cfg: ReferenceConfig) -> dict:
    if cfg.segments == "none":
        return {"kind": "none"}
    return {
        "kind": "nve",
        "n_segments": cfg.n_steps // cfg.segment_steps,
        "segment_steps": cfg.segment_steps,
        "segment_gap_steps": cfg.segment_gap_steps,
        "thermalised_by": f"LangevinMiddle {cfg.temperature_k} K, {cfg.friction_per_ps} /ps",
    }


def _cutoff(ref: ReferenceSystem) -> float | None:
    import openmm

    for f in ref.system.getForces():
        if isinstance(f, openmm.NonbondedForce) and f.getNonbondedMethod() != openmm.NonbondedForce.NoCutoff:
            return f.getCutoffDistance()._value * NM_TO_ANGSTROM
    return None


# ---------------------------------------------------------------------- CLI
def add_arguments(p) -> None:
    from hyenamd.config import add_config_args

    add_config_args(p, positional=True, required=True, config_cls=ReferenceConfig, example="n_steps=2000")


def run(args) -> int:
    from hyenamd.config import load_config

    cfg = load_config(args.config, ReferenceConfig, args.overrides)
    path = reference_md(cfg)
    print(f"wrote {path}")
    return 0
