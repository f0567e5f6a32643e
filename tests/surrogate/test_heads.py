"""Heads: energy shifts/scale, vector heads' equivariance, the dynamics head's ballistic limit (float64)."""

from __future__ import annotations

import pytest
import torch

from hyenamd import Batch
from hyenamd.surrogate.heads import DynamicsHead, EnergyHead, VectorHead, VelocityEmbedding
from hyenamd.surrogate.model import GHyena, GHyenaConfig
from hyenamd.testing import (
    assert_equivariant,
    lj_argon,
    maxwell_boltzmann,
    perturb_parameters,
    random_orthogonal,
    water_trimer,
)

DT = torch.float64


def random_streams(n=7, f=5, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, f, generator=g, dtype=DT), torch.randn(n, c, 3, generator=g, dtype=DT)


def test_energy_head_applies_scale_and_per_species_shift():
    head = EnergyHead(5, 3, shifts=torch.tensor([-1.0, 2.5, 0.25]), scale=3.0).to(DT)
    s, _ = random_streams()
    idx = torch.tensor([0, 1, 2, 2, 1, 0, 0])
    raw = head.mlp(s).squeeze(-1)
    assert torch.allclose(head(s, idx), 3.0 * raw + torch.tensor([-1.0, 2.5, 0.25], dtype=DT)[idx], atol=0)
    assert {"energy_shift", "energy_scale"} <= set(dict(head.named_buffers()))
    with pytest.raises(ValueError, match="one value per species"):
        EnergyHead(5, 3, shifts=torch.zeros(2))


@pytest.mark.parametrize("reflection", [False, True])
def test_vector_head_outputs_true_vectors(reflection):
    torch.manual_seed(0)
    head = VectorHead(5, 3).to(DT)
    s, v = random_streams()
    assert float(head(s, v).detach().abs().max()) == 0.0  # a fresh head starts at y = 0 (zero-init gates)
    perturb_parameters(head, std=0.3)
    rot = random_orthogonal(1, reflection=reflection)
    y = head(s, v)
    assert y.shape == (7, 3) and y.abs().max() > 1e-3
    assert (head(s, v @ rot.T) - y @ rot.T).abs().max() < 1e-13


def test_dynamics_head_is_ballistic_when_its_corrections_vanish():
    head = DynamicsHead(5, 3, horizon_fs=20.0).to(DT)
    s, v = random_streams()
    vel = torch.randn(7, 3, dtype=DT) * 0.01
    fresh_disp, fresh_vel = head(s, v, vel)  # a fresh head is exactly the ballistic step
    assert torch.allclose(fresh_disp, 20.0 * vel, atol=1e-15) and torch.allclose(fresh_vel, vel, atol=1e-15)
    perturb_parameters(head, std=0.3)
    disp, new_vel = head(s, torch.zeros_like(v), vel)  # no vector features: pure free flight
    assert torch.allclose(disp, 20.0 * vel, rtol=0, atol=1e-15) and torch.allclose(new_vel, vel, atol=1e-15)
    disp2, vel2 = head(s, v, vel)
    assert (disp2 - disp).abs().max() > 1e-4 and (vel2 - vel).abs().max() > 1e-6  # learned corrections act
    with pytest.raises(ValueError, match="horizon"):
        DynamicsHead(5, 3, horizon_fs=0.0)


def test_velocity_embedding_scales_velocity_by_horizon_per_species():
    emb = VelocityEmbedding(2, 4, horizon_fs=5.0).to(DT)
    vel = torch.randn(3, 3, dtype=DT)
    idx = torch.tensor([0, 1, 1])
    out = emb(vel, idx)
    assert out.shape == (3, 4, 3)
    assert torch.allclose(out[2, 1], emb.weight[1, 1] * 5.0 * vel[2], atol=1e-15)


def dynamics_model():
    cfg = GHyenaConfig(
        species=(1, 8, 18),
        n_scalar=8,
        n_vector=4,
        pattern=("local", "local"),
        heads=("energy", "direct_forces", "dynamics"),
        dynamics_horizon_fs=25.0,
        dtype="float64",
    )
    return perturb_parameters(GHyena(cfg), seed=2)  # vector heads start at 0


@pytest.mark.parametrize("make", [water_trimer, lambda: lj_argon(2, rattle=0.1, seed=3)])
def test_model_dynamics_and_direct_force_outputs_are_equivariant(make):
    model = dynamics_model()
    system = maxwell_boltzmann(make(), 600.0, seed=1)
    out = assert_equivariant(model, system, outputs=("energy", "direct_forces", "displacement", "velocities"))
    assert out["displacement"].shape == (system.n_atoms, 3) and out["velocities"].shape == (system.n_atoms, 3)
    # the prediction is near the ballistic step (small learned corrections at initialisation)
    ballistic = system.velocities * 25.0
    assert (out["displacement"] - ballistic).abs().max() > 0


def test_dynamics_model_needs_velocities():
    with pytest.raises(ValueError, match="needs batch.velocities"):
        dynamics_model()(Batch.from_system(water_trimer()))
