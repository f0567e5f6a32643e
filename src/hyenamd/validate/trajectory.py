"""Trajectories as the validation code sees them: a topology plus a stream of frames.

Every metric in :mod:`hyenamd.validate` reads frames one at a time through the small
:class:`Trajectory` protocol, so a million-atom store is never loaded whole:

==================  =============================  ==========================================
member              shape / unit                   meaning
==================  =============================  ==========================================
species             [n_atoms] int                  atomic numbers
masses              [n_atoms] amu
labels              :class:`hyenamd.Labels`/None   residue index, atom/residue names
info                dict                           metadata (e.g. ``ensemble``)
times               [n_frames] fs                  time of each frame
``len(traj)``       int                            number of frames
frames(...)         iterator of :class:`Frame`     positions Å, velocities Å/fs, cell Å
observable(name)    [n_frames] or None             per-frame scalars (eV for energies)
forces(i)           [n_atoms, 3] eV/Å or None      reference forces of frame i
==================  =============================  ==========================================

:class:`ArrayTrajectory` holds arrays in memory (tests, small runs); :class:`StoreTrajectory`
(in :mod:`hyenamd.validate.store`) adapts a :func:`hyenamd.io.open_store` store.

This module also has the numpy helpers that several metrics share: the minimum image of
short displacements, time unwrapping (:class:`Unwrapper`), making a molecule whole, and
topology selections (solute, backbone, Cα).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from hyenamd.elements import MASSES
from hyenamd.system import Labels

__all__ = [
    "SOLVENT_RESIDUES",
    "ArrayTrajectory",
    "Frame",
    "Trajectory",
    "Unwrapper",
    "make_whole",
    "mic",
    "select",
]

#: residue names treated as solvent or ions (not solute) by :func:`select`
SOLVENT_RESIDUES = frozenset(
    {"HOH", "WAT", "SOL", "TIP3", "TIP4", "TIP5", "T3P", "T4P", "SPC", "H2O"}
    | {"NA", "CL", "K", "MG", "CA", "ZN", "LI", "RB", "CS", "NA+", "CL-", "K+", "SOD", "CLA", "POT"}
)


@dataclass(frozen=True)
class Frame:
    """One frame: ``positions`` [n_atoms, 3] Å (float64), ``velocities`` [n_atoms, 3] Å/fs or None,
    ``cell`` [3, 3] Å (rows = lattice vectors) or None, ``pbc`` [3] bool, ``time`` fs, ``index``
    (frame number in the trajectory)."""

    index: int
    time: float
    positions: np.ndarray
    velocities: np.ndarray | None
    cell: np.ndarray | None
    pbc: np.ndarray


@runtime_checkable
class Trajectory(Protocol):
    """What the validation metrics need from a trajectory (see the module docstring)."""

    species: np.ndarray
    masses: np.ndarray
    labels: Labels | None
    info: Mapping[str, Any]

    def __len__(self) -> int: ...

    @property
    def times(self) -> np.ndarray: ...

    def frames(self, start: int = 0, stop: int | None = None, stride: int = 1) -> Iterator[Frame]: ...

    def observable(self, name: str) -> np.ndarray | None: ...

    def forces(self, index: int) -> np.ndarray | None: ...


@dataclass
class ArrayTrajectory:
    """A trajectory held in numpy arrays (any array-like; memmaps work).

    positions: [n_frames, n_atoms, 3] Å; species: [n_atoms]; times: [n_frames] fs (default
    ``arange(n_frames) * dt``); cell: [3, 3] or [n_frames, 3, 3] Å or None; pbc: [3] bool;
    velocities: [n_frames, n_atoms, 3] Å/fs or None; frame_forces: [n_frames, n_atoms, 3] eV/Å or
    None; observables: name -> [n_frames] (``potential_energy``, ``kinetic_energy`` in eV...).
    """

    positions: np.ndarray
    species: np.ndarray
    times: np.ndarray | None = None
    dt: float = 1.0
    cell: np.ndarray | None = None
    pbc: Any = True
    velocities: np.ndarray | None = None
    frame_forces: np.ndarray | None = None
    masses: np.ndarray | None = None
    labels: Labels | None = None
    observables: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        pos = np.asarray(self.positions)
        if pos.ndim != 3 or pos.shape[2] != 3:
            raise ValueError(f"positions must have shape [n_frames, n_atoms, 3], got {pos.shape}")
        self.positions = pos
        t, n = pos.shape[:2]
        self.species = np.asarray(self.species, dtype=np.int64)
        if self.species.shape != (n,):
            raise ValueError(f"species has shape {self.species.shape}, expected ({n},)")
        self.masses = (
            np.asarray([MASSES[z] for z in self.species], dtype=np.float64)
            if self.masses is None
            else np.asarray(self.masses, dtype=np.float64)
        )
        self.times = (
            np.arange(t, dtype=np.float64) * self.dt if self.times is None else np.asarray(self.times, float)
        )
        if self.times.shape != (t,):
            raise ValueError(f"times has shape {self.times.shape}, expected ({t},)")
        if self.cell is not None:
            self.cell = np.asarray(self.cell, dtype=np.float64)
            if self.cell.shape not in ((3, 3), (t, 3, 3)):
                raise ValueError(f"cell must be [3, 3] or [n_frames, 3, 3], got {self.cell.shape}")
        self.pbc = np.broadcast_to(np.asarray(self.pbc, dtype=bool), (3,)).copy()
        if self.cell is None:
            self.pbc[:] = False
        for name, arr in (("velocities", self.velocities), ("frame_forces", self.frame_forces)):
            if arr is not None and np.shape(arr) != pos.shape:
                raise ValueError(f"{name} has shape {np.shape(arr)}, expected {pos.shape}")
        for name, arr in self.observables.items():
            if np.shape(arr) != (t,):
                raise ValueError(f"observable {name!r} has shape {np.shape(arr)}, expected ({t},)")

    def __len__(self) -> int:
        return int(self.positions.shape[0])

    def _cell(self, i: int) -> np.ndarray | None:
        if self.cell is None:
            return None
        return self.cell if self.cell.ndim == 2 else self.cell[i]

    def frames(self, start: int = 0, stop: int | None = None, stride: int = 1) -> Iterator[Frame]:
        for i in range(*slice(start, stop, stride).indices(len(self))):
            v = None if self.velocities is None else np.asarray(self.velocities[i], dtype=np.float64)
            yield Frame(
                i,
                float(self.times[i]),
                np.asarray(self.positions[i], dtype=np.float64),
                v,
                self._cell(i),
                self.pbc,
            )

    def observable(self, name: str) -> np.ndarray | None:
        arr = self.observables.get(name)
        return None if arr is None else np.asarray(arr, dtype=np.float64)

    def forces(self, index: int) -> np.ndarray | None:
        return None if self.frame_forces is None else np.asarray(self.frame_forces[index], dtype=np.float64)


# --------------------------------------------------------------------------- geometry helpers
def mic(d: np.ndarray, cell: np.ndarray | None, pbc: np.ndarray) -> np.ndarray:
    """Minimum image of *short* displacements ``d`` [..., 3] Å by rounding fractional components.

    Exact whenever the true minimum-image vector is shorter than half the narrowest periodic
    width of the cell (bonds, torsion arms, per-frame moves), for any triclinic cell; longer
    vectors need :func:`hyenamd.geometry.minimum_image`.
    """
    if cell is None or not np.any(pbc):
        return d
    inv = np.linalg.inv(_complete(cell))
    f = d @ inv
    f = f - np.where(pbc, np.round(f), 0.0)
    return f @ _complete(cell)


def _complete(cell: np.ndarray) -> np.ndarray:
    """Cell with zero rows (non-periodic axes) replaced by unit vectors so it inverts."""
    from hyenamd.geometry import complete_cell

    if np.all(np.linalg.norm(cell, axis=1) > 0):
        return cell
    import torch

    return complete_cell(torch.as_tensor(cell, dtype=torch.float64)).numpy()


def half_width(cell: np.ndarray | None, pbc: np.ndarray) -> float:
    """Half the narrowest periodic perpendicular width of ``cell``, Å (inf when not periodic)."""
    if cell is None or not np.any(pbc):
        return float("inf")
    c = _complete(cell)
    vol = abs(np.linalg.det(c))
    areas = np.linalg.norm(np.cross(c[[1, 2, 0]], c[[2, 0, 1]]), axis=1)
    return 0.5 * float(np.min((vol / areas)[np.asarray(pbc, bool)]))


class Unwrapper:
    """Removes periodic wrapping from a stream of frames, atom by atom.

    ``x_unwrapped(t) = x_unwrapped(t-1) + mic(x(t) - x(t-1))``: exact as long as no atom moves
    more than half the narrowest box width between two consecutive frames analysed (checked
    loosely: a frame-to-frame move over 0.45 of it raises, since the result would be wrong).
    Memory: two [n_atoms, 3] arrays.
    """

    def __init__(self) -> None:
        self._prev: np.ndarray | None = None
        self._unwrapped: np.ndarray | None = None

    def __call__(self, positions: np.ndarray, cell: np.ndarray | None, pbc: np.ndarray) -> np.ndarray:
        if self._prev is None:
            self._unwrapped = np.array(positions, dtype=np.float64)
        else:
            d = mic(positions - self._prev, cell, pbc)
            hw = half_width(cell, pbc)
            if np.isfinite(hw) and d.size and float(np.abs(d).max()) > 0.9 * hw:
                raise ValueError(
                    f"an atom moved {float(np.abs(d).max()):.2f} Å between two analysed frames, close to "
                    f"half the box width ({hw:.2f} Å): frames are too far apart to unwrap (lower the stride)"
                )
            self._unwrapped = self._unwrapped + d
        self._prev = np.array(positions, dtype=np.float64)
        return self._unwrapped


def make_whole(positions: np.ndarray, cell: np.ndarray | None, pbc: np.ndarray) -> np.ndarray:
    """Make a chain of atoms whole: each atom moved to the image nearest the previous one.

    positions: [n, 3] Å in topology order (consecutive atoms of a peptide are bonded or close).
    Returns [n, 3]; a no-op without periodicity.
    """
    if cell is None or not np.any(pbc) or len(positions) < 2:
        return np.array(positions, dtype=np.float64)
    steps = mic(np.diff(positions, axis=0), cell, pbc)
    return np.concatenate([positions[:1], positions[:1] + np.cumsum(steps, axis=0)])


# --------------------------------------------------------------------------- selections
def select(species: np.ndarray, labels: Labels | None, what: str) -> np.ndarray:
    """Indices (int64, sorted) of a named selection.

    ``all``: every atom. ``heavy``: every non-hydrogen. ``solute``: atoms whose residue name is
    not a solvent or ion (:data:`SOLVENT_RESIDUES`); empty without labels. ``backbone``: solute
    atoms named N, CA, C, O. ``ca``: solute atoms named CA. Empty where labels lack the names.
    """
    n = len(species)
    if what == "all":
        return np.arange(n)
    if what == "heavy":
        return np.flatnonzero(np.asarray(species) != 1)
    if labels is None or labels.residue_names is None:
        return np.zeros(0, dtype=np.int64)
    solute = np.array([r.upper() not in SOLVENT_RESIDUES for r in labels.residue_names])
    if what == "solute":
        return np.flatnonzero(solute)
    if labels.atom_names is None:
        return np.zeros(0, dtype=np.int64)
    names = np.array([a.upper() for a in labels.atom_names])
    if what == "backbone":
        return np.flatnonzero(solute & np.isin(names, ["N", "CA", "C", "O"]))
    if what == "ca":
        return np.flatnonzero(solute & (names == "CA"))
    raise ValueError(f"unknown selection {what!r}; use all, heavy, solute, backbone or ca")
