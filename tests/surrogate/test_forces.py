"""compute_forces: forces = -dE/dx and stress = (1/V) dE/dε for a simple pair potential (float64)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from hyenamd import Batch, System
from hyenamd.geometry import batch_neighbor_list, edge_vectors
from hyenamd.surrogate.forces import compute_forces

DT = torch.float64


class SoftPair(nn.Module):
    """E = Σ_pairs (1 - r/rc)³ — smooth at the cutoff, repulsive."""

    cutoff = 3.0

    def forward(self, batch: Batch, neighbors=None):
        nb = neighbors or batch_neighbor_list(batch.positions, batch.cell, batch.pbc, batch.ptr, self.cutoff)
        r = edge_vectors(batch.positions, batch.cell, nb, batch.batch).norm(dim=1)
        e_pair = 0.5 * (1 - r / self.cutoff).clamp(min=0) ** 3
        energies = torch.zeros(batch.n_atoms, dtype=r.dtype).index_add(0, nb.i, e_pair)
        energy = torch.zeros(batch.n_systems, dtype=r.dtype).index_add(0, batch.batch, energies)
        return {"energy": energy, "energies": energies}


def system(seed=0, n=12, periodic=True):
    rng = np.random.default_rng(seed)
    cell = torch.tensor([[4.0, 0, 0], [0.5, 4.2, 0], [-0.3, 0.4, 3.9]], dtype=DT)
    x = torch.tensor(rng.uniform(0, 1, (n, 3)), dtype=DT) @ cell
    return System(x, [18] * n, cell=cell if periodic else None, pbc=periodic)


def test_forces_match_finite_differences():
    model = SoftPair()
    b = Batch.from_systems([system(0), system(1, 7, periodic=False)])
    out = compute_forces(model, b)
    h = 1e-6
    for atom in (0, 3, 14):
        for ax in range(3):
            xp, xm = b.positions.clone(), b.positions.clone()
            xp[atom, ax] += h
            xm[atom, ax] -= h
            ep = model(b.replace(positions=xp))["energy"].sum()
            em = model(b.replace(positions=xm))["energy"].sum()
            fd = -(ep - em) / (2 * h)
            assert abs(float(out["forces"][atom, ax] - fd)) <= 1e-6 * max(1.0, abs(float(fd)))


def test_stress_matches_finite_strain_and_ase_sign():
    model = SoftPair()
    s = system(2, 16)
    b = Batch.from_system(s)
    out = compute_forces(model, b, stress=True)
    vol = float(torch.linalg.det(s.cell))
    h = 1e-6
    for a in range(3):
        for c in range(3):
            eps = torch.zeros(3, 3, dtype=DT)
            eps[a, c] = eps[c, a] = h / (1 if a == c else 2)

            def energy(e):
                d = torch.eye(3, dtype=DT) + e
                return float(model(b.replace(positions=b.positions @ d, cell=b.cell @ d))["energy"][0])

            fd = (energy(eps) - energy(-eps)) / (2 * h) / vol
            assert abs(float(out["stress"][0, a, c]) - fd) <= 1e-6 * max(1e-3, abs(fd))
    # a compressed repulsive system pushes outwards: negative pressure-like diagonal (ASE convention)
    assert float(out["stress"][0].diagonal().sum()) < 0


def test_open_system_gets_zero_stress():
    out = compute_forces(SoftPair(), Batch.from_system(system(3, periodic=False)), stress=True)
    assert torch.equal(out["stress"], torch.zeros(1, 3, 3, dtype=DT))


def test_ghyena_energy_and_forces_identical_with_int32_and_int64_pair_indices():
    """The compact (int32) neighbour list gives the same energy and forces as int64 indices (float64)."""
    from hyenamd.geometry import Neighbors
    from hyenamd.surrogate import GHyena, GHyenaConfig

    torch.manual_seed(0)
    model = GHyena(
        GHyenaConfig(
            species=[18],
            n_scalar=8,
            n_vector=4,
            n_rbf=4,
            cutoff=3.0,
            pattern=["local", "global", "local"],
            dtype="float64",
        )
    )
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))  # zero-initialised residual branches would hide the pairs
    b = Batch.from_systems([system(3, 20), system(4, 9, periodic=False)])
    nb32 = batch_neighbor_list(b.positions, b.cell, b.pbc, b.ptr, model.cutoff)
    assert nb32.i.dtype == torch.int32
    nb64 = Neighbors(nb32.i.long(), nb32.j.long(), nb32.shifts.long(), nb32.full)
    out32 = compute_forces(model, b, neighbors=nb32)
    out64 = compute_forces(model, b, neighbors=nb64)
    assert float(out32["energy"].abs().sum()) > 0 and float(out32["forces"].abs().max()) > 0
    assert torch.equal(out32["energy"], out64["energy"])
    assert torch.equal(out32["forces"], out64["forces"])


def test_inference_freezes_parameters_only_for_the_call_even_when_it_raises():
    """compute_forces switches requires_grad off during the call and restores it, also on errors."""

    class Failing(SoftPair):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones((), dtype=DT))
            self.fixed = nn.Parameter(torch.ones((), dtype=DT), requires_grad=False)
            self.seen = None

        def forward(self, batch, neighbors=None):
            self.seen = (self.w.requires_grad, self.fixed.requires_grad)
            out = super().forward(batch, neighbors)
            if batch.n_atoms == 7:
                raise RuntimeError("boom")
            return {k: v * self.w for k, v in out.items()}

    model = Failing()
    out = compute_forces(model, Batch.from_system(system(5)))
    assert model.seen == (False, False) and out["forces"].abs().max() > 0
    assert model.w.requires_grad and not model.fixed.requires_grad and model.w.grad is None
    with pytest.raises(RuntimeError, match="boom"):
        compute_forces(model, Batch.from_system(system(6, 7, periodic=False)))
    assert model.w.requires_grad and not model.fixed.requires_grad
    compute_forces(model, Batch.from_system(system(5)), create_graph=True)
    assert model.seen == (True, False)  # training differentiates the parameters


def test_frozen_parameter_list_is_rebuilt_when_the_model_gains_parameters():
    """The cached parameter list follows parameters and submodules registered after a call."""

    class Scaled(SoftPair):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones((), dtype=DT))
            self.seen = ()

        def forward(self, batch, neighbors=None):
            extra = [p for n, p in self.named_parameters() if n != "w"]
            self.seen = tuple(p.requires_grad for p in (self.w, *extra))
            out = super().forward(batch, neighbors)
            scale = self.w * (1.0 + sum(p.sum() for p in extra))
            return {k: v * scale for k, v in out.items()}

    model = Scaled()
    batch = Batch.from_system(system(5))
    compute_forces(model, batch)
    assert model.seen == (False,)
    model.extra = nn.Parameter(torch.zeros((), dtype=DT))  # a new parameter
    compute_forces(model, batch)
    assert model.seen == (False, False) and model.extra.requires_grad
    model.sub = nn.Linear(1, 1, dtype=DT)  # a new submodule with two parameters
    out = compute_forces(model, batch)
    assert model.seen == (False, False, False, False)
    assert all(p.requires_grad for p in model.parameters())
    ref = compute_forces(model, batch, create_graph=True)  # the training path: same forces
    assert torch.allclose(out["forces"], ref["forces"].detach(), rtol=0, atol=1e-14)
