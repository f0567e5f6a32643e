"""An observer that writes ``ase.md`` dynamics into a hyenamd store.

Example::

    dyn = VelocityVerlet(atoms, timestep=2 * ase.units.fs)
    obs = StoreObserver(dyn, "traj.zarr", forces=True)
    dyn.attach(obs, interval=10)
    dyn.run(1000)
    obs.close()

ASE already works in Å and eV; velocities and time are converted from ASE's time unit with
ASE's own ``ase.units.fs`` (the constant the dynamics' timestep was built with). The step is ``dyn.nsteps``; the observables are the potential, kinetic and total
energy (eV) and ``atoms.get_temperature()`` (K), all from the calculator's cached results.
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["StoreObserver"]


class StoreObserver:
    """Callable for ``dyn.attach(observer, interval=k)``; creates the store at its first call.

    dyn: an ``ase.md`` dynamics object (or ``ase.optimize`` optimizer: time is then 0).
    path: ``.h5``/``.h5md``/``.zarr``. velocities, forces, energies: what to store.
    dtype: float64 (default, ASE's precision) or float32. append: continue an existing store.
    Other keywords go to :func:`hyenamd.io.open_store`.
    """

    def __init__(
        self,
        dyn,
        path: str | os.PathLike,
        *,
        velocities: bool = True,
        forces: bool = True,
        energies: bool = True,
        dtype=np.float64,
        append: bool = False,
        **store_options,
    ) -> None:
        self.dyn, self.path = dyn, path
        self.velocities, self.forces, self.energies = velocities, forces, energies
        self.dtype = np.dtype(dtype)
        self.append_mode = append
        self.store_options = store_options
        self.store = None

    @property
    def atoms(self):
        return self.dyn.atoms

    def _open(self) -> None:
        import torch

        from hyenamd.io import open_store
        from hyenamd.system import System

        atoms = self.atoms
        template = System.from_ase(atoms, dtype=torch.float32 if self.dtype == np.float32 else torch.float64)
        fields = (
            ("position",) + (("velocity",) if self.velocities else ()) + (("force",) if self.forces else ())
        )
        obs = ("potential_energy", "kinetic_energy", "total_energy", "temperature") if self.energies else ()
        self.store = open_store(
            self.path, "a" if self.append_mode else "w", system=template, fields=fields, observables=obs,
            dtype=self.dtype, **self.store_options,
        )  # fmt: skip

    def __call__(self) -> None:
        from ase.units import fs

        if self.store is None:
            self._open()
        atoms, dt = self.atoms, self.dtype
        kw = {}
        if self.velocities:
            kw["velocities"] = (atoms.get_velocities() * fs).astype(dt)
        if self.forces:
            kw["forces"] = np.asarray(atoms.get_forces()).astype(dt)
        if "box" in self.store.fields:
            kw["cell"] = atoms.cell.array.astype(dt)
        if self.energies:
            pe, ke = float(atoms.get_potential_energy()), float(atoms.get_kinetic_energy())
            kw.update(potential_energy=pe, kinetic_energy=ke, total_energy=pe + ke)
            kw["temperature"] = float(atoms.get_temperature())
        step = int(getattr(self.dyn, "nsteps", 0))
        time_fs = float(self.dyn.get_time()) / fs if hasattr(self.dyn, "get_time") else 0.0
        self.store.append(atoms.get_positions().astype(dt), step=step, time=time_fs, **kw)

    def close(self) -> None:
        """Close the store (marks it complete)."""
        if self.store is not None:
            self.store.close()
