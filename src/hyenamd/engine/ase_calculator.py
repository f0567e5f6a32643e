"""ASE calculator: ``atoms.calc = HyenaCalculator.from_checkpoint(path, device="cuda", dtype=torch.float32)``.

A thin adapter (unit and array conversion only; the physics is in the model and
:func:`hyenamd.surrogate.forces.compute_forces`). ASE's units are hyenamd's internal ones
(Å, eV), so the only conversion is the stress to Voigt order.

* ``implemented_properties``: energy, free_energy (= energy), energies (per atom), forces and,
  for a 3-D periodic cell, stress (Voigt ``[xx, yy, zz, yz, xz, xy]``, eV/Å³, ASE's sign:
  negative when compressed). All are filled by one model call.
* The neighbour list (a Verlet list with ``skin``) persists between calls (reset when the
  species change). The sequence order does not: it travels with the atoms
  (``atoms.arrays["hyenamd_order"]``, see :mod:`hyenamd.engine.ase_order`); the calculator
  writes the order it computed (by the model's rule) when the atoms carry none and uses the
  one they carry otherwise, so a copied ``Atoms`` keeps its order and the results are a
  function of the atoms handed in. A topology-ordered model needs ``residuenumbers``
  (as ``ase.io.read`` of a PDB sets them). ``order_samples=K`` averages over K orders.
* :meth:`check_state` compares exactly (``np.array_equal``) instead of ASE's ``np.isclose``
  over every array, which dominated the per-step cost for 10⁶ atoms; initial charges and
  magnetic moments are not compared (the model does not use them).
* Torch's global default dtype is never touched; ``dtype`` is explicit: ``"float32"``,
  ``"float64"`` or a torch dtype (:func:`hyenamd.dtypes.resolve_dtype`); ``default_dtype`` is
  accepted as an alias (MACE's name). Unknown keyword arguments raise ``TypeError`` instead of
  being stored as unused ASE parameters.
* The cache keys on every input the model reads: positions, numbers, cell, pbc, the
  ``residuenumbers`` array (topology labels) and, for a model with a dynamics head (its energy
  sees the velocities), the momenta.
* ``from_checkpoint([p1, p2, ...])`` builds a committee (:mod:`hyenamd.engine.committee`):
  mean energy/forces/stress plus ``energy_var``, ``forces_var``, ``stress_var`` (and the
  members' values ``energy_comm``, ``forces_comm``, ``stress_comm``) in ``calc.results``.
* :meth:`HyenaCalculator.get_descriptors` returns per-atom invariant features ``[N, F]``.
* Species the model does not know raise ``ValueError`` naming them, before any work.
* ``compile=True`` (or a ``torch.compile`` backend name such as ``"aot_eager"``) evaluates a
  G-Hyena through :class:`~hyenamd.surrogate.compiled.CompiledGHyena` (the opt-in compiled
  small-system path; off by default, see :mod:`hyenamd.engine.compile_switch`):
  :attr:`HyenaCalculator.compiled` is the wrapper (``fallback_reason``, ``n_compiled_calls``),
  None when off.
"""

from __future__ import annotations

import os
from typing import ClassVar

import numpy as np
import torch
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from torch import nn

from hyenamd.dtypes import resolve_dtype
from hyenamd.engine.adapter import ModelRunner, check_species
from hyenamd.engine.ase_order import ORDER_ARRAY, ORDER_RULE_INFO, read_orders, write_orders
from hyenamd.engine.compile_switch import CompileOption, check_compilable
from hyenamd.engine.static_inputs import same_bits
from hyenamd.errors import check_finite_outputs
from hyenamd.system import Labels
from hyenamd.units import FS_PER_ASE_TIME

__all__ = ["HyenaCalculator"]


#: keyword arguments of ASE's ``Calculator.__init__`` passed through; anything else is a TypeError
_ASE_KWARGS = frozenset({"restart", "ignore_bad_restart_file", "label", "atoms", "directory"})


def _dtype_argument(dtype, default_dtype) -> torch.dtype | None:
    """``dtype`` or its alias ``default_dtype`` (MACE's name), parsed; both given must agree."""
    a = resolve_dtype(dtype, what="dtype")
    b = resolve_dtype(default_dtype, what="default_dtype")
    if a is not None and b is not None and a != b:
        raise ValueError(f"dtype={dtype!r} and default_dtype={default_dtype!r} disagree; give one")
    return a or b


def _labels(atoms) -> Labels | None:
    if "residuenumbers" not in atoms.arrays:
        return None
    resn = torch.as_tensor(np.asarray(atoms.arrays["residuenumbers"], dtype=np.int64))
    return Labels(torch.unique_consecutive(resn, return_inverse=True)[1])


def _voigt(s: np.ndarray) -> np.ndarray:
    """``[..., 3, 3]`` → Voigt ``[..., 6]`` (xx, yy, zz, yz, xz, xy)."""
    return np.stack([s[..., 0, 0], s[..., 1, 1], s[..., 2, 2], s[..., 1, 2], s[..., 0, 2], s[..., 0, 1]], -1)


def _committee_results(out: dict) -> dict:
    """The committee's extra results (variances and members' values), stress ones in Voigt order."""
    res = {k: out[k] for k in ("energy_var", "forces_var", "energy_comm", "forces_comm") if k in out}
    for k in ("stress_var", "stress_comm"):
        if k in out:
            res[k] = _voigt(out[k])
    return res


class HyenaCalculator(Calculator):
    """ASE calculator for a hyenamd potential (a G-Hyena model or any module of the potential protocol).

    model: the potential (or a :class:`~hyenamd.engine.committee.Committee`). device/dtype:
    where and in which precision to run (default: the model's; ``"float32"``/``"float64"`` or a
    torch dtype; ``default_dtype`` is an alias). skin: Verlet-list skin, Å. stress: compute the
    stress for 3-D periodic cells. order_samples: K, average over K valid sequence orders.
    compile: False (default), True (inductor) or a ``torch.compile`` backend name (or callable): run a
    G-Hyena through the compiled small-system path (the first call compiles: 30-50 s with
    inductor; same results within rounding; eager fallbacks in ``calc.compiled.fallback_reason``).
    A bad value, or compile asked for a potential that is not one G-Hyena, raises before any work.
    """

    implemented_properties: ClassVar[list[str]] = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(
        self,
        model: nn.Module,
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str | None = None,
        default_dtype: torch.dtype | str | None = None,
        skin: float = 0.5,
        stress: bool = True,
        order_samples: int = 1,
        compile: CompileOption = False,
        **kwargs,
    ) -> None:
        unknown = sorted(set(kwargs) - _ASE_KWARGS)
        if unknown:
            raise TypeError(
                f"HyenaCalculator got unexpected keyword arguments {unknown}; it takes device, dtype "
                "(alias default_dtype), skin, stress, order_samples, compile and ASE's "
                "restart/label/atoms/directory"
            )
        dtype = _dtype_argument(dtype, default_dtype)
        check_compilable(model, compile, what="HyenaCalculator(compile=...)")  # before any work
        super().__init__(**kwargs)
        if not hasattr(model, "cutoff"):
            raise TypeError(f"{type(model).__name__} is not a hyenamd potential (no 'cutoff' attribute)")
        from hyenamd.engine.committee import Committee, CommitteeRunner

        runner = CommitteeRunner if isinstance(model, Committee) else ModelRunner
        self.runner = runner(
            model, device=device, dtype=dtype, skin=skin, order_samples=order_samples, compile=compile
        )
        self.compute_stress = bool(stress)
        #: host-side per-call inputs kept between calls, keyed on content (see ``_read_orders``)
        self._cache: dict = {}

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike | list | tuple,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | str | None = None,
        *,
        default_dtype: torch.dtype | str | None = None,
        **kwargs,
    ) -> HyenaCalculator:
        """Load a model saved with :func:`hyenamd.surrogate.save_model` (no code runs on load).

        path: one checkpoint, or a list of them for a committee (mean prediction plus
        ``energy_var``/``forces_var``/``stress_var``; MACE's ``model_paths=[...]``).
        dtype (alias ``default_dtype``): ``"float32"``, ``"float64"`` or a torch dtype; None keeps the saved one.
        """
        from hyenamd.surrogate import load_model

        dtype = _dtype_argument(dtype, default_dtype)
        if isinstance(path, list | tuple):
            if len(path) == 1:
                path = path[0]
            else:
                from hyenamd.engine.committee import load_committee

                return cls(load_committee(path, device=device, dtype=dtype), **kwargs)
        return cls(load_model(path, device=device, dtype=dtype), **kwargs)

    @property
    def model(self) -> nn.Module:
        return self.runner.model

    @property
    def compiled(self) -> nn.Module | None:
        """The :class:`~hyenamd.surrogate.compiled.CompiledGHyena` the calculator evaluates
        (``compile`` on), else None: its ``fallback_reason`` says why the last call ran eagerly
        (None: it ran compiled) and ``n_compiled_calls`` counts the compiled calls."""
        from hyenamd.surrogate.compiled import CompiledGHyena

        pot = self.runner.potential
        return pot if isinstance(pot, CompiledGHyena) else None

    @property
    def reads_velocities(self) -> bool:
        """Whether the model's energy depends on the velocities (a dynamics head): then momenta are an input."""
        return getattr(self.model, "dynamics_head", None) is not None

    def check_state(self, atoms, tol: float = 1e-15) -> list[str]:
        """Exact comparison with the last calculated atoms (cheap for 10⁶ atoms), over every model
        input: bit for bit (:func:`~hyenamd.engine.static_inputs.same_bits`; a dtype change counts)."""
        old = self.atoms
        if old is None:
            return list(all_changes)
        changes = []
        if len(old) != len(atoms) or not same_bits(old.numbers, atoms.numbers):
            return list(all_changes)
        if not same_bits(old.positions, atoms.positions):
            changes.append("positions")
        if not same_bits(old.cell.array, atoms.cell.array):
            changes.append("cell")
        if not same_bits(old.pbc, atoms.pbc):
            changes.append("pbc")
        arrays = ("residuenumbers", ORDER_ARRAY) + (("momenta",) if self.reads_velocities else ())
        for name in arrays:
            if not same_bits(old.arrays.get(name), atoms.arrays.get(name)):
                changes.append(name)
        return changes

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        if atoms is None:
            atoms = self.atoms
        if atoms is None:
            raise ValueError("HyenaCalculator.calculate needs atoms")
        numbers = atoms.numbers
        self._check_species(numbers)
        rule = self.runner.ordering
        orders = None if rule is None else self._read_orders(atoms, rule)
        pbc = np.asarray(atoms.pbc, dtype=bool)
        cell = atoms.cell.array
        full = bool(pbc.all()) and self._volume(cell) > 0
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
            velocities=self._velocities(atoms),
            stress=with_stress,
            orders=orders,
        )
        check_finite_outputs("HyenaCalculator", energy=out["energy"], forces=out["forces"])
        if rule is not None and orders is None:
            write_orders(atoms, out["orders"], rule)  # the order travels with the atoms
        if self.atoms is None or self.check_state(atoms):  # ASE's get_property copies it already
            self.atoms = atoms.copy()
        self.results = {
            "energy": out["energy"],
            "free_energy": out["energy"],
            "energies": out["energies"],
            "forces": out["forces"],
        }
        if with_stress:
            self.results["stress"] = _voigt(out["stress"])
        self.results.update(_committee_results(out))

    # ------------------------------------------------------------------ per-call inputs, cached
    def _check_species(self, numbers: np.ndarray) -> None:
        """:func:`check_species` once per distinct ``numbers`` (ValueError naming unknown ones)."""
        if not same_bits(numbers, self._cache.get("numbers")):
            check_species(self.model, numbers)
            self._cache["numbers"] = np.array(numbers, copy=True)

    def _read_orders(self, atoms, rule: str) -> torch.Tensor | None:
        """:func:`read_orders` of ``atoms``, reused while their ranks array and rule are unchanged
        (the same tensor, so the runner's check of it is reused too)."""
        ranks = atoms.arrays.get(ORDER_ARRAY)
        made_by = atoms.info.get(ORDER_RULE_INFO)
        hit = self._cache.get("orders")
        if ranks is not None and hit is not None and hit[0] == (made_by, rule) and same_bits(ranks, hit[1]):
            return hit[2]
        orders = read_orders(atoms, rule)
        self._cache["orders"] = None if orders is None else ((made_by, rule), ranks.copy(), orders)
        return orders

    def _volume(self, cell: np.ndarray) -> float:
        """``|det(cell)|`` Å³, recomputed only when the cell changed."""
        hit = self._cache.get("cell")
        if hit is None or not same_bits(cell, hit[0]):
            hit = self._cache["cell"] = (cell.copy(), abs(float(np.linalg.det(cell))))
        return hit[1]

    def _velocities(self, atoms) -> np.ndarray | None:
        """Å/fs, for a model whose energy reads them (dynamics head); else None (not computed)."""
        if not self.reads_velocities or not atoms.has("momenta"):
            return None
        return atoms.get_velocities() / FS_PER_ASE_TIME

    # ------------------------------------------------------------------ descriptors
    def get_descriptors(self, atoms=None) -> np.ndarray:
        """Per-atom invariant features ``[N, F]`` (the scalar channels the energy head reads; MACE's
        ``get_descriptors``); ``[K, N, F]`` for a committee of K models."""
        from hyenamd.engine.committee import descriptors

        atoms = self.atoms if atoms is None else atoms
        if atoms is None:
            raise ValueError("get_descriptors needs atoms")
        check_species(self.model, atoms.numbers)
        cell = atoms.cell.array
        batch, nbrs = self.runner.prepare(
            atoms.positions,
            atoms.numbers,
            cell if cell.any() else None,
            np.asarray(atoms.pbc, dtype=bool),
            masses=atoms.get_masses(),
            labels=_labels(atoms),
            velocities=atoms.get_velocities() / FS_PER_ASE_TIME if atoms.has("momenta") else None,
            orders=None if self.runner.ordering is None else read_orders(atoms, self.runner.ordering),
        )
        return descriptors(self.model, batch, nbrs).cpu().double().numpy()
