"""hyenamd inside OpenMM: ``MLPotential('hyenamd', model=path)`` on ``openmm.PythonForce``.

Uses openmm-ml's ``MLPotential`` when ``openmmml`` is installed (hyenamd registers itself in its
``openmmml.potentials`` entry-point group) and hyenamd's own fallback with the same API
otherwise. The model is a *randomly initialised* small G-Hyena saved with ``save_model`` (this
example trains nothing): energies are not physical, the plumbing is the real one.

1. ``createSystem``: alanine dipeptide (cut from villin in openmm's own ``test.pdb``) entirely
   with the model, 20 Langevin steps.
2. ``createMixedSystem``: the same peptide in a TIP3P water box; the peptide's internal energy
   comes from the model, everything else from amber14 (mechanical embedding).

    python examples/openmm_potential.py
"""

from __future__ import annotations

import pathlib
import tempfile

import openmm
import openmm.app as app
import openmm.unit as u

from hyenamd.engine.reference_systems import alanine_dipeptide
from hyenamd.surrogate import GHyena, GHyenaConfig, save_model

try:  # openmm-ml when installed, else hyenamd's fallback with the same API
    from openmmml import MLPotential
except ImportError:
    from hyenamd.engine.openmm_potential import MLPotential


def run(system: openmm.System, positions, steps: int = 20) -> float:
    integrator = openmm.LangevinMiddleIntegrator(300 * u.kelvin, 1 / u.picosecond, 0.5 * u.femtoseconds)
    ctx = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("CPU"))
    ctx.setPositions(positions)
    integrator.step(steps)
    return ctx.getState(getEnergy=True).getPotentialEnergy().value_in_unit(u.kilojoule_per_mole)


def main() -> None:
    cfg = GHyenaConfig(species=(1, 6, 7, 8), cutoff=4.0, n_scalar=16, n_vector=4, pattern=("local", "global"))
    with tempfile.TemporaryDirectory() as tmp:
        path = str(save_model(GHyena(cfg), pathlib.Path(tmp) / "model.safetensors", note="random weights"))
        potential = MLPotential("hyenamd", model=path)
        print(f"MLPotential from {MLPotential.__module__}")

        pep = alanine_dipeptide()
        ml_system = potential.createSystem(pep.topology)
        print(
            f"1. pure ML, {pep.n_atoms} atoms: E after 20 steps = {run(ml_system, pep.positions * u.nanometer):.3f} kJ/mol"
        )

        ff = app.ForceField("amber14-all.xml", "amber14/tip3p.xml")
        solvated = app.Modeller(pep.topology, pep.positions * u.nanometer)
        solvated.addSolvent(ff, model="tip3p", boxSize=openmm.Vec3(1.8, 1.8, 1.8) * u.nanometer)
        mm = ff.createSystem(solvated.topology, nonbondedMethod=app.PME, nonbondedCutoff=0.8 * u.nanometer,
                             constraints=app.HBonds)  # fmt: skip
        mixed = potential.createMixedSystem(solvated.topology, mm, range(pep.n_atoms))
        e = run(mixed, solvated.positions)
        print(
            f"2. ML peptide in {solvated.topology.getNumAtoms() - pep.n_atoms} MM water atoms: E = {e:.1f} kJ/mol"
        )


if __name__ == "__main__":
    main()
