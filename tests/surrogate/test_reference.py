"""The fast model equals the slow, readable reference.py (brute-force neighbours, direct convolutions)."""

from __future__ import annotations

import pytest
import torch

from hyenamd import Batch
from hyenamd.surrogate import GHyena, GHyenaConfig, compute_forces
from hyenamd.surrogate.ordering import batch_order
from hyenamd.surrogate.reference import reference_forward
from hyenamd.testing import lj_argon, maxwell_boltzmann, perturb_parameters, rattled_cu, water_trimer

DT = torch.float64
PATTERNS = [("local", "local"), ("local", "global", "local", "global"), ("global", "local", "global")]


CONVS = ["linear", "circular"]


def model(pattern, radial_basis="bessel", conv="circular") -> GHyena:
    cfg = GHyenaConfig(
        species=(1, 8, 18, 29),
        cutoff=4.0,
        n_scalar=8,
        n_vector=4,
        n_rbf=5,
        radial_basis=radial_basis,
        avg_neighbors=6.0,
        pattern=pattern,
        filter_order=8,
        filter_w_init=16.0,
        filter_w_cap=64.0,
        heads=("energy", "direct_forces", "dynamics"),
        energy_shifts=(-0.3, -1.2, 0.1, -2.0),
        energy_scale=0.5,
        conv=conv,
        dtype="float64",
    )
    return perturb_parameters(GHyena(cfg), seed=7)  # residual branches and vector heads start at 0


def batch() -> Batch:
    systems = [water_trimer(), rattled_cu(seed=1), lj_argon(2, rattle=0.2, seed=2)]
    return Batch.from_systems([maxwell_boltzmann(s, 500.0, seed=k) for k, s in enumerate(systems)])


@pytest.mark.parametrize("conv", CONVS)
@pytest.mark.parametrize("pattern", PATTERNS, ids="-".join)
def test_fast_model_equals_reference(pattern, conv):
    m, b = model(pattern, conv=conv), batch()
    with torch.no_grad():
        fast = m(b)
        ref = reference_forward(m, b)
    assert fast.keys() == ref.keys() == {"energy", "energies", "direct_forces", "displacement", "velocities"}
    for k in fast:
        scale = max(1.0, float(ref[k].abs().max()))
        assert (fast[k] - ref[k]).abs().max() <= 1e-10 * scale, k
    assert ref["direct_forces"].abs().max() > 1e-4  # non-trivial outputs


@pytest.mark.parametrize("conv", CONVS)
@pytest.mark.parametrize("pattern", PATTERNS[1:], ids="-".join)
def test_fast_forces_equal_reference_forces(pattern, conv):
    m, b = model(pattern, radial_basis="gaussian", conv=conv), batch()
    b = b.replace(order=batch_order(b, m.cfg.ordering))
    fast = compute_forces(m, b)
    pos = b.positions.clone().requires_grad_(True)
    e = reference_forward(m, b.replace(positions=pos))["energy"].sum()
    (grad,) = torch.autograd.grad(e, pos)
    assert (fast["forces"] + grad).abs().max() <= 1e-10 * max(1.0, float(grad.abs().max()))
    assert grad.abs().max() > 1e-4


def test_reference_uses_given_order_and_canonical_order_by_default():
    m, b = model(PATTERNS[1]), batch()
    with torch.no_grad():
        default = reference_forward(m, b)["energy"]  # canonical order of each system
        rev = torch.cat([torch.arange(int(b.ptr[k + 1]) - 1, int(b.ptr[k]) - 1, -1) for k in range(3)])
        reversed_ = reference_forward(m, b.replace(order=rev))["energy"]
        fast_rev = m(b.replace(order=rev))["energy"]
    assert (reversed_ - fast_rev).abs().max() < 1e-10 and (reversed_ - default).abs().max() > 1e-8
