"""The data contract shared by every part of hyenamd: :class:`System` and :class:`Batch`.

A :class:`System` is one configuration of atoms in internal units (Å, amu, Å/fs):

==================  =====================  ==================================================
field               shape / dtype          meaning
==================  =====================  ==================================================
positions           [n_atoms, 3] float     Cartesian positions, Å
species             [n_atoms] int64        atomic numbers 1..118
masses              [n_atoms] float        amu (defaults to standard atomic masses)
cell                [3, 3] float or None   lattice vectors as rows (ASE convention), Å
pbc                 [3] bool               periodic along each cell vector
velocities          [n_atoms, 3] or None   Å/fs
labels              :class:`Labels`/None   topology labels (residue, chain, atom names)
order               [n_atoms] int64/None   canonical sequence order for the global convolutions
==================  =====================  ==================================================

A :class:`Batch` concatenates systems PyG-style (``batch`` index per atom, ``ptr`` offsets) so
systems of different sizes share one set of tensors without padding.

Every constructor validates its input and raises :class:`SystemError` (a ``ValueError``)
naming the problem before any work is done. Validation runs on the host once per system,
not per MD step: integrators update tensors in place and never rebuild a ``System``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from hyenamd.checks import InvalidSystemError
from hyenamd.checks import as_numeric_tensor as _as_tensor
from hyenamd.checks import check_bounded as _check_bounded
from hyenamd.checks import check_finite as _check_finite
from hyenamd.checks import fail as _fail
from hyenamd.checks import validate_cell as _validate_cell
from hyenamd.dtypes import resolve_dtype
from hyenamd.elements import MASSES, MAX_Z

if TYPE_CHECKING:  # pragma: no cover
    import ase

__all__ = ["Batch", "InvalidSystemError", "Labels", "System"]

_FLOAT_DTYPES = (torch.float32, torch.float64)


@dataclass(frozen=True)
class Labels:
    """Per-atom topology labels (all optional except ``residue_index``).

    residue_index: ``[n_atoms]`` int64, residue number of each atom (0-based, increasing).
    chain_index: ``[n_atoms]`` int64, chain number of each atom (0-based); zeros if absent.
    atom_names: per-atom names ("CA", "OW"...), or None.
    residue_names: per-atom residue names ("ALA", "HOH"...), or None.
    """

    residue_index: Tensor
    chain_index: Tensor | None = None
    atom_names: tuple[str, ...] | None = None
    residue_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "residue_index", torch.as_tensor(self.residue_index, dtype=torch.int64))
        n = self.residue_index.shape[0] if self.residue_index.ndim == 1 else -1
        if self.residue_index.ndim != 1:
            _fail(f"labels.residue_index must have shape [n_atoms], got {tuple(self.residue_index.shape)}")
        ci = self.chain_index
        ci = torch.zeros(n, dtype=torch.int64) if ci is None else torch.as_tensor(ci, dtype=torch.int64)
        if ci.shape != (n,):
            _fail(f"labels.chain_index has shape {tuple(ci.shape)}, expected ({n},)")
        object.__setattr__(self, "chain_index", ci)
        for name in ("atom_names", "residue_names"):
            val = getattr(self, name)
            if val is not None:
                val = tuple(str(v) for v in val)
                if len(val) != n:
                    _fail(f"labels.{name} has {len(val)} entries, expected {n}")
                object.__setattr__(self, name, val)

    def __len__(self) -> int:
        return int(self.residue_index.shape[0])

    def select(self, idx: Tensor) -> Labels:
        """Labels of the atoms ``idx`` (a 1-D index tensor), in that order."""
        ii = idx.tolist()
        return Labels(
            self.residue_index[idx],
            self.chain_index[idx],
            None if self.atom_names is None else tuple(self.atom_names[k] for k in ii),
            None if self.residue_names is None else tuple(self.residue_names[k] for k in ii),
        )


@dataclass(frozen=True, eq=False)
class System:
    """One configuration of atoms in internal units (see the module docstring for fields).

    Construct directly with tensors/array-likes (masses default to standard atomic masses,
    pbc to False) or with :meth:`from_ase`. The fields are validated on construction;
    :meth:`replace` returns a validated copy with some fields changed.
    """

    positions: Tensor
    species: Tensor
    masses: Tensor | None = None
    cell: Tensor | None = None
    pbc: Tensor | Sequence[bool] | bool = False
    velocities: Tensor | None = None
    labels: Labels | None = None
    order: Tensor | None = None
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        pos = _as_tensor("positions", self.positions)
        if not pos.is_floating_point():
            pos = pos.to(torch.get_default_dtype())
        if pos.dtype not in _FLOAT_DTYPES:
            _fail(f"positions must be float32 or float64, got {pos.dtype}")
        if pos.ndim != 2 or pos.shape[1] != 3:
            _fail(f"positions must have shape [n_atoms, 3], got {tuple(pos.shape)}")
        n = pos.shape[0]
        if n == 0:
            _fail("a System needs at least one atom")
        _check_finite("positions", pos)
        _check_bounded("positions", pos)
        dtype, device = pos.dtype, pos.device

        sp = _as_tensor("species", self.species, device=device)
        if sp.is_floating_point() or sp.dtype == torch.bool or sp.is_complex():
            _fail(f"species must be integer atomic numbers, got dtype {sp.dtype}")
        sp = sp.to(torch.int64)
        if sp.shape != (n,):
            _fail(f"species has shape {tuple(sp.shape)} but positions has {n} atoms; expected ({n},)")
        if bool(((sp < 1) | (sp > MAX_Z)).any()):
            bad = sorted({int(z) for z in sp[(sp < 1) | (sp > MAX_Z)].tolist()})
            _fail(f"species must be atomic numbers in 1..{MAX_Z}; got {bad[:10]}")

        if self.masses is None:
            m = torch.tensor(MASSES, dtype=dtype, device=device)[sp]
        else:
            m = _as_tensor("masses", self.masses, device=device)
            if not m.is_floating_point():
                m = m.to(dtype)
            m = m.to(dtype)
            if m.shape != (n,):
                _fail(f"masses has shape {tuple(m.shape)}, expected ({n},)")
            _check_finite("masses", m)
            if bool((m <= 0).any()):
                k = int((m <= 0).nonzero()[0])
                _fail(f"masses must be positive (amu); atom {k} has mass {float(m[k])}")

        pbc = _as_tensor("pbc", self.pbc, allow_bool=True)
        if pbc.is_floating_point():
            _fail(f"pbc must be booleans, got dtype {pbc.dtype}")
        pbc = pbc.to(torch.bool)
        if pbc.ndim == 0:
            pbc = pbc.repeat(3)
        if pbc.shape != (3,):
            _fail(f"pbc must be a bool or 3 bools, got shape {tuple(pbc.shape)}")
        pbc = pbc.to(device)

        cell = self.cell
        if cell is not None:
            cell = _as_tensor("cell", cell, device=device)
            if not cell.is_floating_point():
                cell = cell.to(dtype)
            cell = cell.to(dtype)
            if cell.shape == (3,):
                cell = torch.diag(cell)
            if cell.shape != (3, 3):
                _fail(f"cell must have shape [3, 3] (rows = lattice vectors) or [3], got {tuple(cell.shape)}")
            _check_finite("cell", cell)
            _check_bounded("cell", cell)
            _validate_cell(cell, pbc)
        elif bool(pbc.any()):
            _fail(f"pbc is {pbc.tolist()} but no cell was given; periodic axes need cell vectors")

        vel = self.velocities
        if vel is not None:
            vel = _as_tensor("velocities", vel, device=device)
            if not vel.is_floating_point():
                vel = vel.to(dtype)
            vel = vel.to(dtype)
            if vel.shape != (n, 3):
                _fail(f"velocities has shape {tuple(vel.shape)}, expected ({n}, 3)")
            _check_finite("velocities", vel)

        if self.labels is not None:
            if not isinstance(self.labels, Labels):
                _fail(f"labels must be a hyenamd.system.Labels, got {type(self.labels).__name__}")
            if len(self.labels) != n:
                _fail(f"labels describe {len(self.labels)} atoms but positions has {n}")

        order = self.order
        if order is not None:
            order = torch.as_tensor(order, device=device)
            if order.is_floating_point():
                _fail(f"order must be an integer permutation, got dtype {order.dtype}")
            order = order.to(torch.int64)
            if order.shape != (n,):
                _fail(f"order has shape {tuple(order.shape)}, expected ({n},)")
            if not torch.equal(torch.sort(order).values, torch.arange(n, device=device)):
                _fail("order must be a permutation of 0..n_atoms-1")

        for name, val in (
            ("positions", pos),
            ("species", sp),
            ("masses", m),
            ("pbc", pbc),
            ("cell", cell),
            ("velocities", vel),
            ("order", order),
        ):
            object.__setattr__(self, name, val)

    # ------------------------------------------------------------------ properties
    @property
    def n_atoms(self) -> int:
        return int(self.positions.shape[0])

    def __len__(self) -> int:
        return self.n_atoms

    @property
    def dtype(self) -> torch.dtype:
        return self.positions.dtype

    @property
    def device(self) -> torch.device:
        return self.positions.device

    @property
    def volume(self) -> float | None:
        """Cell volume in Å³ (None without a full 3-D cell)."""
        if self.cell is None:
            return None
        det = float(torch.linalg.det(self.cell.double()))
        return det if det > 0 else None

    def __repr__(self) -> str:
        cell = "None" if self.cell is None else f"{[round(float(x), 4) for x in self.cell.diagonal()]}(diag)"
        return (
            f"System(n_atoms={self.n_atoms}, species={sorted(set(self.species.tolist()))}, "
            f"cell={cell}, pbc={self.pbc.tolist()}, dtype={self.dtype}, device={self.device}, "
            f"velocities={'yes' if self.velocities is not None else 'no'})"
        )

    # ------------------------------------------------------------------ conversions
    def replace(self, **changes) -> System:
        """A validated copy with some fields replaced (``system.replace(positions=x)``)."""
        return replace(self, **changes)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | str | None = None) -> System:
        """Copy to a device and/or floating dtype (``"float32"``/``"float64"`` or a torch dtype; integer fields keep theirs)."""
        try:
            dtype = resolve_dtype(dtype)
        except ValueError as e:
            raise InvalidSystemError(str(e)) from None

        def f(t: Tensor | None) -> Tensor | None:
            if t is None:
                return None
            if t.is_floating_point():
                return t.to(device=device, dtype=dtype)
            return t.to(device=device)

        return replace(
            self,
            positions=f(self.positions),
            species=f(self.species),
            masses=f(self.masses),
            cell=f(self.cell),
            pbc=f(self.pbc),
            velocities=f(self.velocities),
            order=f(self.order),
        )

    @classmethod
    def from_ase(cls, atoms: ase.Atoms, *, dtype: torch.dtype | str = torch.float64) -> System:
        """Build from ``ase.Atoms`` (velocities converted from ASE time units to Å/fs).

        A cell is kept when any of its vectors is non-zero; pbc is taken as is.
        Residue labels are read from ``atoms.arrays["residuenumbers"]`` when present
        (as written by ASE's PDB reader), atom names from ``atoms.arrays["atomtypes"]``, the
        sequence order from ``atoms.arrays["hyenamd_order"]`` (per-atom ranks, as the ASE
        calculator writes them; the first column when there are several).
        dtype: ``"float32"``/``"float64"`` or a torch dtype.
        """
        dtype = resolve_dtype(dtype, allow_none=False)
        from hyenamd.units import FS_PER_ASE_TIME

        cell_arr = atoms.cell.array
        cell = None if not cell_arr.any() else torch.as_tensor(cell_arr, dtype=dtype)
        vel = None
        if atoms.has("momenta"):
            vel = torch.as_tensor(atoms.get_velocities(), dtype=dtype) / FS_PER_ASE_TIME
        labels = None
        if "residuenumbers" in atoms.arrays:
            resn = torch.as_tensor(atoms.arrays["residuenumbers"], dtype=torch.int64)
            names = atoms.arrays.get("atomtypes")
            rnames = atoms.arrays.get("residuenames")
            labels = Labels(
                torch.unique_consecutive(resn, return_inverse=True)[1],
                atom_names=None if names is None else tuple(str(s).strip() for s in names),
                residue_names=None if rnames is None else tuple(str(s).strip() for s in rnames),
            )
        order = None
        if "hyenamd_order" in atoms.arrays:
            ranks = torch.as_tensor(atoms.arrays["hyenamd_order"], dtype=torch.int64).reshape(len(atoms), -1)
            order = torch.argsort(ranks[:, 0], stable=True)
            if torch.unique(ranks[:, 0]).numel() != len(atoms):
                _fail('atoms.arrays["hyenamd_order"] repeats sequence positions; delete it to recompute')
        return cls(
            positions=torch.as_tensor(atoms.get_positions(), dtype=dtype),
            species=torch.as_tensor(atoms.get_atomic_numbers(), dtype=torch.int64),
            masses=torch.as_tensor(atoms.get_masses(), dtype=dtype),
            cell=cell,
            pbc=torch.as_tensor(atoms.get_pbc()),
            velocities=vel,
            labels=labels,
            order=order,
        )

    def to_ase(self) -> ase.Atoms:
        """Convert to ``ase.Atoms`` (float64; velocities converted to ASE time units)."""
        import ase

        from hyenamd.units import FS_PER_ASE_TIME

        atoms = ase.Atoms(
            numbers=self.species.cpu().numpy(),
            positions=self.positions.detach().cpu().double().numpy(),
            cell=None if self.cell is None else self.cell.detach().cpu().double().numpy(),
            pbc=self.pbc.cpu().numpy(),
            masses=self.masses.detach().cpu().double().numpy(),
        )
        if self.velocities is not None:
            atoms.set_velocities(self.velocities.detach().cpu().double().numpy() * FS_PER_ASE_TIME)
        if self.labels is not None:
            atoms.set_array("residuenumbers", self.labels.residue_index.cpu().numpy())
            if self.labels.atom_names is not None:
                atoms.set_array("atomtypes", self.labels.atom_names, dtype=object)
            if self.labels.residue_names is not None:
                atoms.set_array("residuenames", self.labels.residue_names, dtype=object)
        if self.order is not None:  # per-atom sequence positions (ranks), as the calculator reads them
            atoms.set_array("hyenamd_order", torch.argsort(self.order).cpu().numpy())
        return atoms


@dataclass(frozen=True, eq=False)
class Batch:
    """Several systems concatenated PyG-style (use :meth:`from_systems`).

    positions ``[n_atoms, 3]``, species/masses ``[n_atoms]``, ``batch`` ``[n_atoms]`` (system
    index of each atom), ``ptr`` ``[n_systems + 1]`` (atom offsets), cell ``[n_systems, 3, 3]``
    (zeros for systems without a cell), pbc ``[n_systems, 3]``, velocities ``[n_atoms, 3]`` or
    None (all systems or none), ``order`` ``[n_atoms]`` global atom indices: the canonical
    order of system 0, then of system 1, ... (``None`` unless every system has one).
    """

    positions: Tensor
    species: Tensor
    masses: Tensor
    cell: Tensor
    pbc: Tensor
    batch: Tensor
    ptr: Tensor
    velocities: Tensor | None = None
    order: Tensor | None = None
    labels: tuple[Labels | None, ...] = ()
    has_cell: Tensor | None = None

    @classmethod
    def from_systems(cls, systems: Sequence[System]) -> Batch:
        """Concatenate systems (same dtype and device) into one batch."""
        systems = list(systems)
        if not systems:
            raise InvalidSystemError("Batch.from_systems needs at least one System")
        for k, s in enumerate(systems):
            if not isinstance(s, System):
                raise InvalidSystemError(f"item {k} is a {type(s).__name__}, not a hyenamd.System")
        dtype, device = systems[0].dtype, systems[0].device
        for k, s in enumerate(systems):
            if s.dtype != dtype or s.device != device:
                raise InvalidSystemError(
                    f"system {k} has dtype {s.dtype} on {s.device}, but system 0 has {dtype} on {device}; "
                    "convert with System.to(device, dtype) first"
                )
        has_vel = [s.velocities is not None for s in systems]
        if any(has_vel) and not all(has_vel):
            raise InvalidSystemError("either every system of a batch has velocities or none does")
        counts = torch.tensor([s.n_atoms for s in systems], device=device)
        ptr = torch.zeros(len(systems) + 1, dtype=torch.int64, device=device)
        ptr[1:] = torch.cumsum(counts, 0)
        zero_cell = torch.zeros(3, 3, dtype=dtype, device=device)
        order = None
        if all(s.order is not None for s in systems):
            order = torch.cat([s.order + ptr[k] for k, s in enumerate(systems)])
        return cls(
            positions=torch.cat([s.positions for s in systems]),
            species=torch.cat([s.species for s in systems]),
            masses=torch.cat([s.masses for s in systems]),
            cell=torch.stack([zero_cell if s.cell is None else s.cell for s in systems]),
            pbc=torch.stack([s.pbc for s in systems]),
            batch=torch.repeat_interleave(torch.arange(len(systems), device=device), counts),
            ptr=ptr,
            velocities=torch.cat([s.velocities for s in systems]) if all(has_vel) else None,
            order=order,
            labels=tuple(s.labels for s in systems),
            has_cell=torch.tensor([s.cell is not None for s in systems], device=device),
        )

    @classmethod
    def from_system(cls, system: System) -> Batch:
        return cls.from_systems([system])

    @property
    def n_systems(self) -> int:
        return int(self.ptr.shape[0] - 1)

    @property
    def n_atoms(self) -> int:
        return int(self.positions.shape[0])

    @property
    def dtype(self) -> torch.dtype:
        return self.positions.dtype

    @property
    def device(self) -> torch.device:
        return self.positions.device

    @property
    def counts(self) -> Tensor:
        """Atoms per system, ``[n_systems]``."""
        return self.ptr[1:] - self.ptr[:-1]

    def replace(self, **changes) -> Batch:
        """A copy with some tensors replaced (no re-validation: used in hot loops)."""
        return replace(self, **changes)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | str | None = None) -> Batch:
        """Copy to a device and/or floating dtype (``"float32"``/``"float64"`` or a torch dtype; integer fields keep theirs)."""
        dtype = resolve_dtype(dtype)

        def f(t):
            if t is None:
                return None
            return t.to(device=device, dtype=dtype) if t.is_floating_point() else t.to(device=device)

        return replace(
            self,
            **{
                k: f(getattr(self, k))
                for k in ("positions", "species", "masses", "cell", "pbc", "batch", "ptr")
            },
            velocities=f(self.velocities),
            order=f(self.order),
            has_cell=f(self.has_cell),
        )

    def system(self, k: int) -> System:
        """The k-th system as a validated :class:`System`."""
        if not -self.n_systems <= k < self.n_systems:
            raise IndexError(f"system index {k} out of range for a batch of {self.n_systems}")
        k = k % self.n_systems
        a, b = int(self.ptr[k]), int(self.ptr[k + 1])
        has_cell = True if self.has_cell is None else bool(self.has_cell[k])
        return System(
            positions=self.positions[a:b],
            species=self.species[a:b],
            masses=self.masses[a:b],
            cell=self.cell[k] if has_cell else None,
            pbc=self.pbc[k],
            velocities=None if self.velocities is None else self.velocities[a:b],
            labels=self.labels[k] if self.labels else None,
            order=None if self.order is None else self.order[a:b] - a,
        )

    def systems(self) -> list[System]:
        """Split back into the systems it was built from."""
        return [self.system(k) for k in range(self.n_systems)]
