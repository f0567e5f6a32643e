"""An OpenMM reporter that writes a hyenamd store from ``openmm.app.Simulation``.

The reporter knows *when* and *what* (``describeNextReport``); the store knows the layout.
Units are converted at this boundary only: nm → Å, ps → fs, kJ/mol → eV, nm/ps → Å/fs,
kJ/mol/nm → eV/Å. Observables: potential, kinetic and total energy (eV) and the
instantaneous temperature (K) with OpenMM's own count of degrees of freedom (as
``StateDataReporter``: 3 per massive particle, minus constraints, minus 3 with a
``CMMotionRemover``).

Example::

    reporter = StoreReporter("traj.h5", 100, forces=True)
    simulation.reporters.append(reporter)
    simulation.step(10_000)
    reporter.close()
"""

from __future__ import annotations

import os

import numpy as np

from hyenamd.units import (
    KJ_PER_MOL_NM_TO_EV_PER_ANGSTROM,
    KJ_PER_MOL_TO_EV,
    NM_PER_PS_TO_ANGSTROM_PER_FS,
    NM_TO_ANGSTROM,
    PS_TO_FS,
)

__all__ = ["StoreReporter", "system_from_openmm"]


def system_from_openmm(simulation, state=None, dtype=None):
    """A :class:`hyenamd.System` template from a Simulation: atomic numbers and residues from
    the topology, masses from the OpenMM System, box from the state (or topology)."""
    import openmm.unit as u
    import torch

    from hyenamd.io.schema import StoreError
    from hyenamd.system import Labels, System

    top, omm = simulation.topology, simulation.system
    atoms = list(top.atoms())
    species = []
    for a in atoms:
        if a.element is None:
            raise StoreError(
                f"atom {a.index} ({a.name} in {a.residue.name}) has no element (a virtual site?): "
                "hyenamd stores need an atomic number for every particle"
            )
        species.append(a.element.atomic_number)
    masses = [omm.getParticleMass(i).value_in_unit(u.dalton) for i in range(omm.getNumParticles())]
    if state is None:
        state = simulation.context.getState(positions=True)
    dtype = dtype or torch.float64
    pos = state.getPositions(asNumpy=True).value_in_unit(u.nanometer) * NM_TO_ANGSTROM
    cell = None
    if omm.usesPeriodicBoundaryConditions():
        cell = state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(u.nanometer) * NM_TO_ANGSTROM
    labels = Labels(
        residue_index=torch.tensor([a.residue.index for a in atoms]),
        chain_index=torch.tensor([a.residue.chain.index for a in atoms]),
        atom_names=tuple(a.name for a in atoms),
        residue_names=tuple(a.residue.name for a in atoms),
    )
    return System(
        positions=torch.as_tensor(np.asarray(pos), dtype=dtype),
        species=torch.tensor(species),
        masses=torch.tensor(masses, dtype=dtype),
        cell=None if cell is None else torch.as_tensor(np.asarray(cell), dtype=dtype),
        pbc=cell is not None,
        labels=labels,
    )


def _degrees_of_freedom(omm) -> int:
    import openmm

    dof = 3 * sum(omm.getParticleMass(i)._value > 0 for i in range(omm.getNumParticles()))
    for i in range(omm.getNumConstraints()):
        p1, p2, _ = omm.getConstraintParameters(i)
        if omm.getParticleMass(p1)._value > 0 or omm.getParticleMass(p2)._value > 0:
            dof -= 1
    if any(isinstance(omm.getForce(i), openmm.CMMotionRemover) for i in range(omm.getNumForces())):
        dof -= 3
    return dof


class StoreReporter:
    """Write every ``report_interval``-th step of an OpenMM simulation to a hyenamd store.

    path: ``.h5``/``.h5md``/``.zarr``. velocities, forces: also store them. energies: store
    potential/kinetic/total energy and temperature. dtype: float32 (default) or float64.
    append: continue an existing store (``mode="a"``). Other keywords go to ``open_store``.
    The store is created at the first report; call :meth:`close` at the end.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        report_interval: int,
        *,
        velocities: bool = True,
        forces: bool = False,
        energies: bool = True,
        dtype=np.float32,
        enforce_periodic_box: bool | None = None,
        append: bool = False,
        **store_options,
    ) -> None:
        if int(report_interval) < 1:
            raise ValueError(f"report_interval must be >= 1, got {report_interval}")
        self.path, self.interval = path, int(report_interval)
        self.velocities, self.forces, self.energies = velocities, forces, energies
        self.dtype = np.dtype(dtype)
        self.periodic = enforce_periodic_box
        self.append_mode = append
        self.store_options = store_options
        self.store = None
        self._dof = None
        self._include = (
            ["positions"] + (["velocities"] if velocities else []) + (["forces"] if forces else [])
        )
        if energies or velocities:
            self._include.append("energy")

    def describeNextReport(self, simulation) -> dict:
        steps = self.interval - simulation.currentStep % self.interval
        return {"steps": steps, "periodic": self.periodic, "include": self._include}

    def _open(self, simulation, state) -> None:
        import torch

        from hyenamd.io import open_store

        tdtype = torch.float32 if self.dtype == np.float32 else torch.float64
        template = system_from_openmm(simulation, state, dtype=tdtype)
        fields = (
            ("position",) + (("velocity",) if self.velocities else ()) + (("force",) if self.forces else ())
        )
        obs = ("potential_energy", "kinetic_energy", "total_energy", "temperature") if self.energies else ()
        mode = "a" if self.append_mode else "w"
        self.store = open_store(
            self.path,
            mode,
            system=template,
            fields=fields,
            observables=obs,
            dtype=self.dtype,
            **self.store_options,
        )
        self._dof = _degrees_of_freedom(simulation.system)

    def report(self, simulation, state) -> None:
        """Convert the state to internal units and append it as one frame."""
        import openmm.unit as u

        if self.store is None:
            self._open(simulation, state)
        nm = u.nanometer
        pos = state.getPositions(asNumpy=True).value_in_unit(nm) * NM_TO_ANGSTROM
        kw = {}
        if self.velocities:
            kw["velocities"] = (state.getVelocities(asNumpy=True).value_in_unit(nm / u.picosecond)
                                * NM_PER_PS_TO_ANGSTROM_PER_FS).astype(self.dtype)  # fmt: skip
        if self.forces:
            f = state.getForces(asNumpy=True).value_in_unit(u.kilojoule_per_mole / nm)
            kw["forces"] = (f * KJ_PER_MOL_NM_TO_EV_PER_ANGSTROM).astype(self.dtype)
        if "box" in self.store.fields:
            box = state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(nm) * NM_TO_ANGSTROM
            kw["cell"] = np.asarray(box).astype(self.dtype)
        if self.energies:
            pe = state.getPotentialEnergy().value_in_unit(u.kilojoule_per_mole) * KJ_PER_MOL_TO_EV
            ke = state.getKineticEnergy().value_in_unit(u.kilojoule_per_mole) * KJ_PER_MOL_TO_EV
            kw.update(potential_energy=pe, kinetic_energy=ke, total_energy=pe + ke)
            kw["temperature"] = (2 * state.getKineticEnergy() / (self._dof * u.MOLAR_GAS_CONSTANT_R)).value_in_unit(
                u.kelvin
            ) if self._dof > 0 else 0.0  # fmt: skip
        time_fs = state.getTime().value_in_unit(u.picosecond) * PS_TO_FS
        self.store.append(np.asarray(pos).astype(self.dtype), step=simulation.currentStep, time=time_fs, **kw)

    def close(self) -> None:
        """Close the store (marks it complete)."""
        if self.store is not None:
            self.store.close()
