"""HyenaCalculator: finite-difference forces and stress, ASE dynamics, state checks, species, dtype."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import units
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress
from ase.md.velocitydistribution import thermalize_momenta
from ase.md.verlet import VelocityVerlet as AseVelocityVerlet

from hyenamd import Batch
from hyenamd.engine import HyenaCalculator
from hyenamd.surrogate import compute_forces


def test_all_properties_in_one_call_and_match_the_model(water_like, make_ghyena):
    model = make_ghyena()
    atoms = water_like.to_ase()
    calc = HyenaCalculator(model)
    atoms.calc = calc
    e = atoms.get_potential_energy()
    assert set(calc.results) == {"energy", "free_energy", "energies", "forces", "stress"}
    assert calc.runner.n_calls == 1
    atoms.get_forces(), atoms.get_stress(), atoms.get_potential_energies()
    assert calc.runner.n_calls == 1  # no recomputation
    ref = compute_forces(model, Batch.from_system(water_like), stress=True)
    assert e == pytest.approx(float(ref["energy"][0]), rel=1e-12)
    assert atoms.get_potential_energy() == calc.results["free_energy"]
    assert np.allclose(atoms.get_forces(), ref["forces"].numpy(), atol=1e-12)
    assert np.allclose(atoms.get_potential_energies().sum(), e, rtol=1e-12)
    s = ref["stress"][0].numpy()
    assert np.allclose(atoms.get_stress(), [s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]], atol=1e-14)


def test_forces_and_stress_match_finite_differences(water_like, make_ghyena):
    atoms = water_like.to_ase()
    atoms.calc = HyenaCalculator(make_ghyena())
    f = atoms.get_forces()
    assert np.abs(f).max() > 1e-3  # a non-trivial test
    idx = [0, 2, 13, 26]
    fd = calculate_numerical_forces(atoms, eps=1e-4, iatoms=idx)
    assert np.abs(fd - f[idx]).max() < 1e-6 * np.abs(f).max() + 1e-9
    stress = atoms.get_stress()
    sfd = calculate_numerical_stress(atoms, eps=1e-5)
    assert np.abs(sfd - stress).max() < 1e-6 * np.abs(stress).max() + 1e-10


def test_stress_sign_negative_when_compressed():
    from hyenamd.engine.potentials import LennardJones
    from hyenamd.engine.reference_systems import lj_fluid_system

    dense = lj_fluid_system(3, 0.04, rattle=0.0)  # nearest neighbours well inside σ: repulsive
    atoms = dense.to_ase()
    atoms.calc = HyenaCalculator(LennardJones(cutoff=5.0, switch_on=4.5))
    assert (atoms.get_stress()[:3] < 0).all()


def test_ase_velocity_verlet_conserves_energy(water_like, lj, argon108, make_ghyena):
    atoms = water_like.to_ase()
    atoms.calc = HyenaCalculator(make_ghyena())
    thermalize_momenta(atoms, temperature_K=300, rng=np.random.default_rng(0))
    dyn = AseVelocityVerlet(atoms, timestep=0.5 * units.fs)
    e = []
    for _ in range(40):
        dyn.run(1)
        e.append(atoms.get_total_energy())
    drift = np.abs(np.array(e) - e[0]).max()
    assert drift < 1e-4 * atoms.get_kinetic_energy() + 1e-6
    # the classical LJ through the same adapter: 300 steps of a 108-atom liquid
    ar = argon108.to_ase()
    calc = HyenaCalculator(lj, skin=1.0)
    ar.calc = calc
    thermalize_momenta(ar, temperature_K=80, rng=np.random.default_rng(1))
    dyn = AseVelocityVerlet(ar, timestep=4 * units.fs)
    e = [ar.get_total_energy()]
    for _ in range(300):
        dyn.run(1)
        e.append(ar.get_total_energy())
    e = np.array(e)
    assert np.abs(e - e[0]).max() / abs(e[0]) < 1e-4
    assert calc.runner.neighbor_list.n_builds < 60  # the Verlet list survived between calls


def test_check_state_is_exact_and_cheap(water_like, make_ghyena):
    atoms = water_like.to_ase()
    calc = HyenaCalculator(make_ghyena())
    atoms.calc = calc
    atoms.get_potential_energy()
    assert calc.check_state(atoms) == []
    atoms.positions[3, 1] += 1e-13  # smaller than ASE's isclose would... still a change
    assert calc.check_state(atoms) == ["positions"]
    atoms.get_potential_energy()
    assert calc.runner.n_calls == 2
    other = atoms.copy()
    other.numbers[0] = 8
    assert "numbers" in calc.check_state(other)


def test_unknown_species_dtype_and_open_systems(water_like, make_ghyena):
    atoms = water_like.to_ase()
    atoms.numbers[5] = 17
    atoms.calc = HyenaCalculator(make_ghyena(species=(1, 8)))
    with pytest.raises(ValueError, match=r"species \[17\] are not known"):
        atoms.get_potential_energy()
    default = torch.get_default_dtype()
    model32 = make_ghyena()
    calc = HyenaCalculator(model32, dtype=torch.float32)
    mol = water_like.to_ase()
    mol.pbc = False
    mol.cell = None
    mol.calc = calc
    assert np.isfinite(mol.get_potential_energy())
    assert calc.runner.dtype == torch.float32 and torch.get_default_dtype() == default
    assert model32.dtype == torch.float64  # the caller's model was not converted in place
    with pytest.raises(PropertyNotImplementedError, match="3-D periodic"):
        mol.get_stress()
    with pytest.raises(TypeError, match="not a hyenamd potential"):
        HyenaCalculator(torch.nn.Linear(2, 2))


def test_from_checkpoint(ghyena_path, water_like, make_ghyena):
    atoms = water_like.to_ase()
    atoms.calc = HyenaCalculator.from_checkpoint(ghyena_path, device="cpu", dtype=torch.float64)
    direct = water_like.to_ase()
    direct.calc = HyenaCalculator(make_ghyena())
    assert atoms.get_potential_energy() == pytest.approx(direct.get_potential_energy(), rel=1e-13)
    assert np.allclose(atoms.get_forces(), direct.get_forces(), atol=1e-13)


def test_dynamics_head_model_sees_ase_velocities(water_like, make_ghyena):
    model = make_ghyena(heads=("energy", "dynamics"))
    atoms = water_like.to_ase()
    atoms.calc = HyenaCalculator(model)
    e0 = atoms.get_potential_energy()
    thermalize_momenta(atoms, temperature_K=300, rng=np.random.default_rng(0))
    atoms.calc.reset()
    assert atoms.get_potential_energy() != e0
