"""Frame stores (HDF5/H5MD, zarr v3), their schema, datasets and converters.

``open_store(path, mode)`` picks the format from the suffix (``.h5``/``.h5md``/``.hdf5`` →
HDF5 laid out per H5MD 1.1; ``.zarr`` → zarr v3). h5py and zarr are imported only when a
store is opened. See ``docs/stores.md`` for the schema and the crash/multi-writer semantics.
"""

from __future__ import annotations

import os

from hyenamd.io.base import FrameStore
from hyenamd.io.reading import Frame
from hyenamd.io.schema import (
    STEP_SENTINEL,
    FrameError,
    MissingFrameError,
    SchemaError,
    StoreError,
    backend_for_path,
)

__all__ = [
    "STEP_SENTINEL",
    "Frame",
    "FrameError",
    "FrameStore",
    "MissingFrameError",
    "SchemaError",
    "StoreError",
    "complete_store",
    "create_zarr_store",
    "open_store",
]


def open_store(path: str | os.PathLike, mode: str = "r", **options) -> FrameStore:
    """Open or create a frame store; the format follows the suffix.

    mode: ``"r"`` read (default; also a store still being written or left by a crash),
    ``"w"`` create (``system=`` required; an existing path needs ``overwrite=True``),
    ``"a"`` append after the last committed frame (resumes after a crash; creates when missing),
    ``"r+"`` (zarr) fill the pre-allocated frames ``frames=range(a, b)``.

    Creation options: ``system`` (topology template: species, masses, cell, pbc, labels,
    order), ``fields`` (``("velocity", "force")``; default: fixed by the first frame),
    ``observables`` (names, or name -> shape), ``units`` (of extra observables), ``dtype``
    (default: the system's), ``chunk_frames``, ``chunk_atoms`` (default 65536),
    ``compression`` (HDF5: ``"lzf"``/``"gzip"``; zarr: ``"zstd"``/``"gzip"``), ``quantize``
    (decimal digits, int or per field: lossy, ``|error| <= 0.5 * 10**-digits``), ``author``.
    Writing options: ``allow_nan`` (default False), ``flush_every`` (frames per commit, default 1).

    H5MD files written by other programs open read-only (:mod:`hyenamd.io.h5md_foreign`), units
    converted to ours; options ``particle_group``, ``species`` (atomic numbers or symbols) and
    ``topology`` (a file MDAnalysis reads with elements) for files without species.
    """
    backend = backend_for_path(path)
    if backend == "hdf5":
        from hyenamd.io.h5md import H5MDStore as cls
        from hyenamd.io.h5md_foreign import ForeignH5MDStore, is_foreign_h5md

        if is_foreign_h5md(path):
            return ForeignH5MDStore(path, mode, **options)
    else:
        from hyenamd.io.zarr_store import ZarrStore as cls
    return cls(path, mode, **options)


def create_zarr_store(path, system, n_frames: int, **options) -> None:
    """Pre-allocate a zarr store for several writers (see :mod:`hyenamd.io.zarr_store`)."""
    from hyenamd.io.zarr_store import create_zarr_store as f

    f(path, system, n_frames, **options)


def complete_store(path) -> int:
    """Mark a pre-allocated zarr store complete once every frame is committed."""
    from hyenamd.io.zarr_store import complete_store as f

    return f(path)
