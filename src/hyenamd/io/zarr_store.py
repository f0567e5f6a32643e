"""zarr v3 frame store: the same logical arrays as the H5MD file, plus a multi-writer protocol.

Every chunk and metadata document is written atomically by zarr's LocalStore (temporary file,
then rename), so a killed writer leaves whole chunks only; the ``step`` array is the commit
marker as in HDF5. Frame-axis arrays share the frame chunk ``chunk_frames``, so processes
that own disjoint, chunk-aligned frame ranges never write the same file:

1. a coordinator calls :func:`create_zarr_store` with ``n_frames`` (all arrays pre-allocated);
2. each writer (e.g. a Ray actor) opens ``open_store(path, "r+", frames=range(a, b))`` and
   ``append``\\ s its frames in order; a restarted writer resumes after its last committed frame;
3. the coordinator calls :func:`complete_store` once all writers are done.
"""

from __future__ import annotations

import shutil

import numpy as np

from hyenamd.io.base import FrameStore
from hyenamd.io.schema import (
    DIMENSIONS,
    H5MD_VERSION,
    PARTICLES,
    SCHEMA_NAME,
    SCHEMA_VERSION,
    STEP_SENTINEL,
    Layout,
    MissingFrameError,
    SchemaError,
    StoreError,
    schema_version,
)
from hyenamd.io.static import layout_from_json, layout_to_json, static_arrays, static_from_arrays
from hyenamd.io.zarr_chunks import check_chunks_present, keep_empty_chunks

__all__ = ["ZarrStore", "complete_store", "create_zarr_store"]


def _zarr():
    import zarr

    return zarr


def _compressors(name: str | None):
    from zarr.codecs import BloscCodec, GzipCodec

    if name is None:
        return None
    if name == "zstd":
        return BloscCodec(cname="zstd", clevel=3, shuffle="shuffle")
    return GzipCodec(level=5)


_STATIC_DIMS = {
    "species": ("atom",), "mass": ("atom",), "residue_index": ("atom",), "chain_index": ("atom",),
    "atom_name": ("atom",), "residue_name": ("atom",), "order": ("atom",),
    "template_position": ("atom", "xyz"), "template_cell": ("vector", "xyz"),
}  # fmt: skip


class ZarrStore(FrameStore):
    """zarr v3 backend of :class:`hyenamd.io.base.FrameStore` (multi-writer via ``mode="r+"``)."""

    backend = "zarr"
    supports_ranges = True

    def _check_compression(self, compression, chunk_frames):
        if compression not in (None, "zstd", "gzip"):
            raise StoreError(f"zarr stores support compression None, 'zstd' or 'gzip', not {compression!r}")
        return chunk_frames

    def _resize_step(self) -> int:
        return max(self.layout.chunk_frames, 16)

    # ------------------------------------------------------------------ files
    def _exists(self) -> bool:
        return self.path.exists()

    def _remove(self) -> None:
        if self.path.is_dir() and not (self.path / "zarr.json").exists():
            raise StoreError(f"{self.path} is a directory but not a zarr store; refusing to remove it")
        if self.path.is_dir():
            shutil.rmtree(self.path)
        else:
            self.path.unlink()

    def _create(self, system, *, author: str | None) -> None:
        from hyenamd import __version__

        zarr = _zarr()
        g = self._g = zarr.open_group(self.path, mode="w", zarr_format=3)
        h = g.create_group("h5md", attributes={"version": list(H5MD_VERSION)})
        h.create_group("author", attributes={"name": author or "hyenamd user"})
        h.create_group("creator", attributes={"name": "hyenamd", "version": __version__})
        arrays, attrs = static_arrays(system)
        g.create_group(PARTICLES).create_group("box", attributes={"dimension": 3, **attrs})
        g.create_group("observables")
        for path, (arr, unit) in arrays.items():
            dims = _STATIC_DIMS[path.rsplit("/", 1)[1]]
            a = g.create_array(
                path, shape=arr.shape, dtype=str if arr.dtype.kind == "U" else arr.dtype,
                dimension_names=dims, attributes={"unit": unit} if unit else {}, compressors=None,
            )  # fmt: skip
            a[...] = arr
        g.attrs.update(
            {"hyenamd_schema": SCHEMA_NAME, "hyenamd_schema_version": SCHEMA_VERSION, "status": "writing"}
        )

    def _open(self, *, writable: bool) -> None:
        zarr = _zarr()
        try:
            g = zarr.open_group(self.path, mode="r+" if writable else "r")
        except Exception as e:
            raise SchemaError(f"{self.path} is not a zarr store ({type(e).__name__}: {e})") from None
        if g.metadata.zarr_format != 3:
            raise SchemaError(
                f"{self.path} is a zarr v{g.metadata.zarr_format} store; hyenamd stores are zarr v3"
            )
        attrs = dict(g.attrs)
        if attrs.get("hyenamd_schema") != SCHEMA_NAME:
            raise SchemaError(
                f"{self.path} is a zarr store but not a hyenamd store (no hyenamd_schema attribute)"
            )
        if schema_version(attrs.get("hyenamd_schema_version"), self.path) is None:
            raise SchemaError(f"{self.path} has no valid hyenamd_schema_version attribute (a damaged store)")
        if int(attrs["hyenamd_schema_version"]) > SCHEMA_VERSION:
            raise SchemaError(
                f"{self.path} has hyenamd schema {attrs['hyenamd_schema_version']}; "
                f"this hyenamd reads up to {SCHEMA_VERSION}"
            )
        self._g = g
        lay = attrs.get("hyenamd_layout")
        self.layout = None if lay is None else layout_from_json(lay)
        self._preallocated = int(attrs.get("hyenamd_preallocated", 0))
        self._bind()

    def _bind(self) -> None:
        g, lay = self._g, self.layout
        self._arr = {}
        if lay is None:
            return
        for name in lay.fields:
            self._arr[name] = g[f"{PARTICLES}/{name}/value"]
        self._arr["step"] = g[f"{PARTICLES}/position/step"]
        self._arr["time"] = g[f"{PARTICLES}/position/time"]
        if lay.has_box:
            self._arr["box"] = g[f"{PARTICLES}/box/edges/value"]
        for name in lay.observables:
            self._arr[name] = g[f"observables/{name}/value"]
        if self.mode != "r":
            self._arr = {k: keep_empty_chunks(a) for k, a in self._arr.items()}

    def _read_array(self, path: str) -> np.ndarray:
        return np.asarray(self._g[path][...])

    def _read_static(self) -> dict:
        g = self._g
        get = {}
        for base in (PARTICLES, "parameters/hyenamd"):
            if base not in g:
                continue
            for name, arr in g[base].arrays():
                if name == "template_position":
                    continue  # read lazily by FrameStore.system
                v = arr[...]
                get[f"{base}/{name}"] = np.array(v.tolist(), dtype=str) if v.dtype.kind == "T" else v
        boundary = list(g[f"{PARTICLES}/box"].attrs["boundary"])
        return static_from_arrays(get, boundary)

    # ------------------------------------------------------------------ arrays
    def _create_arrays(self, lay: Layout, n: int) -> None:
        g = self._g
        cf, ca = lay.chunk_frames, lay.atom_chunk
        comp = _compressors(lay.compression)

        def make(path, shape, chunks, dtype, fill, dims, unit=None, extra=None):
            attrs = {"unit": unit} if unit else {}
            attrs.update(extra or {})
            return g.create_array(
                path, shape=shape, chunks=chunks, dtype=dtype, fill_value=fill, dimension_names=dims,
                compressors=comp if len(shape) > 1 and dims[1] == "atom" else None, attributes=attrs,
            )  # fmt: skip

        link = {"step": f"/{PARTICLES}/position/step", "time": f"/{PARTICLES}/position/time"}
        for name in lay.fields:
            extra = {}
            if name in lay.quantize:
                from hyenamd.io.schema import quantum

                extra = {"hyenamd_quantize_digits": lay.quantize[name],
                         "hyenamd_max_abs_error": quantum(lay.quantize[name]) / 2}  # fmt: skip
            make(f"{PARTICLES}/{name}/value", (n, lay.n_atoms, 3), (cf, ca, 3), lay.dtype, 0.0,
                 DIMENSIONS["atom_value"], lay.unit(name), extra)  # fmt: skip
            if name != "position":
                g[f"{PARTICLES}/{name}"].attrs.update(link)
        make(f"{PARTICLES}/position/step", (n,), (cf,), np.int64, STEP_SENTINEL, ("frame",))
        make(f"{PARTICLES}/position/time", (n,), (cf,), np.float64, np.nan, ("frame",), "fs")
        if lay.has_box:
            make(
                f"{PARTICLES}/box/edges/value",
                (n, 3, 3),
                (cf, 3, 3),
                lay.dtype,
                0.0,
                DIMENSIONS["box"],
                "Angstrom",
            )
            g[f"{PARTICLES}/box/edges"].attrs.update(link)
        for name, shape in lay.observables.items():
            dims = ("frame",) + (None,) * len(shape)
            make(
                f"observables/{name}/value",
                (n, *shape),
                (cf, *shape),
                np.float64,
                np.nan,
                dims,
                lay.unit(name),
            )
            g[f"observables/{name}"].attrs.update(link)
        g.attrs.update({"hyenamd_layout": layout_to_json(lay), "hyenamd_preallocated": int(n)})
        self._preallocated = int(n)
        self.layout = lay
        self._bind()

    def _init_writer(self, *, resume: bool) -> None:
        if resume and getattr(self, "_preallocated", 0):
            raise StoreError(
                f"{self.path} was pre-allocated for several writers ({self._preallocated} frames): "
                "open it with mode='r+', frames=range(a, b)"
            )
        super()._init_writer(resume=resume)

    def _begin_appending(self) -> None:
        pass

    def _slots(self) -> int:
        return min(a.shape[0] for a in self._arr.values())

    def _resize(self, n: int) -> None:
        for a in self._arr.values():
            if a.shape[0] != n:
                a.resize((n, *a.shape[1:]))

    def _write(self, key, k, value, atoms=None) -> None:
        a = self._arr[key]
        if atoms is None:
            a[k] = value
        else:
            a[k, atoms] = value

    def _write_many(self, writes) -> None:
        """All arrays of one frame in one round trip through zarr's event loop (concurrent chunk writes)."""
        import asyncio

        from zarr.core.sync import sync

        async def run():
            await asyncio.gather(
                *[self._arr[key]._async_array.setitem((k,) if atoms is None else (k, atoms), value)
                  for key, k, value, atoms in writes]
            )  # fmt: skip

        sync(run())

    def _read(self, key, k, atoms=None) -> np.ndarray:
        a = self._arr[key]
        if key != "step":  # an absent step chunk reads as uncommitted, which is what it is
            steps = getattr(self, "_steps", None)
            committed = None if steps is None else steps != STEP_SENTINEL
            check_chunks_present(a, k, atoms, self.path, key, committed)
        try:
            return np.asarray(a[k] if atoms is None else a[k, atoms])
        except (ValueError, RuntimeError, OSError, TypeError) as e:  # codec errors of a damaged chunk
            raise StoreError(
                f"{self.path}: cannot decode {key!r} of frame(s) {k}: {type(e).__name__}: {e} (a damaged chunk)"
            ) from None

    def _flush(self) -> None:
        pass  # each chunk is written (atomically) when assigned

    def _set_status(self, status: str) -> None:
        self._g.attrs["status"] = status

    def _get_status(self) -> str:
        return str(self._g.attrs["status"])

    def _refresh_file(self) -> None:
        self._open(writable=False)

    def _close_file(self) -> None:
        pass

    def array_info(self) -> list[dict]:
        """Every array: path, shape, dtype, chunks, compression, unit (for ``hyenamd inspect``)."""
        out = []
        for name, obj in sorted(self._g.members(max_depth=None)):
            if hasattr(obj, "chunks") and hasattr(obj, "dtype"):
                comp = ",".join(type(c).__name__ for c in obj.compressors) or None
                out.append({"path": "/" + name, "shape": obj.shape, "dtype": str(obj.dtype), "chunks": obj.chunks,
                            "compression": comp, "unit": obj.attrs.get("unit")})  # fmt: skip
        return out

    def close(self) -> None:
        """As :meth:`FrameStore.close`; a pre-allocated store is marked complete only when full."""
        if self._closed or not getattr(self, "_preallocated", 0) or self.mode not in ("w", "a"):
            return super().close()
        try:
            self.flush()
            self._scan()
            if self._n == self._slots() and bool(self.committed.all()):
                self._set_status("complete")
        finally:
            self._closed = True
            self._release_lock()


def create_zarr_store(path, system, n_frames: int, *, overwrite: bool = False, **options) -> None:
    """Create a zarr store with ``n_frames`` pre-allocated frame slots for several writers.

    ``options`` as for :func:`hyenamd.io.open_store` (``fields``, ``observables``, ``dtype``,
    ``chunk_frames``, ``chunk_atoms``, ``compression``, ``quantize``, ``units``). Writers then
    fill chunk-aligned ranges with ``open_store(path, "r+", frames=range(a, b))``.
    """
    if int(n_frames) < 1:
        raise StoreError(f"n_frames must be >= 1, got {n_frames}")
    options.setdefault("fields", ("position",))
    ZarrStore(path, "w", system=system, overwrite=overwrite, n_frames=int(n_frames), **options).close()


def complete_store(path) -> int:
    """Mark a pre-allocated zarr store complete once every slot is committed; returns n_frames.

    Raises :class:`MissingFrameError` naming the uncommitted frames otherwise.
    """
    st = ZarrStore(path, "r")
    try:
        steps = st._read("step", slice(0, st._slots())) if st.layout else np.zeros(0, np.int64)
        missing = np.flatnonzero(steps == STEP_SENTINEL)
        if len(missing):
            raise MissingFrameError(
                f"{path}: {len(missing)} frames are not committed yet (first: {missing[:10].tolist()})"
            )
        _zarr().open_group(path, mode="r+").attrs["status"] = "complete"
        return len(steps)
    finally:
        st.close()
