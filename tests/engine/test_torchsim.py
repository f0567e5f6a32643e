"""TorchSim adapter: TorchSim's own interface validator, batched static/MD/relaxation on G-Hyena."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk

from hyenamd import Batch, System
from hyenamd.engine.committee import Committee
from hyenamd.surrogate import compute_forces, save_model

ts = pytest.importorskip(
    "torch_sim", reason="TorchSim (pip install torch-sim-atomistic, dev extra) is not installed"
)
from hyenamd.engine.torchsim import HyenaTorchSimModel  # noqa: E402


@pytest.fixture
def si_fe(make_ghyena):
    si = bulk("Si", "diamond", a=5.43, cubic=True)
    fe = bulk("Fe", "fcc", a=5.26, cubic=True).repeat([2, 1, 1])
    shear = np.array([[1.0, 0.0, 0.0], [0.15, 1.0, 0.0], [-0.1, 0.2, 1.0]])  # a non-symmetric cell matrix
    fe.set_cell(fe.cell.array @ shear, scale_atoms=True)
    for k, a in enumerate((si, fe)):
        a.rattle(0.05, seed=k)
    return [si, fe], make_ghyena(species=(14, 26))


def test_passes_torchsims_validator(si_fe):
    from torch_sim.models.interface import validate_model_outputs

    _, model = si_fe
    validate_model_outputs(HyenaTorchSimModel(model), torch.device("cpu"), torch.float64)


def test_batched_outputs_match_hyenamd_on_each_system(si_fe):
    atoms, model = si_fe
    wrapped = HyenaTorchSimModel(model, per_atom_energies=True)
    state = ts.initialize_state(atoms, torch.device("cpu"), torch.float64)
    out = wrapped(state)
    lo = 0
    for k, a in enumerate(atoms):
        ref = compute_forces(model, Batch.from_system(System.from_ase(a)), stress=True)
        hi = lo + len(a)
        assert float(out["energy"][k]) == pytest.approx(float(ref["energy"][0]), rel=1e-12)
        assert torch.allclose(out["forces"][lo:hi], ref["forces"], atol=1e-12)
        assert torch.allclose(out["stress"][k], ref["stress"][0], atol=1e-14)
        assert torch.allclose(out["energies"][lo:hi], ref["energies"], atol=1e-12)
        lo = hi
    assert out["forces"].abs().max() > 1e-3  # non-trivial


def test_nvt_md_and_fire_relaxation_run_batched(si_fe, tmp_path):
    atoms, model = si_fe
    path = save_model(model, tmp_path / "m.safetensors")
    wrapped = HyenaTorchSimModel.from_checkpoint(path, dtype="float64")
    final = ts.integrate(
        atoms, wrapped, integrator=ts.nvt_langevin, n_steps=10, temperature=300.0, timestep=0.001, seed=0
    )
    assert final.n_systems == 2 and torch.isfinite(final.positions).all()
    assert not torch.allclose(
        final.positions, ts.initialize_state(atoms, torch.device("cpu"), torch.float64).positions
    )


def test_fire_relaxation_of_two_argon_crystals_at_once():
    """A classical hyenamd potential through the same adapter: FIRE relaxes rattled LJ argon."""
    from hyenamd.engine.potentials import LennardJones

    lj = LennardJones(sigma=3.405, epsilon=0.010323, cutoff=8.5, switch_on=7.5)
    atoms = [bulk("Ar", "fcc", a=5.26, cubic=True).repeat([2, 2, 2]) for _ in range(2)]
    for k, a in enumerate(atoms):
        a.rattle(0.1 + 0.05 * k, seed=k)
    wrapped = HyenaTorchSimModel(lj.to(torch.float64))
    state = ts.initialize_state(atoms, torch.device("cpu"), torch.float64)
    start = wrapped(state)
    relaxed = ts.optimize(state, wrapped, optimizer=ts.optimizers.fire, max_steps=200)
    end = wrapped(relaxed)
    for k in range(2):
        f0 = start["forces"][state.system_idx == k].norm(dim=-1).max()
        f1 = end["forces"][relaxed.system_idx == k].norm(dim=-1).max()
        assert f0 > 0.05 and f1 < 0.2 * f0  # forces mostly relaxed away
        assert float(end["energy"][k]) < float(start["energy"][k])


def test_committee_and_errors(si_fe, make_ghyena):
    atoms, model = si_fe
    committee = Committee([model, make_ghyena(species=(14, 26), seed=1)])
    out = HyenaTorchSimModel(committee)(ts.initialize_state(atoms, torch.device("cpu"), torch.float64))
    assert out["energy_var"].shape == (2,) and out["forces_var"].shape == (out["forces"].shape[0], 3)
    assert (out["energy_var"] > 0).all()
    wrong = ts.initialize_state([bulk("Cu", "fcc", a=3.6)], torch.device("cpu"), torch.float64)
    with pytest.raises(ValueError, match=r"species \[29\]"):
        HyenaTorchSimModel(model)(wrong)
    with pytest.raises(ValueError, match="dtype must be"):
        HyenaTorchSimModel(model, dtype="float16")
    assert HyenaTorchSimModel(model, dtype="float32").dtype is torch.float32 and model.dtype is torch.float64
    out32 = HyenaTorchSimModel(model, dtype="float32")(ts.initialize_state(atoms, "cpu", torch.float32))
    assert out32["forces"].dtype is torch.float32 and np.isfinite(out32["energy"].numpy()).all()
