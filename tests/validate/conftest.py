"""Synthetic trajectories with known structure for the validation tests (seeded, tiny)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from hyenamd.system import Labels
from hyenamd.validate.trajectory import ArrayTrajectory


def place(
    a: np.ndarray, b: np.ndarray, c: np.ndarray, bond: float, angle: float, torsion: float
) -> np.ndarray:
    """NeRF: the point d with |cd| = bond, angle(b, c, d) = angle, dihedral(a, b, c, d) = torsion (deg)."""
    ang, tor = np.radians(angle), np.radians(torsion)
    bc = (c - b) / np.linalg.norm(c - b)
    n = np.cross(b - a, bc)
    n /= np.linalg.norm(n)
    m = np.cross(n, bc)
    d2 = np.array([-bond * np.cos(ang), bond * np.sin(ang) * np.cos(tor), bond * np.sin(ang) * np.sin(tor)])
    return c + d2[0] * bc + d2[1] * m + d2[2] * n


def peptide_backbone(phis: list[float], psis: list[float], omega: float = 180.0) -> np.ndarray:
    """Backbone N, CA, C of len(phis) residues with the given φ/ψ (deg); [3 * n_res, 3] Å."""
    x = [np.array([0.0, 1.4, 0.0]), np.array([0.0, 0.0, 0.0]), np.array([1.45, 0.0, 0.0])]  # N CA C of res 0
    # residue 0's N-CA-C angle is arbitrary; later atoms follow ψ_k, ω, φ_{k+1}
    for k in range(1, len(phis)):
        x.append(place(x[-3], x[-2], x[-1], 1.33, 116.0, psis[k - 1]))  # N_k  (ψ_{k-1})
        x.append(place(x[-3], x[-2], x[-1], 1.46, 122.0, omega))  # CA_k (ω)
        x.append(place(x[-3], x[-2], x[-1], 1.52, 111.0, phis[k]))  # C_k  (φ_k)
    return np.array(x)


def backbone_labels(n_res: int) -> Labels:
    return Labels(
        residue_index=torch.arange(n_res).repeat_interleave(3),
        atom_names=("N", "CA", "C") * n_res,
        residue_names=("ALA",) * (3 * n_res),
    )


def water_liquid(
    n_side: int = 4,
    n_frames: int = 40,
    dt: float = 10.0,
    step: float = 0.15,
    seed: int = 0,
    box: float = 12.4,
    channel: float = 0.0,
) -> ArrayTrajectory:
    """Rigid waters on a rattled lattice doing a random walk (translation + rotation), periodic.

    Positions are wrapped into the box (molecules may be split across it); velocities are the
    per-frame displacement / dt; energies: a constant potential plus noise and the kinetic energy.
    """
    rng = np.random.default_rng(seed)
    grid = (
        (np.stack(np.meshgrid(*(np.arange(n_side),) * 3, indexing="ij"), -1).reshape(-1, 3) + 0.5)
        * box
        / n_side
    )
    # an empty channel of radius `channel` along x through the box centre (room for a solute)
    grid = grid[np.linalg.norm(grid[:, 1:] - box / 2, axis=1) >= channel]
    n_mol = len(grid)
    h = np.array([[0.757, 0.586, 0.0], [-0.757, 0.586, 0.0]])  # O–H 0.957 Å
    centres = grid + rng.normal(0, 0.2, grid.shape)
    rot = np.stack([np.linalg.qr(rng.normal(size=(3, 3)))[0] for _ in range(n_mol)])
    pos, vel = [], []
    prev = None
    for _ in range(n_frames):
        x = np.empty((n_mol, 3, 3))
        x[:, 0] = centres
        x[:, 1:] = centres[:, None] + np.einsum("kj,mij->mki", h, rot)
        x = x.reshape(-1, 3)
        vel.append(np.zeros_like(x) if prev is None else (x - prev) / dt)
        prev = x
        pos.append(np.mod(x, box))
        centres = centres + rng.normal(0, step, centres.shape)
        small = rng.normal(0, 0.05, (n_mol, 3))
        for m in range(n_mol):
            w = small[m]
            k = np.array([[0, -w[2], w[1]], [w[2], 0, -w[0]], [-w[1], w[0], 0]])
            rot[m] = np.linalg.qr(rot[m] @ (np.eye(3) + k))[0]
    species = np.tile([8, 1, 1], n_mol)
    vel[0] = vel[1]
    return ArrayTrajectory(
        positions=np.array(pos),
        species=species,
        dt=dt,
        cell=np.eye(3) * box,
        pbc=True,
        velocities=np.array(vel),
        observables={"potential_energy": -10.0 + rng.normal(0, 0.01, n_frames)},
    )


def solvated_peptide(
    n_frames: int = 30,
    n_res: int = 6,
    spread: float = 8.0,
    centre_phi: float = -62.0,
    seed: int = 0,
    box: float = 16.0,
    dt: float = 20.0,
) -> ArrayTrajectory:
    """A helical backbone (φ/ψ fluctuating by ``spread`` degrees about ``centre_phi``/−41°) drifting
    across the periodic boundary, in 4³ random-walking waters. Labels: ALA residues, HOH waters."""
    rng = np.random.default_rng(seed)
    water = water_liquid(n_side=4, n_frames=n_frames, dt=dt, step=0.04, seed=seed, box=box, channel=5.5)
    ideal = peptide_backbone([centre_phi] * n_res, [-41.0] * n_res)
    axis = np.linalg.svd(ideal - ideal.mean(0))[2][0]  # helix axis → x
    v = np.cross(axis, [1.0, 0.0, 0.0])
    kx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    rot = np.eye(3) + kx + kx @ kx / (1 + float(axis @ [1.0, 0.0, 0.0]))  # Rodrigues: axis onto x
    pos, vel = [], []
    shift = np.array([box - 4.0, box / 2, box / 2])  # starts near the +x face, drifts across it
    prev = None
    for k in range(n_frames):
        phis = centre_phi + rng.normal(0, spread, n_res)
        psis = -41.0 + rng.normal(0, spread, n_res)
        pep = peptide_backbone(list(phis), list(psis))
        pep = (pep - pep.mean(0)) @ rot.T + shift + [0.25 * k, 0, 0]
        vel.append(np.zeros_like(pep) if prev is None else (pep - prev) / dt)
        prev = pep
        pos.append(np.concatenate([np.mod(pep, box), water.positions[k]]))
    vel[0] = vel[1]
    n_pep = 3 * n_res
    n_w = len(water.species) // 3
    species = np.concatenate([np.tile([7, 6, 6], n_res), water.species])
    labels = Labels(
        residue_index=torch.cat(
            [torch.arange(n_res).repeat_interleave(3), n_res + torch.arange(n_w).repeat_interleave(3)]
        ),
        atom_names=("N", "CA", "C") * n_res + ("O", "H1", "H2") * n_w,
        residue_names=("ALA",) * n_pep + ("HOH",) * (3 * n_w),
    )
    velocities = np.concatenate([np.array(vel), water.velocities], axis=1)
    return ArrayTrajectory(
        positions=np.array(pos),
        species=species,
        dt=dt,
        cell=np.eye(3) * box,
        pbc=True,
        labels=labels,
        velocities=velocities,
        observables={"potential_energy": water.observables["potential_energy"] - 3.0},
    )


@pytest.fixture(scope="session")
def synth():
    """The helpers above (tests use ``synth.water_liquid(...)``; importlib mode has no conftest import)."""
    return SimpleNamespace(
        place=place,
        peptide_backbone=peptide_backbone,
        backbone_labels=backbone_labels,
        water_liquid=water_liquid,
        solvated_peptide=solvated_peptide,
    )
