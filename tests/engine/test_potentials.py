"""Classical torch potentials: analytic forces vs autograd vs the O(N²) oracle, and OpenMM's LJ."""

from __future__ import annotations

import pytest
import torch

from hyenamd import Batch, System
from hyenamd.engine.potentials import (
    Harmonic,
    LennardJones,
    ZeroPotential,
    lennard_jones_pair,
    lennard_jones_reference,
)
from hyenamd.engine.reference_systems import lj_fluid_system
from hyenamd.geometry import batch_neighbor_list
from hyenamd.surrogate.forces import compute_forces


@pytest.mark.parametrize("switch_on", [7.5, None])
@pytest.mark.parametrize("triclinic", [False, True])
def test_lj_matches_oracle_and_autograd(switch_on, triclinic):
    s = lj_fluid_system(3, 0.0212, rattle=0.3, seed=1)
    if triclinic:
        shear = torch.tensor([[1.0, 0.0, 0.0], [0.15, 1.0, 0.0], [-0.1, 0.1, 1.0]], dtype=torch.float64)
        s = s.replace(positions=s.positions @ shear, cell=s.cell @ shear)
    lj = LennardJones(cutoff=8.0, switch_on=switch_on)
    b = Batch.from_system(s)
    fast = lj.energy_and_forces(b)
    auto = compute_forces(lj, b)
    ref = lennard_jones_reference(s.positions, s.cell, s.pbc, lj.sigma, lj.epsilon, lj.cutoff, lj.switch_on)
    assert torch.allclose(fast["energy"][0], ref, rtol=1e-12, atol=1e-12)
    assert torch.allclose(auto["energy"][0], ref, rtol=1e-12, atol=1e-12)
    assert torch.allclose(fast["forces"], auto["forces"], atol=1e-12)
    assert torch.allclose(fast["energies"].sum(), ref, atol=1e-12)
    # a half list gives the same answer
    half = batch_neighbor_list(b.positions, b.cell, b.pbc, b.ptr, lj.cutoff, full=False)
    h = lj.energy_and_forces(b, half)
    assert torch.allclose(h["forces"], fast["forces"], atol=1e-12)
    assert torch.allclose(h["energies"], fast["energies"], atol=1e-12)


def test_lj_pair_derivative_and_smoothness():
    r = torch.linspace(3.0, 8.6, 2001, dtype=torch.float64, requires_grad=True)
    e, de = lennard_jones_pair(r, 3.405, 0.0103, 8.5, 7.5)
    (g,) = torch.autograd.grad(e.sum(), r)
    assert torch.allclose(de, g, atol=1e-12)
    # switched: energy and force go continuously to zero at the cutoff
    near = torch.tensor([8.5 - 1e-7], dtype=torch.float64)
    e_c, de_c = lennard_jones_pair(near, 3.405, 0.0103, 8.5, 7.5)
    assert abs(float(e_c)) < 1e-12 and abs(float(de_c)) < 1e-9
    # the switch is inactive below switch_on: plain 12-6
    x = torch.tensor([3.9], dtype=torch.float64)
    plain = 4 * 0.0103 * ((3.405 / x) ** 12 - (3.405 / x) ** 6)
    assert torch.allclose(lennard_jones_pair(x, 3.405, 0.0103, 8.5, 7.5)[0], plain, rtol=1e-14)


def test_lj_rejects_bad_parameters():
    with pytest.raises(ValueError, match="switch_on"):
        LennardJones(cutoff=5.0, switch_on=6.0)
    with pytest.raises(ValueError, match="sigma"):
        LennardJones(sigma=-1.0)


def test_lj_open_cluster_and_batch_do_not_mix():
    a = lj_fluid_system(2, 0.0212, seed=2)
    cluster = System(a.positions[:20], a.species[:20])  # no cell
    b = Batch.from_systems([a, cluster])
    lj = LennardJones(cutoff=6.0, switch_on=5.0)
    out = lj.energy_and_forces(b)
    for k, s in enumerate([a, cluster]):
        single = lj.energy_and_forces(Batch.from_system(s))
        assert torch.allclose(out["energy"][k], single["energy"][0], atol=1e-13)
        sl = slice(int(b.ptr[k]), int(b.ptr[k + 1]))
        assert torch.allclose(out["forces"][sl], single["forces"], atol=1e-13)


def test_harmonic_and_zero():
    x0 = torch.zeros(4, 3, dtype=torch.float64)
    s = System(
        torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)), [1, 6, 8, 18]
    )
    h = Harmonic(2.0, x0)
    b = Batch.from_system(s)
    out = h.energy_and_forces(b)
    auto = compute_forces(h, b)
    assert torch.allclose(out["forces"], -2.0 * s.positions)
    assert torch.allclose(auto["forces"], out["forces"], atol=1e-14)
    assert torch.allclose(out["energy"][0], (s.positions**2).sum())
    with pytest.raises(ValueError, match="anchors"):
        h(Batch.from_system(System(torch.zeros(3, 3), [1, 1, 1])))
    z = ZeroPotential()
    assert float(compute_forces(z, b)["forces"].abs().max()) == 0.0
    assert float(z.energy_and_forces(b)["energy"].abs().max()) == 0.0
