"""The one logical schema of a hyenamd frame store (H5MD 1.1 names), shared by both formats.

Paths (identical in HDF5 and zarr; see ``docs/stores.md`` for every attribute):

========================================  =====================  =========================  ==============
path                                      shape                  dtype                      unit
========================================  =====================  =========================  ==============
/h5md (group; attrs version=[1, 1])       -                      -                          -
/particles/all/species                    [n_atoms]              int64 (atomic numbers)     -
/particles/all/mass                       [n_atoms]              float64                    amu
/particles/all/position/value             [n_frames, n_atoms, 3] float32 | float64          Angstrom
/particles/all/position/step              [n_frames]             int64 (commit marker)      -
/particles/all/position/time              [n_frames]             float64                    fs
/particles/all/velocity/value             [n_frames, n_atoms, 3] same as position           Angstrom fs-1
/particles/all/force/value                [n_frames, n_atoms, 3] same as position           eV Angstrom-1
/particles/all/box/edges/value            [n_frames, 3, 3]       same as position (rows)    Angstrom
/observables/<name>/value                 [n_frames, *shape]     float64                    per name
/parameters/hyenamd/template_position     [n_atoms, 3]           same as position           Angstrom
========================================  =====================  =========================  ==============

A frame ``k`` is *committed* when ``step[k]`` differs from :data:`STEP_SENTINEL` (the fill
value): every writer writes all values of a frame first, flushes them, and writes the step
last, so a reader never returns a torn frame.

This module holds names, units, the :class:`Layout` of one store and the pure validation
and quantisation functions; it imports neither h5py nor zarr.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from hyenamd.errors import HyenaError

__all__ = [
    "ATOM_FIELDS",
    "FIELD_ALIASES",
    "H5MD_VERSION",
    "OBSERVABLE_UNITS",
    "PARTICLES",
    "SCHEMA_NAME",
    "SCHEMA_VERSION",
    "STEP_SENTINEL",
    "UNITS",
    "FrameError",
    "Layout",
    "MissingFrameError",
    "SchemaError",
    "StoreError",
    "backend_for_path",
    "canonical_field",
    "quantize",
    "quantum",
]

SCHEMA_NAME = "hyenamd.frames"
SCHEMA_VERSION = 1
H5MD_VERSION = (1, 1)
#: the H5MD particle group holding every atom (MDAnalysis reads the first group of /particles)
PARTICLES = "particles/all"
PARAMETERS = "parameters/hyenamd"
#: fill value of every ``step`` array: a frame whose step equals it is not committed
STEP_SENTINEL = int(np.iinfo(np.int64).min)

#: H5MD unit strings (https://nongnu.org/h5md/modules/units.html) of the internal units
UNITS: dict[str, str] = {
    "position": "Angstrom",
    "velocity": "Angstrom fs-1",
    "force": "eV Angstrom-1",
    "box": "Angstrom",
    "time": "fs",
    "mass": "amu",
}
#: units of the observables hyenamd knows by name; others take ``units=`` at creation
OBSERVABLE_UNITS: dict[str, str] = {
    "potential_energy": "eV",
    "kinetic_energy": "eV",
    "total_energy": "eV",
    "energy": "eV",
    "conserved_energy": "eV",
    "temperature": "K",
    "volume": "Angstrom3",
    "pressure": "eV Angstrom-3",
    "stress": "eV Angstrom-3",
}

#: per-atom time-dependent elements (besides ``position``, which every store has)
ATOM_FIELDS = ("position", "velocity", "force")
FIELD_ALIASES = {
    "positions": "position",
    "velocities": "velocity",
    "forces": "force",
    "cell": "box",
    "edges": "box",
    "steps": "step",
    "times": "time",
}
#: dimension names of each logical array (zarr ``dimension_names``; HDF5 ``dimension_names`` attr)
DIMENSIONS = {
    "atom_value": ("frame", "atom", "xyz"),
    "box": ("frame", "vector", "xyz"),
    "frame": ("frame",),
}


class StoreError(HyenaError, ValueError):
    """A frame store was misused or holds unexpected data (a ``ValueError``)."""


class SchemaError(StoreError):
    """A file is not a hyenamd store (foreign file, other H5MD writer, newer schema)."""


class FrameError(StoreError):
    """A frame given to ``append`` is inconsistent with the store; nothing was written."""


class MissingFrameError(StoreError, IndexError):
    """A frame slot exists but was never committed (torn by a crash, or not yet filled)."""


def schema_version(value, path) -> int | None:
    """The integer schema version of a store's attribute, or None when missing or malformed."""
    try:
        v = int(value)
    except (TypeError, ValueError):
        return None
    return v if v >= 1 else None


def canonical_field(name: str) -> str:
    """Map user spellings (``positions``, ``cell``, ``forces``...) onto schema names."""
    return FIELD_ALIASES.get(name, name)


def backend_for_path(path: str | os.PathLike) -> str:
    """``"hdf5"`` for ``.h5``/``.h5md``/``.hdf5``, ``"zarr"`` for ``.zarr``; else a StoreError."""
    suffix = Path(path).suffix.lower()
    if suffix in (".h5", ".h5md", ".hdf5"):
        return "hdf5"
    if suffix == ".zarr":
        return "zarr"
    raise StoreError(
        f"cannot tell the store format of {os.fspath(path)!r} from its suffix {suffix!r}: "
        "use .h5, .h5md or .hdf5 for HDF5 (H5MD) and .zarr for zarr v3"
    )


def quantum(digits: int) -> float:
    """The quantisation step ``2**-b`` with the smallest ``b`` such that ``2**-b <= 10**-digits``."""
    return 2.0 ** -math.ceil(digits * math.log2(10.0))


def quantize(x: np.ndarray, digits: int) -> np.ndarray:
    """Round ``x`` onto the grid ``quantum(digits)``: ``|result - x| <= quantum/2 <= 0.5 * 10**-digits``.

    Every operation is exact in binary floating point (scaling by a power of two, rounding to
    an integer), so the bound holds without extra rounding error; the zeroed low mantissa bits
    compress well with lzf/gzip/zstd.
    """
    q = quantum(digits)
    return (np.round(x / q) * q).astype(x.dtype, copy=False)


@dataclass(frozen=True)
class Layout:
    """What one store holds: atoms, dtype, which elements, chunking, compression.

    n_atoms: atoms per frame. dtype: numpy float dtype of every per-atom array and the box.
    fields: per-atom elements present, a subset of :data:`ATOM_FIELDS` that includes ``position``.
    has_box: a per-frame box is stored (systems with a cell). pbc: periodicity per cell vector.
    observables: name -> per-frame shape (``()`` for scalars), stored as float64.
    chunk_frames, chunk_atoms: chunk shape of per-atom arrays ``(chunk_frames, chunk_atoms, 3)``
    (frame-axis arrays use ``(chunk_frames,)`` in zarr so writers of disjoint chunk-aligned frame
    ranges never share a chunk). compression: ``None``, ``"lzf"``, ``"gzip"`` (HDF5) or
    ``"zstd"``, ``"gzip"`` (zarr). quantize: field -> decimal digits of the opt-in lossy rounding.
    """

    n_atoms: int
    dtype: np.dtype
    fields: tuple[str, ...] = ("position",)
    has_box: bool = False
    pbc: tuple[bool, bool, bool] = (False, False, False)
    observables: dict[str, tuple[int, ...]] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    chunk_frames: int = 1
    chunk_atoms: int = 65536
    compression: str | None = None
    quantize: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", np.dtype(self.dtype))
        if self.dtype not in (np.float32, np.float64):
            raise StoreError(f"a store holds float32 or float64 arrays, not {self.dtype}")
        bad = [f for f in self.fields if f not in ATOM_FIELDS]
        if bad or "position" not in self.fields:
            raise StoreError(f"fields must include 'position' and be among {ATOM_FIELDS}; got {self.fields}")
        object.__setattr__(self, "fields", tuple(f for f in ATOM_FIELDS if f in self.fields))
        if self.n_atoms < 1:
            raise StoreError(f"a store needs at least one atom, got n_atoms={self.n_atoms}")
        if self.chunk_frames < 1 or self.chunk_atoms < 1:
            raise StoreError(f"chunk sizes must be positive, got {self.chunk_frames} x {self.chunk_atoms}")
        obs = {}
        for name, shape in self.observables.items():
            if name in ATOM_FIELDS or name in ("box", "step", "time", "cell") or "/" in name or not name:
                raise StoreError(f"{name!r} cannot be an observable name (reserved or contains '/')")
            obs[name] = tuple(int(s) for s in shape)
        object.__setattr__(self, "observables", obs)
        for name, digits in self.quantize.items():
            if name not in self.fields and name != "box":
                raise StoreError(f"quantize names {name!r}, which is not a stored field ({self.fields})")
            if not isinstance(digits, int) or not 0 <= digits <= 12:
                raise StoreError(f"quantize digits for {name!r} must be an int in 0..12, got {digits!r}")

    @property
    def atom_chunk(self) -> int:
        return min(self.chunk_atoms, self.n_atoms)

    def unit(self, name: str) -> str | None:
        """The unit string of an element or observable (None when unknown)."""
        if name in UNITS:
            return UNITS[name]
        return self.units.get(name, OBSERVABLE_UNITS.get(name))

    def replace(self, **kw) -> Layout:
        return replace(self, **kw)


def default_chunk_frames(n_atoms: int, itemsize: int, chunk_atoms: int = 65536) -> int:
    """Frames per chunk so that one chunk of a per-atom array holds about 64 KiB (power of two)."""
    per_frame = min(n_atoms, chunk_atoms) * 3 * itemsize
    k = max(1, (1 << 16) // max(per_frame, 1))
    return 1 << (k.bit_length() - 1)
