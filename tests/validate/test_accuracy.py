"""Energy/force errors of a model on reference frames: zero for the model that made them, exact when scaled."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from hyenamd.geometry import batch_neighbor_list, edge_vectors
from hyenamd.surrogate.forces import compute_forces
from hyenamd.system import Batch, System
from hyenamd.validate import ArrayTrajectory
from hyenamd.validate.accuracy import ErrorAccumulator, evaluate_model, evenly_spaced


class LennardJones(nn.Module):
    """A real (tiny) potential of the compute_forces protocol: LJ, shifted to zero at the cutoff."""

    def __init__(self, epsilon=0.0104, sigma=3.4, cutoff=6.0, scale=1.0):
        super().__init__()
        self.epsilon, self.sigma, self.cutoff = epsilon, sigma, cutoff
        self.scale = nn.Parameter(torch.tensor(float(scale), dtype=torch.float64), requires_grad=False)

    def forward(self, batch, neighbors=None):
        nb = neighbors or batch_neighbor_list(batch.positions, batch.cell, batch.pbc, batch.ptr, self.cutoff)
        d = edge_vectors(batch.positions, batch.cell, nb, batch.batch).norm(dim=1)
        sr6 = (self.sigma / d) ** 6
        sc6 = (self.sigma / self.cutoff) ** 6
        pair = 4 * self.epsilon * (sr6**2 - sr6 - (sc6**2 - sc6)) * self.scale
        energies = torch.zeros(batch.n_atoms, dtype=d.dtype).index_add(0, nb.i, 0.5 * pair)
        energy = torch.zeros(batch.n_systems, dtype=d.dtype).index_add(0, batch.batch, energies)
        return {"energy": energy, "energies": energies}


def reference_frames(model, n_frames=5, n=64, seed=0):
    rng = np.random.default_rng(seed)
    m = 4
    grid = np.stack(np.meshgrid(*(np.arange(m),) * 3, indexing="ij"), -1).reshape(-1, 3) * 3.8
    cell = np.eye(3) * 3.8 * m
    pos, forces, energies = [], [], []
    for _ in range(n_frames):
        x = grid + rng.normal(0, 0.15, grid.shape)
        s = System(torch.tensor(x), torch.full((n,), 18), cell=torch.tensor(cell), pbc=True)
        out = compute_forces(model, Batch.from_systems([s]))
        pos.append(x)
        forces.append(out["forces"].numpy())
        energies.append(float(out["energy"].sum()))
    return ArrayTrajectory(
        np.array(pos),
        np.full(n, 18),
        cell=cell,
        frame_forces=np.array(forces),
        observables={"potential_energy": np.array(energies)},
    )


def test_the_model_that_made_the_frames_has_zero_error():
    lj = LennardJones()
    ref = reference_frames(lj)
    res = evaluate_model(lj, ref)
    assert res.n_frames == 5
    assert res.force_mae < 1e-12 and res.force_rmse < 1e-12 and res.force_rel_rmse < 1e-10
    assert res.energy_mae < 1e-9


def test_scaled_model_errors_are_exact():
    ref = reference_frames(LennardJones())
    res = evaluate_model(LennardJones(scale=1.1), ref, frames=np.array([0, 2, 4]))
    f = np.stack([ref.forces(i) for i in (0, 2, 4)])
    e = ref.observable("potential_energy")[[0, 2, 4]]
    assert res.n_frames == 3
    assert res.force_rmse == pytest.approx(0.1 * np.sqrt((f**2).mean()), rel=1e-9)
    assert res.force_mae == pytest.approx(0.1 * np.abs(f).mean(), rel=1e-9)
    assert res.force_ref_std == pytest.approx(f.std(), rel=1e-9)
    assert res.force_rel_rmse == pytest.approx(0.1 * np.sqrt((f**2).mean()) / f.std(), rel=1e-9)
    assert res.energy_mae == pytest.approx(np.mean(np.abs(0.1 * e)) / 64 * 1e3, rel=1e-9)


def test_missing_reference_forces_is_a_clear_error():
    ref = reference_frames(LennardJones())
    ref.frame_forces = None
    with pytest.raises(ValueError, match="no forces"):
        evaluate_model(LennardJones(), ref)


def test_error_accumulator_matches_numpy():
    rng = np.random.default_rng(0)
    p, r = rng.normal(size=(3, 50)), rng.normal(size=(3, 50))
    acc = ErrorAccumulator()
    for k in range(3):
        acc.update(p[k], r[k])
    assert acc.mae == pytest.approx(np.abs(p - r).mean())
    assert acc.rmse == pytest.approx(np.sqrt(((p - r) ** 2).mean()))
    assert acc.ref_std == pytest.approx(r.std())
    acc.update(p[0], p[0])  # identical data adds zero error
    assert ErrorAccumulator().mae != ErrorAccumulator().mae  # NaN before any data


def test_evenly_spaced():
    np.testing.assert_array_equal(evenly_spaced(10, 4), [0, 3, 6, 9])
    np.testing.assert_array_equal(evenly_spaced(3, 10), [0, 1, 2])
    assert len(evenly_spaced(0, 5)) == 0
