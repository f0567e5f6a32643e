"""OpenMM: MLPotential('hyenamd') (the fallback here; openmm-ml when installed) vs HyenaCalculator."""

from __future__ import annotations

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as u
import pytest
import torch

from hyenamd.engine import HyenaCalculator
from hyenamd.engine.openmm_potential import HyenaPotentialImplFactory, MLPotential
from hyenamd.engine.reference_systems import alanine_dipeptide, argon_box
from hyenamd.units import EV_PER_ANGSTROM_TO_KJ_PER_MOL_NM, EV_TO_KJ_PER_MOL


def _openmm_energy_forces(system, positions_nm, platform="Reference", groups=-1):
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName(platform))
    if system.usesPeriodicBoundaryConditions():
        ctx.setPeriodicBoxVectors(*system.getDefaultPeriodicBoxVectors())
    ctx.setPositions(positions_nm * u.nanometer)
    st = ctx.getState(getEnergy=True, getForces=True, groups=groups)
    e = st.getPotentialEnergy().value_in_unit(u.kilojoule_per_mole)
    f = st.getForces(asNumpy=True).value_in_unit(u.kilojoule_per_mole / u.nanometer)
    return e, np.asarray(f)


@pytest.fixture(scope="module")
def argon32():
    return argon_box(n_cells=2, cutoff=5.0, switch_on=4.5, rattle=0.2, seed=3)


def _calculator_reference(ghyena_path, system):
    atoms = system.to_ase()
    atoms.calc = HyenaCalculator.from_checkpoint(ghyena_path, dtype=torch.float64)
    return atoms.get_potential_energy(), atoms.get_forces()


def test_create_system_matches_calculator_and_runs(ghyena_path, argon32):
    pot = MLPotential("hyenamd", model=str(ghyena_path), dtype="float64")
    system = pot.createSystem(argon32.topology)
    assert system.usesPeriodicBoundaryConditions()
    e_kj, f_kj = _openmm_energy_forces(system, argon32.positions)
    e_ev, f_ev = _calculator_reference(ghyena_path, argon32.to_hyenamd())
    assert e_kj == pytest.approx(e_ev * EV_TO_KJ_PER_MOL, rel=1e-5)
    scale = np.abs(f_ev).max() * EV_PER_ANGSTROM_TO_KJ_PER_MOL_NM
    assert np.abs(f_kj - f_ev * EV_PER_ANGSTROM_TO_KJ_PER_MOL_NM).max() <= 1e-5 * scale
    # 100 Langevin steps on the CPU platform
    integ = openmm.LangevinMiddleIntegrator(90 * u.kelvin, 1 / u.picosecond, 2 * u.femtoseconds)
    integ.setRandomNumberSeed(1)
    ctx = openmm.Context(system, integ, openmm.Platform.getPlatformByName("CPU"))
    ctx.setPositions(argon32.positions * u.nanometer)
    ctx.setVelocitiesToTemperature(90 * u.kelvin, 1)
    integ.step(100)
    st = ctx.getState(getPositions=True, getEnergy=True)
    assert np.isfinite(st.getPositions(asNumpy=True)._value).all()
    assert np.isfinite(st.getPotentialEnergy()._value)
    assert ctx.getStepCount() == 100


def test_wrapped_positions_and_serialisation(ghyena_path, argon32):
    system = MLPotential("hyenamd", model=str(ghyena_path), dtype="float64").createSystem(argon32.topology)
    e0, f0 = _openmm_energy_forces(system, argon32.positions)
    box = np.diag(argon32.box_angstrom()) / 10.0
    shifted = argon32.positions.copy()
    shifted[::3] += box * np.array([1, -1, 2])  # whole lattice vectors: same periodic system
    e1, f1 = _openmm_energy_forces(system, shifted)
    assert e1 == pytest.approx(e0, rel=1e-10) and np.allclose(f1, f0, atol=1e-8)
    # a model given by path makes the System serialisable (the pickle holds the path)
    copy = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(system))
    e2, _ = _openmm_energy_forces(copy, argon32.positions)
    assert e2 == pytest.approx(e0, rel=1e-12)
    from hyenamd.surrogate import load_model

    in_memory = MLPotential("hyenamd", model=load_model(ghyena_path)).createSystem(argon32.topology)
    with pytest.raises(Exception, match="pickle"):
        openmm.XmlSerializer.serialize(in_memory)


def _solvated_dipeptide():
    pep = alanine_dipeptide()
    ff = app.ForceField("amber14-all.xml", "amber14/tip3p.xml")
    m = app.Modeller(pep.topology, pep.positions * u.nanometer)
    m.addSolvent(ff, model="tip3p", boxSize=openmm.Vec3(1.6, 1.6, 1.6) * u.nanometer)
    mm = ff.createSystem(
        m.topology, nonbondedMethod=app.PME, nonbondedCutoff=0.7 * u.nanometer, constraints=app.HBonds
    )
    x = np.asarray(m.positions.value_in_unit(u.nanometer))
    return m.topology, mm, x, list(range(pep.n_atoms))


def test_create_mixed_system_on_a_solvated_peptide(ghyena_path):
    top, mm, x, ml = _solvated_dipeptide()
    assert top.getNumAtoms() > 300  # 22 peptide atoms + ~130 waters
    mixed = MLPotential("hyenamd", model=str(ghyena_path), dtype="float64").createMixedSystem(
        top, mm, ml, forceGroup=1
    )
    # the ML force acts on the peptide only and equals the calculator on the peptide in the box
    e_ml, f_ml = _openmm_energy_forces(mixed, x, groups={1})
    from hyenamd import Labels, System

    atoms = list(top.atoms())[: len(ml)]
    species = [a.element.atomic_number for a in atoms]
    box = np.array([v.value_in_unit(u.angstrom) for v in top.getPeriodicBoxVectors()])
    labels = Labels(torch.tensor([a.residue.index for a in atoms]))  # same (topology) sequence order
    pep = System(torch.tensor(x[ml] * 10.0), species, cell=torch.tensor(box), pbc=True, labels=labels)
    e_ev, f_ev = _calculator_reference(ghyena_path, pep)
    assert e_ml == pytest.approx(e_ev * EV_TO_KJ_PER_MOL, rel=1e-5)
    assert np.abs(f_ml[ml] - f_ev * EV_PER_ANGSTROM_TO_KJ_PER_MOL_NM).max() <= 1e-5 * np.abs(f_ev).max() * 100
    assert np.abs(f_ml[len(ml) :]).max() == 0.0

    # bonded terms inside the peptide are gone, those of the water stay; peptide constraints removed
    def bonds(s):
        f = next(f for f in s.getForces() if isinstance(f, openmm.HarmonicBondForce))
        return [tuple(f.getBondParameters(k)[:2]) for k in range(f.getNumBonds())]

    inside = [b for b in bonds(mm) if b[0] in ml and b[1] in ml]
    assert inside and not [b for b in bonds(mixed) if b[0] in ml and b[1] in ml]
    assert len(bonds(mixed)) == len(bonds(mm)) - len(inside)
    assert all(
        not (p1 in ml and p2 in ml)
        for p1, p2, _ in (mixed.getConstraintParameters(k) for k in range(mixed.getNumConstraints()))
    )
    # and it runs
    integ = openmm.LangevinMiddleIntegrator(300 * u.kelvin, 1 / u.picosecond, 0.5 * u.femtoseconds)
    ctx = openmm.Context(mixed, integ, openmm.Platform.getPlatformByName("CPU"))
    ctx.setPositions(x * u.nanometer)
    integ.step(5)
    assert np.isfinite(ctx.getState(getEnergy=True).getPotentialEnergy()._value)
    # an ML region cut through a covalent bond needs link atoms (openmm-ml)
    with pytest.raises(ValueError, match="link atoms"):
        MLPotential("hyenamd", model=str(ghyena_path)).createMixedSystem(top, mm, ml[:10])


def test_errors_and_entry_point(ghyena_path):
    top = app.Topology()
    chain = top.addChain()
    top.addAtom("CL", app.Element.getBySymbol("Cl"), top.addResidue("CL", chain))
    with pytest.raises(ValueError, match=r"species \[17\]"):
        MLPotential("hyenamd", model=str(ghyena_path)).createSystem(top)
    with pytest.raises(ValueError, match="needs model"):
        MLPotential("hyenamd")
    with pytest.raises(FileNotFoundError):
        MLPotential("hyenamd", model="/nonexistent/model.safetensors")
    from importlib.metadata import entry_points

    (ep,) = [e for e in entry_points(group="openmmml.potentials") if e.name == "hyenamd"]
    assert ep.load() is HyenaPotentialImplFactory
    impl = ep.load()().createImpl("hyenamd", model=str(ghyena_path))
    assert impl.getSupportedEmbeddings() == [] and impl.getMLLongRange() is False


def test_openmmml_front_end_when_installed(ghyena_path, argon32):
    """The same potential through openmm-ml itself (runs only where openmmml is installed)."""
    openmmml = pytest.importorskip("openmmml")
    sys_ml = openmmml.MLPotential("hyenamd", model=str(ghyena_path), dtype="float64").createSystem(
        argon32.topology
    )
    sys_fb = MLPotential("hyenamd", model=str(ghyena_path), dtype="float64").createSystem(argon32.topology)
    e1, f1 = _openmm_energy_forces(sys_ml, argon32.positions)
    e2, f2 = _openmm_energy_forces(sys_fb, argon32.positions)
    assert e1 == e2 and np.array_equal(f1, f2)


def test_compile_switch_matches_eager_and_survives_serialisation(ghyena_path, argon32):
    """``compile`` (here the cheap ``aot_eager`` backend) gives the eager energies and forces, is
    kept by ``XmlSerializer``, and a bad value is refused before any work."""
    eager = MLPotential("hyenamd", model=str(ghyena_path), dtype="float64").createSystem(argon32.topology)
    pot = MLPotential("hyenamd", model=str(ghyena_path), dtype="float64", compile="aot_eager")
    system = pot.createSystem(argon32.topology)
    e0, f0 = _openmm_energy_forces(eager, argon32.positions)
    e1, f1 = _openmm_energy_forces(system, argon32.positions)
    assert e1 == pytest.approx(e0, rel=1e-10, abs=1e-10)
    assert np.abs(f1 - f0).max() <= 1e-8 * max(np.abs(f0).max(), 1e-12)
    copy = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(system))
    import pickle

    from hyenamd.engine.openmm_potential import HyenaForce
    from hyenamd.surrogate.compiled import CompiledGHyena

    species = np.array([18] * argon32.n_atoms)
    back = pickle.loads(pickle.dumps(HyenaForce(str(ghyena_path), species, None, True, compile="aot_eager")))
    assert back.settings["compile"] == "aot_eager" and isinstance(back.runner.potential, CompiledGHyena)
    e2, _ = _openmm_energy_forces(copy, argon32.positions)
    assert e2 == pytest.approx(e0, rel=1e-10, abs=1e-10)
    with pytest.raises(ValueError, match="not a torch.compile backend"):
        MLPotential("hyenamd", model=str(ghyena_path), compile="no-such-backend").createSystem(
            argon32.topology
        )
    with pytest.raises(TypeError, match="backend name"):
        MLPotential("hyenamd", model=str(ghyena_path), compile=lambda gm, ex: gm).createSystem(
            argon32.topology
        )
