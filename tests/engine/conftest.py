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


def small_ghyena(species=(1, 6, 7, 8, 18), *, heads=("energy",), energy_scale=10.0, seed=0):
    """A randomly initialised float64 G-Hyena, small enough for finite differences (local + global).

    With a dynamics head the weights are perturbed off their initialisation: residual branches
    and vector heads start at exactly 0, where the velocities do not reach the energy yet.
    """
    from hyenamd.surrogate import GHyena, GHyenaConfig
    from hyenamd.testing import perturb_parameters

    cfg = GHyenaConfig(
        species=species, cutoff=4.0, n_scalar=16, n_vector=4, n_rbf=6, pattern=("local", "global"),
        heads=heads, dynamics_horizon_fs=4.0, energy_scale=energy_scale, dtype="float64", seed=seed,
    )  # fmt: skip
    model = GHyena(cfg)
    return perturb_parameters(model, seed=seed) if "dynamics" in heads else model


@pytest.fixture(scope="session")
def ghyena_path(tmp_path_factory):
    """A small model saved with save_model (what users pass to from_checkpoint / MLPotential)."""
    from hyenamd.surrogate import save_model

    path = tmp_path_factory.mktemp("models") / "small.safetensors"
    save_model(small_ghyena(), path, note="random weights, engine tests")
    return path


@pytest.fixture
def water_like():
    """27 atoms (H, H, O repeated) at 0.1 atoms/Å³ in a triclinic periodic cell, float64."""
    from hyenamd.workflows.demo import liquid_like_system

    s = liquid_like_system(27, density=0.1, species=8, seed=0, triclinic=True, dtype=torch.float64)
    sp = s.species.clone()
    sp[0::3] = 1
    sp[1::3] = 1
    return s.replace(species=sp, masses=None)


@pytest.fixture
def make_ghyena():
    """The :func:`small_ghyena` factory (test modules cannot import conftest under importlib mode)."""
    return small_ghyena
