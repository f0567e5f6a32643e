"""Shared fixtures of the engine tests: tiny seeded LJ systems, float64, one torch thread.

The machines that run these tests have 2 cores shared with other work; OpenMP spin-waiting
on 2 threads made these small-tensor loops several times slower than one thread, so each
engine test runs with ``torch.set_num_threads(1)`` (restored afterwards).
"""

from __future__ import annotations

import pytest
import torch

from hyenamd.engine.potentials import LennardJones
from hyenamd.engine.reference_systems import lj_fluid_system


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def lj():
    return LennardJones(sigma=3.405, epsilon=0.010323, cutoff=8.5, switch_on=7.5)


@pytest.fixture
def argon108():
    """108 argon atoms (FCC 3×3×3, liquid density), float64."""
    return lj_fluid_system(3, 0.0212, rattle=0.05, seed=0)
