"""Adapters: the OpenMM reporter and the ASE observer write stores in internal units."""

from __future__ import annotations

import numpy as np
import pytest

from hyenamd.io import open_store
from hyenamd.units import (
    KJ_PER_MOL_NM_TO_EV_PER_ANGSTROM,
    KJ_PER_MOL_TO_EV,
    NM_PER_PS_TO_ANGSTROM_PER_FS,
)


def _argon_simulation():
    import openmm
    import openmm.app as app
    import openmm.unit as u

    n_side, spacing = 3, 0.38  # nm
    top = app.Topology()
    chain = top.addChain()
    system = openmm.System()
    nb = openmm.NonbondedForce()
    nb.setNonbondedMethod(openmm.NonbondedForce.CutoffPeriodic)
    nb.setCutoffDistance(0.5 * u.nanometer)
    box = n_side * spacing
    positions = []
    for i in range(n_side**3):
        res = top.addResidue("AR", chain)
        top.addAtom("Ar", app.Element.getBySymbol("Ar"), res)
        system.addParticle(39.948)
        nb.addParticle(0.0, 0.34, 0.997)
        positions.append([(i // 9) * spacing, (i // 3 % 3) * spacing, (i % 3) * spacing])
    system.addForce(nb)
    system.setDefaultPeriodicBoxVectors(
        openmm.Vec3(box, 0, 0), openmm.Vec3(0, box, 0), openmm.Vec3(0, 0, box)
    )
    top.setPeriodicBoxVectors(np.eye(3) * box)
    integ = openmm.VerletIntegrator(2 * u.femtosecond)
    sim = app.Simulation(top, system, integ, openmm.Platform.getPlatformByName("Reference"))
    sim.context.setPositions(np.array(positions) + 0.01 * np.random.default_rng(0).normal(size=(27, 3)))
    sim.context.setVelocitiesToTemperature(120 * u.kelvin, 1)
    return sim


class _Capture:
    """Keeps the raw OpenMM states at the same interval (the reference)."""

    def __init__(self, interval):
        self.interval, self.states = interval, []

    def describeNextReport(self, simulation):
        steps = self.interval - simulation.currentStep % self.interval
        return {"steps": steps, "periodic": None, "include": ["positions", "velocities", "forces", "energy"]}

    def report(self, simulation, state):
        self.states.append((simulation.currentStep, state))


@pytest.mark.parametrize("suffix", [".h5", ".zarr"])
def test_openmm_reporter_converts_units(tmp_path, suffix):
    pytest.importorskip("openmm")
    import openmm.unit as u

    from hyenamd.io.openmm_reporter import StoreReporter

    sim = _argon_simulation()
    path = tmp_path / f"omm{suffix}"
    rep = StoreReporter(path, 5, forces=True, dtype=np.float64)
    cap = _Capture(5)
    sim.reporters += [rep, cap]
    sim.step(20)
    rep.close()
    with open_store(path) as st:
        assert len(st) == 4 and st.status == "complete"
        assert st.steps.tolist() == [5, 10, 15, 20]
        np.testing.assert_allclose(st.times, [10.0, 20.0, 30.0, 40.0])  # 2 fs steps, in fs
        assert st.system.species.tolist() == [18] * 27
        assert st.system.labels.residue_names[0] == "AR"
        for k, (step, state) in enumerate(cap.states):
            assert st.steps[k] == step
            nm = u.nanometer
            pos = state.getPositions(asNumpy=True).value_in_unit(nm) * 10.0
            np.testing.assert_allclose(st.read(k, "positions"), pos, rtol=1e-15)
            vel = state.getVelocities(asNumpy=True).value_in_unit(nm / u.picosecond)
            np.testing.assert_allclose(
                st.read(k, "velocities"), vel * NM_PER_PS_TO_ANGSTROM_PER_FS, rtol=1e-15
            )
            f = state.getForces(asNumpy=True).value_in_unit(u.kilojoule_per_mole / nm)
            np.testing.assert_allclose(st.read(k, "forces"), f * KJ_PER_MOL_NM_TO_EV_PER_ANGSTROM, rtol=1e-14)
            np.testing.assert_allclose(np.diag(st.read(k, "cell")), [11.4] * 3)
            pe = state.getPotentialEnergy().value_in_unit(u.kilojoule_per_mole) * KJ_PER_MOL_TO_EV
            assert st.observable("potential_energy")[k] == pytest.approx(pe, rel=1e-14)
            ke = st.observable("kinetic_energy")[k]
            # temperature with 3N dof (no constraints, no CMMotionRemover)
            assert st.observable("temperature")[k] == pytest.approx(2 * ke / (81 * 8.617333262e-5), rel=1e-6)


@pytest.mark.parametrize("suffix", [".h5", ".zarr"])
def test_ase_observer(tmp_path, suffix):
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.md.verlet import VelocityVerlet
    from ase.units import fs

    from hyenamd.io.ase_observer import StoreObserver

    atoms = bulk("Cu", cubic=True).repeat((2, 2, 2))
    atoms.rattle(0.05, seed=1)
    atoms.calc = EMT()
    atoms.set_velocities(np.random.default_rng(2).normal(size=(len(atoms), 3)) * 0.02)
    dyn = VelocityVerlet(atoms, timestep=2 * fs)
    obs = StoreObserver(dyn, tmp_path / f"ase{suffix}")
    dyn.attach(obs, interval=5)
    dyn.run(20)
    obs.close()
    with open_store(tmp_path / f"ase{suffix}") as st:
        assert st.steps.tolist() == [0, 5, 10, 15, 20]
        np.testing.assert_allclose(st.times, [0, 10, 20, 30, 40], rtol=1e-12)
        last = st[-1]
        np.testing.assert_array_equal(last.positions.numpy(), atoms.get_positions())
        np.testing.assert_allclose(st.read(-1, "forces"), atoms.get_forces(), rtol=1e-15, atol=0)
        np.testing.assert_allclose(last.velocities.numpy(), atoms.get_velocities() * fs, rtol=1e-15)
        assert st.observable("potential_energy")[-1] == atoms.get_potential_energy()
        assert st.observable("temperature")[-1] == pytest.approx(atoms.get_temperature())
        np.testing.assert_array_equal(st.read(-1, "cell"), atoms.cell.array)
