"""UncertaintyGuard: a Simulation on a committee stops or flags when the members' forces disagree."""

from __future__ import annotations

import math

import pytest
import torch

from hyenamd import Batch
from hyenamd.engine import BlowUpError, Simulation, VelocityVerlet
from hyenamd.engine.committee import Committee
from hyenamd.engine.uncertainty import UncertaintyGuard
from hyenamd.surrogate import compute_forces


@pytest.fixture
def committee(make_ghyena):
    return Committee([make_ghyena(seed=k) for k in range(3)])


def _sigma_oracle(members, batch) -> float:
    f = torch.stack([compute_forces(m, batch)["forces"] for m in members])
    return float(f.var(0, unbiased=False).sum(-1).sqrt().max())


def test_force_std_matches_the_members(committee, water_like):
    guard = UncertaintyGuard(committee=committee, max_force_std=1e9)
    sim = Simulation(
        VelocityVerlet(committee, 0.25), water_like, [], guard=guard, temperature_k=100.0, seed=0
    )
    sigma = guard.force_std(sim.state)
    oracle = _sigma_oracle(list(committee.models), Batch.from_system(water_like))
    assert float(sigma.max()) == pytest.approx(oracle, rel=1e-10) and oracle > 0
    sim.run(4)
    assert guard.flags == []


def test_stop_and_flag(committee, water_like):
    oracle = _sigma_oracle(list(committee.models), Batch.from_system(water_like))
    low = 0.5 * oracle  # the committee already disagrees more than this at step 0
    guard = UncertaintyGuard(committee=committee, max_force_std=low, check_every=2)
    sim = Simulation(
        VelocityVerlet(committee, 0.25), water_like, [], guard=guard, temperature_k=100.0, seed=0
    )
    with pytest.raises(BlowUpError, match="committee force spread .* exceeds max_force_std") as err:
        sim.run(6)
    assert err.value.step == 2 and err.value.system == 0
    flagger = UncertaintyGuard(committee=committee, max_force_std=low, check_every=2, action="flag")
    sim = Simulation(
        VelocityVerlet(committee, 0.25), water_like, [], guard=flagger, temperature_k=100.0, seed=0
    )
    sim.run(6)
    assert sim.state.step == 6 and [f.step for f in flagger.flags] == [2, 4, 6]
    assert all(
        f.force_std > low and f.system == 0 and 0 <= f.atom < water_like.n_atoms for f in flagger.flags
    )


def test_bad_settings(committee, make_ghyena):
    with pytest.raises(TypeError, match="needs committee"):
        UncertaintyGuard(committee=make_ghyena())
    with pytest.raises(ValueError, match="max_force_std"):
        UncertaintyGuard(committee=committee, max_force_std=math.nan)
    with pytest.raises(ValueError, match="action"):
        UncertaintyGuard(committee=committee, action="warn")
