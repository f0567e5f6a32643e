"""One streaming pass over a trajectory that feeds every metric's accumulator.

:func:`analyze_trajectory` reads each analysed frame once (a store is never loaded whole) and
returns :class:`TrajectoryStats`: the per-trajectory statistics (RDFs, Rg series, RMSF,
torsion histograms, MSD/VACF, energy series and drift, bond excursions, blow-up time) that
:func:`hyenamd.validate.metrics.compare` then turns into reference-vs-surrogate metrics.

The pass stops at the first blown-up frame (non-finite, or hotter than ``max_temperature``):
every statistic describes the frames before it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from hyenamd.elements import SYMBOLS
from hyenamd.units import BOLTZMANN_EV_PER_K
from hyenamd.validate.config import ValidateConfig
from hyenamd.validate.dynamics import (
    CorrelationAccumulator,
    diffusion_coefficient,
    frame_interval,
    green_kubo_diffusion,
)
from hyenamd.validate.energy import EnergyDrift, energy_drift, frame_kinetic_energy
from hyenamd.validate.stability import BondMonitor, blowup_reason
from hyenamd.validate.structure import RDFAccumulator, RMSFAccumulator, radius_of_gyration, residue_average
from hyenamd.validate.torsions import TorsionAccumulator
from hyenamd.validate.trajectory import Trajectory, Unwrapper, half_width, make_whole, select

__all__ = ["TrajectoryStats", "analysed_frames", "analyze_trajectory", "rdf_range"]


@dataclass
class TrajectoryStats:
    """Statistics of one trajectory (units: Å, fs, eV; D in Å²/ps). Absent parts are None/empty."""

    n_atoms: int
    n_frames: int  # analysed frames before any blow-up
    times: np.ndarray  # [n_frames] fs
    duration: float  # fs, first to last analysed frame
    blowup_time: float = math.inf  # fs after the first frame
    blowup_reason: str | None = None
    rdf_r: np.ndarray | None = None
    rdf: dict[str, np.ndarray] = field(default_factory=dict)
    rg: np.ndarray | None = None  # [n_frames] Å
    rmsf_atoms: np.ndarray | None = None  # global indices of the RMSF selection
    rmsf: np.ndarray | None = None  # [n_sel] Å
    rmsf_residues: tuple[np.ndarray, np.ndarray] | None = None  # (residue ids, mean RMSF Å)
    torsions: dict[str, object] | None = None
    lag_times: np.ndarray | None = None  # [n_lags] fs
    msd: dict[str, np.ndarray] = field(default_factory=dict)  # group -> [n_lags] Å²
    diffusion: dict[str, float] = field(default_factory=dict)  # group -> Å²/ps
    vacf: dict[str, np.ndarray] = field(default_factory=dict)  # group -> [n_lags] Å²/fs²
    diffusion_gk: dict[str, float] = field(default_factory=dict)  # Green–Kubo, Å²/ps
    potential_energy: np.ndarray | None = None  # [n_frames] eV
    kinetic_energy: np.ndarray | None = None
    temperature: np.ndarray | None = None  # [n_frames] K
    drift: EnergyDrift | None = None
    bonds: dict[str, object] | None = None
    notes: list[str] = field(default_factory=list)


def analysed_frames(traj: Trajectory, cfg: ValidateConfig) -> tuple[int, int]:
    """``(stop, stride)``: the analysed frames are ``range(0, stop, stride)``."""
    n = len(traj)
    stop = n if cfg.max_frames is None else min(n, cfg.max_frames * cfg.stride)
    return stop, cfg.stride


def rdf_range(traj: Trajectory, cfg: ValidateConfig) -> float:
    """RDF r_max of a trajectory: cfg.rdf_r_max clamped to half its first frame's narrowest width."""
    first = next(iter(traj.frames(0, 1)))
    return min(cfg.rdf_r_max, half_width(first.cell, first.pbc))


def _group_labels(species: np.ndarray) -> tuple[np.ndarray, list[str]]:
    zs, groups = np.unique(species, return_inverse=True)
    return groups, [SYMBOLS[z] for z in zs]


def analyze_trajectory(
    traj: Trajectory,
    cfg: ValidateConfig,
    *,
    bonds: tuple[np.ndarray, np.ndarray] | None = None,
    rdf_r_max: float | None = None,
    max_temperature: float = math.inf,
    name: str = "trajectory",
) -> TrajectoryStats:
    """Analyse ``traj`` in one pass (see the module docstring).

    bonds: ``(bonds [n_bonds, 2], first-frame lengths [n_bonds] Å)`` to monitor (the reference's);
    rdf_r_max: common RDF range (so reference and surrogate share bins; None: no RDF unless the
    cell is fully periodic, then :func:`rdf_range`); max_temperature: K, blow-up limit.
    """
    stop, stride = analysed_frames(traj, cfg)
    if stop < 2:
        raise ValueError(f"{name} has {len(traj)} frame(s): at least two are needed")
    species, masses, labels = np.asarray(traj.species), np.asarray(traj.masses, float), traj.labels
    n_atoms = len(species)
    indices = np.arange(0, stop, stride)
    n_frames = len(indices)
    times_all = np.asarray(traj.times, dtype=np.float64)
    notes: list[str] = []
    first = next(iter(traj.frames(0, 1)))

    # --- what can be computed on this trajectory
    rdf = None
    if first.cell is not None and np.all(first.pbc):
        r_max = rdf_r_max if rdf_r_max is not None else rdf_range(traj, cfg)
        rdf = RDFAccumulator(species, r_max, cfg.rdf_bins)
    rdf_every = max(1, math.ceil(n_frames / cfg.rdf_max_frames))
    rg_sel = select(species, labels, cfg.rg_selection) if cfg.rg_selection != "none" else np.zeros(0, int)
    rmsf_sel = (
        select(species, labels, cfg.rmsf_selection) if cfg.rmsf_selection != "none" else np.zeros(0, int)
    )
    rmsf = None
    if len(rmsf_sel) >= 1:
        align = None
        if cfg.align_selection != "none":
            a_sel = select(species, labels, cfg.align_selection)
            align = np.flatnonzero(np.isin(rmsf_sel, a_sel))
            if len(align) < 3:
                align = np.arange(len(rmsf_sel))
        rmsf = RMSFAccumulator(len(rmsf_sel), align)
    torsions = TorsionAccumulator(labels, cfg.torsion_bins)
    groups, group_names = _group_labels(species)
    msd = vacf = None
    dt = None
    try:
        dt = frame_interval(times_all[indices])
    except ValueError as e:
        notes.append(f"{name}: no MSD/VACF ({e})")
    if dt is not None:
        max_lag = max(1, int(cfg.msd_max_lag_fraction * (n_frames - 1)))
        if cfg.msd_fit_ps is not None:  # lags beyond the fit window are not needed
            max_lag = max(1, min(max_lag, math.ceil(1000.0 * cfg.msd_fit_ps[1] / dt - 1e-9)))
        every = max(1, max_lag // cfg.msd_origins)
        msd = CorrelationAccumulator("msd", groups, max_lag, every, masses=masses, remove_com=cfg.remove_com)
        if first.velocities is not None:
            vacf = CorrelationAccumulator(
                "vacf", groups, max_lag, every, masses=masses, remove_com=cfg.remove_com
            )
    monitor = (
        None
        if bonds is None
        else BondMonitor(
            bonds[0], bonds[1], species, threshold=cfg.bond_excursion, detach_factor=cfg.h_detach_factor
        )
    )
    pe_all = traj.observable("potential_energy")
    ke_all = traj.observable("kinetic_energy")
    temp_all = traj.observable("temperature")
    unwrap = Unwrapper()
    offsets: dict[str, np.ndarray] = {}
    done_times, pe, ke, temp, rgs = [], [], [], [], []
    blow_t, reason = math.inf, None
    dof = max(3 * n_atoms - 3, 1)

    frames = traj.frames(0, stop, stride)
    if cfg.progress:
        from hyenamd.progress import progress_bar

        frames = progress_bar(frames, total=n_frames, desc=f"analysing {name}", unit="frame", leave=False)
    for k, fr in enumerate(frames):
        kin = ke_all[fr.index] if ke_all is not None else None
        if kin is None and fr.velocities is not None:
            kin = (
                frame_kinetic_energy(masses, fr.velocities) if np.all(np.isfinite(fr.velocities)) else np.nan
            )
        t_k = (
            temp_all[fr.index]
            if temp_all is not None
            else (None if kin is None else 2 * kin / (dof * BOLTZMANN_EV_PER_K))
        )
        reason = blowup_reason(fr.positions, fr.velocities, t_k, max_temperature)
        if reason is None and pe_all is not None and not np.isfinite(pe_all[fr.index]):
            reason = "non-finite potential energy"
        if reason is not None:
            blow_t = fr.time - first.time
            notes.append(f"{name}: blow-up at t = {blow_t / 1000:.3f} ps (frame {fr.index}): {reason}")
            break
        x = unwrap(fr.positions, fr.cell, fr.pbc)
        if k == 0:  # make the selections whole once; unwrapping keeps them whole afterwards
            for key, sel in (("rg", rg_sel), ("rmsf", rmsf_sel)):
                if len(sel):
                    offsets[key] = make_whole(x[sel], fr.cell, fr.pbc) - x[sel]
        if rdf is not None and k % rdf_every == 0:
            rdf.update(fr.positions, fr.cell, fr.pbc)
        if len(rg_sel):
            rgs.append(radius_of_gyration(x[rg_sel] + offsets["rg"], masses[rg_sel]))
        if rmsf is not None:
            rmsf.update(x[rmsf_sel] + offsets["rmsf"])
        torsions.update(fr.positions, fr.cell, fr.pbc)
        if monitor is not None:
            monitor.update(fr.positions, fr.cell, fr.pbc, fr.time)
        if msd is not None:
            msd.update(x)
        if vacf is not None:
            vacf.update(fr.velocities)
        done_times.append(fr.time)
        pe.append(np.nan if pe_all is None else pe_all[fr.index])
        ke.append(np.nan if kin is None else kin)
        temp.append(np.nan if t_k is None else t_k)

    times = np.array(done_times)
    st = TrajectoryStats(
        n_atoms=n_atoms,
        n_frames=len(times),
        times=times,
        duration=float(times[-1] - times[0]) if len(times) else 0.0,
        blowup_time=blow_t,
        blowup_reason=reason,
        notes=notes,
    )
    if rdf is not None and rdf.n_frames:
        st.rdf_r, st.rdf = rdf.result()
    if rgs:
        st.rg = np.array(rgs)
    if rmsf is not None and rmsf.n_frames >= 2:
        st.rmsf_atoms, st.rmsf = rmsf_sel, rmsf.result()
        if labels is not None:
            st.rmsf_residues = residue_average(st.rmsf, labels.residue_index.numpy()[rmsf_sel])
    if torsions.n_residues and torsions.n_frames:
        st.torsions = torsions.result()
    if msd is not None and msd.n_frames >= 3:
        periodic = first.cell is not None and bool(np.all(first.pbc))
        _finish_correlations(st, msd, vacf, dt, groups, group_names, cfg, periodic)
        if not periodic:
            notes.append(
                f"{name}: not periodic, so no diffusion coefficient (a molecule in vacuum has a bounded MSD)"
            )
    if monitor is not None:
        st.bonds = monitor.result()
    st.potential_energy = np.array(pe) if np.isfinite(pe).any() else None
    st.kinetic_energy = np.array(ke) if np.isfinite(ke).any() else None
    st.temperature = np.array(temp) if np.isfinite(temp).any() else None
    if st.kinetic_energy is not None and st.potential_energy is not None and st.n_frames >= 2:
        st.drift = energy_drift(times, st.potential_energy + st.kinetic_energy, n_atoms, st.kinetic_energy)
    elif traj.observable("total_energy") is not None and st.n_frames >= 2:
        tot = traj.observable("total_energy")[indices[: st.n_frames]]
        st.drift = energy_drift(times, tot, n_atoms, st.kinetic_energy)
    return st


def _finish_correlations(st, msd, vacf, dt, groups, group_names, cfg, periodic: bool) -> None:
    counts = np.bincount(groups, minlength=len(group_names)).astype(float)
    lags, vals = msd.result()
    st.lag_times = lags * dt
    per_group = dict(zip(group_names, vals))
    per_group["all"] = (counts[:, None] * vals).sum(0) / counts.sum()
    st.msd = per_group
    for g, y in per_group.items() if periodic else ():
        try:
            st.diffusion[g] = diffusion_coefficient(st.lag_times, y, cfg.msd_fit, fit_ps=cfg.msd_fit_ps)[0]
        except ValueError as e:
            st.notes.append(f"no diffusion coefficient for {g}: {e}")
    if vacf is not None:
        vl, vv = vacf.result()
        per = dict(zip(group_names, vv))
        per["all"] = (counts[:, None] * vv).sum(0) / counts.sum()
        st.vacf = per
        for g, c in per.items() if periodic else ():
            st.diffusion_gk[g] = green_kubo_diffusion(vl * dt, c)
