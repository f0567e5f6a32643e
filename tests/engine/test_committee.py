"""Committee uncertainty (MACE's convention) and per-atom descriptors, through the real ASE calculator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hyenamd import Batch
from hyenamd.engine import HyenaCalculator
from hyenamd.engine.committee import Committee, descriptors
from hyenamd.surrogate import compute_forces, save_model


@pytest.fixture
def member_paths(tmp_path, make_ghyena):
    return [save_model(make_ghyena(seed=k), tmp_path / f"m{k}.safetensors") for k in range(3)]


def test_committee_results_are_member_means_and_population_variances(member_paths, water_like, make_ghyena):
    atoms = water_like.to_ase()
    calc = HyenaCalculator.from_checkpoint([str(p) for p in member_paths], dtype="float64")
    assert isinstance(calc.model, Committee) and len(calc.model) == 3 and calc.model.same_config
    atoms.calc = calc
    e = atoms.get_potential_energy()
    f, s = atoms.get_forces(), atoms.get_stress()
    assert calc.runner.n_calls == 1
    # oracle: each member alone, fresh (no shared neighbour list or order)
    batch = Batch.from_system(water_like)
    outs = [compute_forces(make_ghyena(seed=k), batch, stress=True) for k in range(3)]
    ek = np.array([float(o["energy"][0]) for o in outs])
    fk = np.stack([o["forces"].numpy() for o in outs])
    sk = np.stack([o["stress"][0].numpy() for o in outs])
    sk = np.stack([sk[:, 0, 0], sk[:, 1, 1], sk[:, 2, 2], sk[:, 1, 2], sk[:, 0, 2], sk[:, 0, 1]], -1)
    assert ek.std() > 1e-3  # the members really differ
    r = calc.results
    assert e == pytest.approx(ek.mean(), rel=1e-12) and np.allclose(f, fk.mean(0), atol=1e-12)
    assert np.allclose(s, sk.mean(0), atol=1e-14)
    assert r["energy_var"] == pytest.approx(ek.var(), rel=1e-10)
    assert r["forces_var"].shape == (len(atoms), 3) and np.allclose(r["forces_var"], fk.var(0), atol=1e-12)
    assert r["stress_var"].shape == (6,) and np.allclose(r["stress_var"], sk.var(0), atol=1e-16)
    assert np.allclose(r["energy_comm"], ek, rtol=1e-12) and r["forces_comm"].shape == (3, len(atoms), 3)
    assert np.allclose(atoms.get_potential_energies().sum(), e, rtol=1e-12)


def test_committee_forward_is_the_mean_potential(make_ghyena, water_like):
    """Committee is itself a potential: compute_forces on it gives the mean forces (gradient is linear)."""
    members = [make_ghyena(seed=k) for k in range(2)]
    batch = Batch.from_system(water_like)
    mean = compute_forces(Committee(members), batch)
    each = [compute_forces(m, batch)["forces"] for m in members]
    assert torch.allclose(mean["forces"], (each[0] + each[1]) / 2, atol=1e-12)


def test_committee_checks(make_ghyena, ghyena_path):
    from hyenamd.engine.potentials import LennardJones

    with pytest.raises(ValueError, match="at least 2"):
        Committee([make_ghyena()])
    exact = LennardJones(cutoff=5.0, switch_on=4.5)
    exact.needs_exact_neighbors = True  # as a potential with non-vanishing pair terms would declare
    with pytest.raises(ValueError, match="share one cutoff"):
        Committee([exact, LennardJones(cutoff=6.0, switch_on=4.5)])
    c = Committee([make_ghyena(species=(1, 8)), make_ghyena(species=(1, 8, 18), seed=1)])
    assert c.cfg.species == (1, 8) and not c.same_config  # only the species every member knows
    single = HyenaCalculator.from_checkpoint([ghyena_path])  # a list of one path: one model
    assert not isinstance(single.model, Committee)


def test_descriptors_are_invariant_per_atom_features(water_like, make_ghyena):
    model = make_ghyena()
    atoms = water_like.to_ase()
    calc = HyenaCalculator(model)
    d = calc.get_descriptors(atoms)
    assert d.shape == (len(atoms), model.cfg.n_scalar) and np.isfinite(d).all()
    # invariant under a rotation of the whole periodic system (positions and cell)
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))
    rot = atoms.copy()
    rot.set_cell(atoms.cell.array @ q.T, scale_atoms=False)
    rot.positions = atoms.positions @ q.T
    assert np.allclose(HyenaCalculator(model).get_descriptors(rot), d, atol=1e-10)
    # and they are what the energy head reads: the head applied to them gives the per-atom energies
    idx = model.species_index(torch.as_tensor(atoms.numbers))
    e_atoms = model.energy_head(torch.as_tensor(d), idx).detach().numpy()
    atoms.calc = calc
    assert np.allclose(e_atoms, atoms.get_potential_energies(), atol=1e-12)
    committee = HyenaCalculator(Committee([model, make_ghyena(seed=1)]))
    dk = committee.get_descriptors(atoms)
    assert dk.shape == (2, len(atoms), model.cfg.n_scalar) and np.allclose(dk[0], d, atol=1e-12)
    with pytest.raises(TypeError, match="energy_head"):
        from hyenamd.engine.potentials import LennardJones

        descriptors(LennardJones(cutoff=5.0, switch_on=4.5), Batch.from_system(water_like))
