"""HDF5 frame store laid out per H5MD 1.1 and appended in SWMR mode (readable by MDAnalysis).

Layout: see :mod:`hyenamd.io.schema` and ``docs/stores.md``. All time-dependent datasets are
created before SWMR is switched on (at creation when ``fields=``/``observables=`` are given,
else with the first frame); the ``step``/``time`` datasets live in ``position`` and are hard
links in every other element, as H5MD allows. A writer killed mid-frame leaves the HDF5
"file open for write" flag set; ``mode="a"`` clears it (what ``h5clear -s`` does) under the
store's writer lock and drops the torn tail frame.
"""

from __future__ import annotations

import numpy as np

from hyenamd.io.base import FrameStore
from hyenamd.io.schema import (
    H5MD_VERSION,
    PARAMETERS,
    PARTICLES,
    SCHEMA_NAME,
    SCHEMA_VERSION,
    STEP_SENTINEL,
    Layout,
    SchemaError,
    StoreError,
    schema_version,
)
from hyenamd.io.static import layout_from_json, layout_to_json, static_arrays, static_from_arrays

__all__ = ["H5MDStore", "clear_status_flags"]

_FRAME_CHUNK = 1024  # frames per chunk of the small frame-axis datasets (step, time, box, observables)
#: on-disk units that differ from the internal ones: MDAnalysis' H5MD reader knows no eV-based
#: force unit, so forces are written in kJ mol-1 Angstrom-1 (one of its units) and converted back
#: on read; every other element is stored in internal units
FILE_UNITS = {"force": "kJ mol-1 Angstrom-1"}


def _h5py():
    import h5py

    return h5py


def clear_status_flags(path) -> None:
    """Clear the superblock "open for write" flags a killed HDF5 writer leaves (``h5clear -s``).

    Calls HDF5's own ``clear_status_flags`` file-access property through ctypes on the
    library h5py is linked against. Only safe when no process is writing the file: stores
    call it while holding their writer lock.
    """
    import ctypes

    h5py = _h5py()
    from h5py import h5f, h5p

    try:
        lib = ctypes.CDLL(h5p.__file__)
        h5pset = lib.H5Pset
    except (OSError, AttributeError) as e:  # pragma: no cover - depends on the h5py build
        raise StoreError(
            f"cannot reach HDF5's H5Pset to recover {path}; run `h5clear -s {path}` ({e})"
        ) from None
    h5pset.argtypes = [ctypes.c_int64, ctypes.c_char_p, ctypes.c_void_p]
    fapl = h5p.create(h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5f.LIBVER_LATEST, h5f.LIBVER_LATEST)
    flag = ctypes.c_bool(True)
    if h5pset(fapl.id, b"clear_status_flags", ctypes.byref(flag)) < 0:  # pragma: no cover
        raise StoreError(f"HDF5 refused to clear the status flags of {path}; run `h5clear -s {path}`")
    fid = h5f.open(str(path).encode(), h5f.ACC_RDWR, fapl=fapl)
    h5py.File(fid).close()


def check_not_truncated(path, lock_path) -> None:
    """Refuse a truncated HDF5 file before the SWMR open (which skips HDF5's end-of-file check
    and then reads every frame as zeros or never returns).

    A plain read-only open runs that check in microseconds. It also fails while a writer has
    the file open; then (and when a live writer holds ``lock_path``, whose file may be ahead of
    its superblock) the SWMR open goes ahead as before.
    """
    h5py = _h5py()
    try:
        h5py.File(path, "r").close()
        return
    except OSError as e:
        msg = str(e)
    if "truncated file" not in msg or _writer_alive(lock_path):
        return
    import re

    m = re.search(r"eof = (\d+).*stored_eof = (\d+)", msg)
    sizes = f" ({m.group(1)} of {m.group(2)} bytes present)" if m else ""
    raise StoreError(
        f"{path} is truncated{sizes}: an incomplete copy or a full disk; restore it from the original"
    )


def _writer_alive(lock_path) -> bool:
    """True when a live process holds the store's writer lock (``<path>.lock``)."""
    import fcntl
    import os

    try:
        fd = os.open(lock_path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


class H5MDStore(FrameStore):
    """HDF5 (H5MD 1.1) backend of :class:`hyenamd.io.base.FrameStore`; one writer (SWMR)."""

    backend = "hdf5"

    def _check_compression(self, compression, chunk_frames):
        if compression not in (None, "lzf", "gzip"):
            raise StoreError(
                f"HDF5 stores support compression None, 'lzf' or 'gzip', not {compression!r} "
                "(zstd needs hdf5plugin, which hyenamd does not depend on; use a .zarr store for zstd)"
            )
        if compression is None:
            return chunk_frames
        # A compressed chunk is rewritten (possibly in place, with other bytes) whenever a frame
        # is added to it; with one frame per chunk, committed frames are never rewritten.
        if chunk_frames not in (None, 1):
            raise StoreError(
                f"compressed HDF5 stores keep one frame per chunk (chunk_frames=1, got {chunk_frames}) so a "
                "crash can never corrupt committed frames; use a .zarr store (atomic chunk writes) for larger chunks"
            )
        return 1

    # ------------------------------------------------------------------ files
    def _exists(self) -> bool:
        return self.path.exists()

    def _remove(self) -> None:
        if self.path.is_dir():
            raise StoreError(f"{self.path} is a directory, not an HDF5 file; refusing to remove it")
        self.path.unlink()

    def _create(self, system, *, author: str | None) -> None:
        from hyenamd import __version__

        h5py = _h5py()
        f = self._f = h5py.File(self.path, "w", libver="latest")
        h = f.create_group("h5md")
        h.attrs["version"] = np.array(H5MD_VERSION, dtype=np.int32)
        h.create_group("author").attrs["name"] = author or "hyenamd user"
        c = h.create_group("creator")
        c.attrs["name"], c.attrs["version"] = "hyenamd", __version__
        f.attrs["hyenamd_schema"] = SCHEMA_NAME
        f.attrs["hyenamd_schema_version"] = SCHEMA_VERSION
        f.attrs.create("status", np.array(b"writing", dtype="S8"))
        arrays, attrs = static_arrays(system)
        p = f.create_group(PARTICLES)
        box = p.create_group("box")
        box.attrs["dimension"] = 3
        box.attrs["boundary"] = attrs["boundary"]
        f.create_group(PARAMETERS)
        for path, (arr, unit) in arrays.items():
            if arr.dtype.kind == "U":
                arr = np.char.encode(arr, "utf-8")
            ds = f.create_dataset(path, data=arr)
            if unit:
                ds.attrs["unit"] = unit
        f.create_group("observables")

    def _open(self, *, writable: bool) -> None:
        h5py = _h5py()
        if self.path.is_dir():
            raise SchemaError(f"{self.path} is a directory, not an HDF5 file")
        if not h5py.is_hdf5(self.path):
            raise SchemaError(f"{self.path} is not an HDF5 file")
        try:
            if writable:
                try:
                    self._f = h5py.File(self.path, "r+", libver="latest")
                except OSError as e:
                    if "h5clear" not in str(e) and "already open" not in str(e):
                        raise
                    clear_status_flags(self.path)  # the writer was killed; we hold the writer lock
                    self._f = h5py.File(self.path, "r+", libver="latest")
            else:
                check_not_truncated(self.path, self.lock_path)
                try:
                    self._f = h5py.File(self.path, "r", swmr=True)
                except OSError as e:  # this process already has it open without SWMR (e.g. MDAnalysis)
                    if "SWMR read access flag" not in str(e):
                        raise
                    self._f = h5py.File(self.path, "r")
        except OSError as e:
            if "truncated file" in str(e):
                raise StoreError(
                    f"{self.path} is truncated (an incomplete copy or a full disk): {e}"
                ) from None
            raise StoreError(
                f"cannot open {self.path}: {e} (a writer may have it open without having written its "
                "first frame yet)"
            ) from None
        f = self._f
        if "h5md" not in f or "particles" not in f:
            self._f.close()
            raise SchemaError(f"{self.path} is an HDF5 file but not H5MD (no /h5md and /particles groups)")
        if f.attrs.get("hyenamd_schema") != SCHEMA_NAME or PARTICLES not in f:
            creator = f["h5md/creator"].attrs.get("name", "?") if "h5md/creator" in f else "?"
            self._f.close()
            raise SchemaError(
                f"{self.path} is an H5MD file written by {creator!r}, not a hyenamd store "
                f"(no hyenamd_schema={SCHEMA_NAME!r} attribute); convert it first"
            )
        version = schema_version(f.attrs.get("hyenamd_schema_version"), self.path)
        if version is None:
            self._f.close()
            raise SchemaError(f"{self.path} has no valid hyenamd_schema_version attribute (a damaged store)")
        if version > SCHEMA_VERSION:
            self._f.close()
            raise SchemaError(
                f"{self.path} has hyenamd schema {version}; this hyenamd reads up to {SCHEMA_VERSION}"
            )
        text = f.attrs.get("hyenamd_layout")
        self.layout = layout_from_json(text) if text else None
        self._bind()

    def _bind(self) -> None:
        """Map logical keys to datasets."""
        f, lay = self._f, self.layout
        self._ds, self._dtypes, self._n_slots, self._scale = {}, {}, None, {}
        if lay is None:
            return
        p = f[PARTICLES]
        for name in lay.fields:
            self._ds[name] = p[f"{name}/value"]
        self._ds["step"] = p["position/step"]
        self._ds["time"] = p["position/time"]
        if lay.has_box:
            self._ds["box"] = p["box/edges/value"]
        for name in lay.observables:
            self._ds[name] = f[f"observables/{name}/value"]
        self._dtypes = {k: ds.dtype for k, ds in self._ds.items()}
        self._inner = {k: ds.shape[1:] for k, ds in self._ds.items()}
        self._scale = _file_scales(self._ds, lay)

    def _read_array(self, path: str) -> np.ndarray:
        return self._f[path][()]

    def _read_static(self) -> dict:
        f = self._f
        get = {path: f[path][()] for path in _static_paths(f) if not path.endswith("template_position")}
        boundary = [
            b.decode() if isinstance(b, bytes) else str(b) for b in f[f"{PARTICLES}/box"].attrs["boundary"]
        ]
        return static_from_arrays(get, boundary)

    # ------------------------------------------------------------------ arrays
    def _create_arrays(self, lay: Layout, n: int) -> None:
        f = self._f
        p = f[PARTICLES]
        ca, cf = lay.atom_chunk, lay.chunk_frames
        comp = {} if lay.compression is None else {"compression": lay.compression, "shuffle": True}
        step = time = None
        for name in lay.fields:
            g = p.create_group(name)
            ds = g.create_dataset(
                "value", shape=(n, lay.n_atoms, 3), maxshape=(None, lay.n_atoms, 3), chunks=(cf, ca, 3),
                dtype=lay.dtype, fillvalue=0, **comp,
            )  # fmt: skip
            _unit_attrs(ds, lay, name)
            if step is None:
                step = g.create_dataset(
                    "step", shape=(n,), maxshape=(None,), chunks=(_FRAME_CHUNK,), dtype=np.int64,
                    fillvalue=STEP_SENTINEL,
                )  # fmt: skip
                time = g.create_dataset(
                    "time", shape=(n,), maxshape=(None,), chunks=(_FRAME_CHUNK,), dtype=np.float64,
                    fillvalue=np.nan,
                )  # fmt: skip
                time.attrs["unit"] = "fs"
            else:
                g["step"], g["time"] = step, time
        groups = []
        if lay.has_box:
            e = p["box"].create_group("edges")
            ds = e.create_dataset(
                "value", shape=(n, 3, 3), maxshape=(None, 3, 3), chunks=(_FRAME_CHUNK, 3, 3), dtype=lay.dtype
            )
            _unit_attrs(ds, lay, "box")
            groups.append(e)
        for name, shape in lay.observables.items():
            g = f["observables"].create_group(name)
            ds = g.create_dataset(
                "value", shape=(n, *shape), maxshape=(None, *shape), chunks=(_FRAME_CHUNK, *shape),
                dtype=np.float64, fillvalue=np.nan,
            )  # fmt: skip
            if lay.unit(name):
                ds.attrs["unit"] = lay.unit(name)
            groups.append(g)
        for g in groups:
            g["step"], g["time"] = step, time
        f.attrs["hyenamd_layout"] = layout_to_json(lay)
        self.layout = lay
        self._bind()

    def _begin_appending(self) -> None:
        if not self._f.swmr_mode:
            self._f.flush()
            self._f.swmr_mode = True

    def _frame_datasets(self):
        return [self._ds[k] for k in self._ds]

    def _slots(self) -> int:
        # h5py's Dataset.shape asks HDF5 every time: cache it (only this handle resizes; readers
        # re-bind on refresh)
        if self._n_slots is None:
            self._n_slots = min(ds.shape[0] for ds in self._frame_datasets())
        return self._n_slots

    def _resize(self, n: int) -> None:
        for ds in self._frame_datasets():
            if ds.shape[0] != n:
                ds.resize(n, axis=0)
        self._n_slots = n

    def _write(self, key, k, value, atoms=None) -> None:
        ds = self._ds[key]
        sel = np.s_[k] if atoms is None else np.s_[k, atoms]
        value = np.asarray(value, dtype=self._dtypes[key])
        if value.ndim == 0:
            ds[sel] = value
        else:
            ds.write_direct(np.ascontiguousarray(value), dest_sel=sel)

    def _read(self, key, k, atoms=None) -> np.ndarray:
        ds = self._ds[key]
        if atoms is None and isinstance(k, (int, np.integer)) and self._inner[key]:
            out = np.empty(self._inner[key], dtype=self._dtypes[key])
            ds.read_direct(out, source_sel=np.s_[k])
        else:
            out = ds[k] if atoms is None else ds[k, atoms]
        s = self._scale.get(key, 1.0)
        if s != 1.0:
            out = (np.asarray(out, dtype=np.float64) * s).astype(out.dtype, copy=False)
        return out

    def _stored_scale(self, key: str) -> float:
        return self._scale.get(key, 1.0) if self.layout is not None else _unit_scale(key)

    def _flush(self) -> None:
        self._f.flush()

    def _set_status(self, status: str) -> None:
        self._f.attrs.modify("status", np.array(status.encode(), dtype="S8"))  # in place: same type and size

    def _get_status(self) -> str:
        return bytes(self._f.attrs["status"]).rstrip(b"\x00 ").decode()

    def _refresh_file(self) -> None:
        self._f.close()
        self._open(writable=False)

    def array_info(self) -> list[dict]:
        """Every dataset: path, shape, dtype, chunks, compression, unit (for ``hyenamd inspect``)."""
        out = []

        def visit(name, _link):  # links, so each hard-linked step/time path is listed
            obj = self._f[name]
            if hasattr(obj, "shape") and hasattr(obj, "dtype"):
                out.append({"path": "/" + name, "shape": obj.shape, "dtype": str(obj.dtype), "chunks": obj.chunks,
                            "compression": obj.compression, "unit": obj.attrs.get("unit")})  # fmt: skip

        self._f.visititems_links(visit)
        return out

    def _close_file(self) -> None:
        if getattr(self, "_f", None) is not None and self._f.id.valid:
            self._f.close()


def _unit_scale(name: str) -> float:
    """Internal units per on-disk unit of a field written by this version (see FILE_UNITS)."""
    from hyenamd.io.h5md_units import unit_factor

    return unit_factor(FILE_UNITS[name], name) if name in FILE_UNITS else 1.0


def _file_scales(datasets: dict, lay: Layout) -> dict[str, float]:
    """Internal units per stored unit of each per-atom field and the box, read from the files'
    ``unit`` attributes (stores written before FILE_UNITS keep eV Angstrom-1: factor 1)."""
    from hyenamd.io.h5md_units import unit_factor

    out = {}
    for name in (*lay.fields, *(("box",) if lay.has_box else ())):
        f = unit_factor(datasets[name].attrs.get("unit"), name)
        if f != 1.0:
            out[name] = f
    return out


def _unit_attrs(ds, lay: Layout, name: str) -> None:
    ds.attrs["unit"] = FILE_UNITS.get(name, lay.unit(name))
    if name in lay.quantize:
        from hyenamd.io.schema import quantum

        ds.attrs["hyenamd_quantize_digits"] = lay.quantize[name]
        ds.attrs["hyenamd_max_abs_error"] = quantum(lay.quantize[name]) / 2


def _static_paths(f) -> list[str]:
    out = []
    for base in (PARTICLES, PARAMETERS):
        for name, obj in f[base].items():
            if not hasattr(obj, "keys"):  # a dataset: time-independent element
                out.append(f"{base}/{name}")
    return out
