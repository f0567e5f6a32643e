"""ASE calculator: ``atoms.calc = HyenaCalculator.from_checkpoint(path, device="cuda", dtype=torch.float32)``.

A thin adapter (unit and array conversion only; the physics is in the model and
:func:`hyenamd.surrogate.forces.compute_forces`). ASE's units are hyenamd's internal ones
(Å, eV), so the only conversion is the stress to Voigt order.

* ``implemented_properties``: energy, free_energy (= energy), energies (per atom), forces and,
  for a 3-D periodic cell, stress (Voigt ``[xx, yy, zz, yz, xz, xy]``, eV/Å³, ASE's sign:
  negative when compressed). All are filled by one model call.
* The neighbour list (a Verlet list with ``skin``) and the canonical order persist between
  calls; they are reset when the species change.
* :meth:`check_state` compares exactly (``np.array_equal``) instead of ASE's ``np.isclose``
  over every array, which dominated the per-step cost for 10⁶ atoms; initial charges and
  magnetic moments are not compared (the model does not use them).
* Torch's global default dtype is never touched; ``dtype`` is explicit.
* Species the model does not know raise ``ValueError`` naming them, before any work.
"""

from __future__ import annotations

import os
from typing import ClassVar

import numpy as np
import torch
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from torch import nn

from hyenamd.engine.adapter import ModelRunner, check_species
from hyenamd.errors import check_finite_outputs
from hyenamd.system import Labels
from hyenamd.units import FS_PER_ASE_TIME

__all__ = ["HyenaCalculator"]


def _labels(atoms) -> Labels | None:
    if "residuenumbers" not in atoms.arrays:
        return None
    resn = torch.as_tensor(np.asarray(atoms.arrays["residuenumbers"], dtype=np.int64))
    return Labels(torch.unique_consecutive(resn, return_inverse=True)[1])


class HyenaCalculator(Calculator):
    """ASE calculator for a hyenamd potential (a G-Hyena model or any module of the potential protocol).

    model: the potential. device/dtype: where and in which precision to run (default: the
    model's). skin: Verlet-list skin, Å. stress: compute the stress for 3-D periodic cells.
    """

    implemented_properties: ClassVar[list[str]] = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(
        self,
        model: nn.Module,
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        skin: float = 0.5,
        stress: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if not hasattr(model, "cutoff"):
            raise TypeError(f"{type(model).__name__} is not a hyenamd potential (no 'cutoff' attribute)")
        self.runner = ModelRunner(model, device=device, dtype=dtype, skin=skin)
        self.compute_stress = bool(stress)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        **kwargs,
    ) -> HyenaCalculator:
        """Load a model saved with :func:`hyenamd.surrogate.save_model` (no code runs on load)."""
        from hyenamd.surrogate import load_model

        return cls(load_model(path, device=device, dtype=dtype), **kwargs)

    @property
    def model(self) -> nn.Module:
        return self.runner.model

    def check_state(self, atoms, tol: float = 1e-15) -> list[str]:
        """Exact comparison with the last calculated atoms (cheap for 10⁶ atoms)."""
        old = self.atoms
        if old is None:
            return list(all_changes)
        changes = []
        if len(old) != len(atoms) or not np.array_equal(old.numbers, atoms.numbers):
            return list(all_changes)
        if not np.array_equal(old.positions, atoms.positions):
            changes.append("positions")
        if not np.array_equal(old.cell.array, atoms.cell.array):
            changes.append("cell")
        if not np.array_equal(old.pbc, atoms.pbc):
            changes.append("pbc")
        return changes

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        if atoms is None:
            atoms = self.atoms
        if atoms is None:
            raise ValueError("HyenaCalculator.calculate needs atoms")
        numbers = atoms.numbers
        check_species(self.model, numbers)
        if self.atoms is None or self.check_state(atoms):  # ASE's get_property copies it already
            self.atoms = atoms.copy()
        pbc = np.asarray(atoms.pbc, dtype=bool)
        cell = atoms.cell.array
        full = bool(pbc.all()) and abs(np.linalg.det(cell)) > 0
        if "stress" in properties and not full:
            raise PropertyNotImplementedError("stress needs a 3-D periodic cell")
        with_stress = self.compute_stress and full
        out = self.runner(
            atoms.positions,
            numbers,
            cell if cell.any() else None,
            pbc,
            masses=atoms.get_masses(),
            labels=_labels(atoms),
            velocities=atoms.get_velocities() / FS_PER_ASE_TIME if atoms.has("momenta") else None,
            stress=with_stress,
        )
        check_finite_outputs("HyenaCalculator", energy=out["energy"], forces=out["forces"])
        self.results = {
            "energy": out["energy"],
            "free_energy": out["energy"],
            "energies": out["energies"],
            "forces": out["forces"],
        }
        if with_stress:
            s = out["stress"]
            self.results["stress"] = np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])
