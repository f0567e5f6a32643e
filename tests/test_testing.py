"""The test kit itself: it passes a correct potential and catches each kind of broken one."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from hyenamd import Batch
from hyenamd.geometry import batch_neighbor_list, edge_vectors
from hyenamd.testing import (
    assert_batch_independent,
    assert_equivariant,
    assert_forces_match_fd,
    lj_argon,
    maxwell_boltzmann,
    random_orthogonal,
    rattled_cu,
    water_trimer,
)
from hyenamd.units import BOLTZMANN_EV_PER_K, kinetic_energy_ev

DT = torch.float64


class LennardJones(nn.Module):
    """A correct potential: shifted LJ through edge vectors (plus optional deliberate defects)."""

    cutoff = 4.0

    def __init__(self, defect: str | None = None):
        super().__init__()
        self.defect = defect

    def forward(self, batch: Batch, neighbors=None):
        x = batch.positions
        nb = neighbors or batch_neighbor_list(x, batch.cell, batch.pbc, batch.ptr, self.cutoff)
        r = edge_vectors(x, batch.cell, nb, batch.batch).norm(dim=1)
        sr6 = (1.2 / r) ** 6
        pair = 0.5 * 4 * 0.01 * (sr6 * sr6 - sr6) * (1 - r / self.cutoff) ** 3
        energies = torch.zeros(batch.n_atoms, dtype=x.dtype).index_add(0, nb.i, pair)
        if self.defect == "absolute_position":  # not translation invariant
            energies = energies + 0.01 * x[:, 0]
        elif self.defect == "chiral":  # a pseudoscalar: SO(3) invariant, flips under reflection
            d = x[[2, 5, 8]] - x[0]
            energies = energies + 0.1 * torch.det(d) / batch.n_atoms
        elif self.defect == "no_minimum_image":  # raw distances: breaks under periodic re-wrap
            energies = energies + 1e-3 * (x[:, None, :] - x[None, :, :]).pow(2).sum(-1).sum(1)
        elif self.defect == "detached":  # forces miss part of the energy gradient
            energies = energies + 0.05 * torch.sin(x.detach()[:, 0])
        elif self.defect == "batch_coupling":  # each system feels the whole batch
            energies = energies + 0.01 * batch.n_atoms
        energy = torch.zeros(batch.n_systems, dtype=x.dtype).index_add(0, batch.batch, energies)
        return {"energy": energy, "energies": energies}


@pytest.mark.parametrize("make", [water_trimer, rattled_cu, lambda: lj_argon(2, rattle=0.1)])
def test_kit_passes_a_correct_potential(make):
    model, system = LennardJones(), make()
    out = assert_equivariant(model, system)
    assert set(out) >= {"energy", "energies", "forces"}
    assert_forces_match_fd(model, system)
    assert_batch_independent(model, [water_trimer(), rattled_cu(seed=3)])


@pytest.mark.parametrize(
    "defect, make, match",
    [
        ("absolute_position", water_trimer, "rotation \\+ translation"),
        ("chiral", water_trimer, "reflection \\+ translation"),
        ("no_minimum_image", rattled_cu, "periodic re-wrap"),
    ],
)
def test_assert_equivariant_catches_each_broken_symmetry(defect, make, match):
    with pytest.raises(AssertionError, match=match):
        assert_equivariant(LennardJones(defect), make())


def test_chiral_energy_passes_proper_rotations_only():
    """The pseudoscalar model is SO(3)-invariant: only the det = -1 check can catch it."""
    model, system = LennardJones("chiral"), water_trimer()
    rot = random_orthogonal(0)
    e = [
        float(model(Batch.from_system(system.replace(positions=system.positions @ m.T)))["energy"][0])
        for m in (torch.eye(3, dtype=DT), rot, random_orthogonal(0, reflection=True))
    ]
    assert abs(e[0] - e[1]) < 1e-12 and abs(e[0] - e[2]) > 1e-3


def test_assert_equivariant_catches_a_non_equivariant_vector_output():
    def fn(system):  # a "force" that always points along +z
        return {
            "direct_forces": torch.zeros(system.n_atoms, 3, dtype=DT)
            + torch.tensor([0.0, 0.0, 1.0], dtype=DT)
        }

    with pytest.raises(AssertionError, match="direct_forces"):
        assert_equivariant(fn, water_trimer())
    with pytest.raises(ValueError, match="don't know how outputs"):
        assert_equivariant(lambda s: {"dipole": torch.zeros(3)}, water_trimer(), outputs=("dipole",))

    def dipole(s):  # Σ q_i (x_i - x̄): translation invariant, a true vector
        q = torch.where(s.species == 8, -0.8, 0.4).to(DT)
        return {"dipole": (q[:, None] * (s.positions - s.positions.mean(0))).sum(0)}

    assert_equivariant(dipole, water_trimer(), kinds={"dipole": "vector"})


def test_assert_forces_match_fd_catches_wrong_forces_and_needs_float64():
    with pytest.raises(AssertionError, match="forces do not match finite differences"):
        assert_forces_match_fd(LennardJones("detached"), rattled_cu())
    with pytest.raises(ValueError, match="float64"):
        assert_forces_match_fd(LennardJones(), rattled_cu(dtype=torch.float32))


def test_assert_batch_independent_catches_cross_talk():
    with pytest.raises(AssertionError, match="batching"):
        assert_batch_independent(LennardJones("batch_coupling"), [water_trimer(), rattled_cu()])


def test_tiny_systems_are_what_they_say():
    w = water_trimer()
    assert w.n_atoms == 9 and w.species.tolist() == [8, 1, 1] * 3 and w.cell is None and w.labels is not None
    x = w.positions
    for k in range(3):
        o, h1, h2 = x[3 * k], x[3 * k + 1], x[3 * k + 2]
        assert abs(float((h1 - o).norm()) - 0.96) < 1e-12 and abs(float((h2 - o).norm()) - 0.96) < 1e-12
        cos = float(torch.dot(h1 - o, h2 - o)) / 0.96**2
        assert abs(math.degrees(math.acos(cos)) - 104.5) < 1e-9
        assert abs(float((x[3 * ((k + 1) % 3)] - o).norm()) - 2.85) < 1e-12
    ar = lj_argon()
    assert ar.n_atoms == 256 and bool(ar.pbc.all()) and abs(ar.volume - (4 * 5.26) ** 3) < 1e-8
    d = (ar.positions[1:] - ar.positions[0]).norm(dim=1).min()
    assert abs(float(d) - 5.26 / math.sqrt(2)) < 1e-12  # fcc nearest neighbour
    cu = rattled_cu(seed=1)
    assert (
        cu.n_atoms == 27
        and cu.volume > 0
        and abs(float(cu.cell[0] @ cu.cell[1]) / float(cu.cell[0].norm()) ** 2 - 0.5) < 1e-12
    )
    assert not torch.equal(rattled_cu(seed=1).positions, rattled_cu(seed=2).positions)
    assert torch.equal(rattled_cu(seed=1).positions, cu.positions)
    assert lj_argon(2, dtype=torch.float32).dtype == torch.float32


def test_maxwell_boltzmann_temperature_and_zero_momentum():
    ar = maxwell_boltzmann(lj_argon(), 120.0, seed=3)
    p = (ar.masses[:, None] * ar.velocities).sum(0)
    assert p.abs().max() < 1e-12
    temp = 2 * float(kinetic_energy_ev(ar.masses, ar.velocities)) / (3 * ar.n_atoms * BOLTZMANN_EV_PER_K)
    assert 100 < temp < 140


def test_random_orthogonal_has_requested_determinant():
    for seed in range(5):
        for refl in (False, True):
            q = random_orthogonal(seed, reflection=refl)
            assert torch.allclose(q @ q.T, torch.eye(3, dtype=DT), atol=1e-14)
            assert abs(float(torch.linalg.det(q)) - (-1 if refl else 1)) < 1e-12


def test_import_hyenamd_testing_and_surrogate_stay_free_of_adapters():
    import subprocess
    import sys

    heavy = ("ase", "openmm", "ray", "zarr", "h5py")
    code = (
        "import sys, hyenamd.testing, hyenamd.surrogate; "
        f"print(','.join(m for m in {heavy!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"importing the test kit pulled in: {out.stdout.strip()}"


def test_assert_matches_reference_catches_a_fast_path_that_differs():
    import pytest

    from hyenamd import Batch
    from hyenamd.surrogate import GHyena, GHyenaConfig
    from hyenamd.testing import assert_matches_reference, water_trimer

    cfg = GHyenaConfig(species=(1, 8), cutoff=3.0, n_scalar=8, n_vector=4, n_rbf=4, dtype="float64")

    class Shifted(GHyena):  # a "fast path" whose atom 0 gains 1 meV
        def forward(self, batch, neighbors=None):
            out = super().forward(batch, neighbors)
            bump = torch.zeros_like(out["energies"])
            bump[0] = 1e-3
            return {**out, "energies": out["energies"] + bump, "energy": out["energy"] + 1e-3}

    b = Batch.from_system(water_trimer())
    assert_matches_reference(GHyena(cfg), b)
    with pytest.raises(AssertionError, match="energies"):
        assert_matches_reference(Shifted(cfg), b)
