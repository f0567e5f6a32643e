"""The one reader/writer base of the HDF5 and zarr frame stores.

:class:`FrameStore` owns everything format-independent: validating frames before anything is
written, assembling frames from atom ranges, the commit protocol (values first, flush, step
last), resume after a crash, and the read API. A backend (``h5md.H5MDStore``,
``zarr_store.ZarrStore``) supplies a dozen primitives on logical keys: ``"position"``,
``"velocity"``, ``"force"``, ``"box"``, ``"time"``, ``"step"`` and observable names.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np

from hyenamd.io.reading import ReadMixin
from hyenamd.io.schema import (
    STEP_SENTINEL,
    Layout,
    SchemaError,
    StoreError,
    default_chunk_frames,
)
from hyenamd.io.writing import WriteMixin

__all__ = ["FrameStore"]


class FrameStore(WriteMixin, ReadMixin, ABC):
    """A trajectory of frames of one fixed set of atoms (see ``docs/stores.md``).

    Use :func:`hyenamd.io.open_store` rather than the subclasses. Modes: ``"r"`` read (also a
    file still being written), ``"w"`` create (needs ``system=``; refuses an existing path
    unless ``overwrite=True``), ``"a"`` append / resume after the last committed frame (creates
    the store when missing), ``"r+"`` (zarr only) fill the pre-allocated slots ``frames=range(a, b)``.
    """

    backend: ClassVar[str] = ""
    supports_ranges: ClassVar[bool] = False

    def __init__(
        self,
        path: str | os.PathLike,
        mode: str = "r",
        *,
        system=None,
        overwrite: bool = False,
        fields: Sequence[str] | None = None,
        observables: Sequence[str] | Mapping[str, tuple[int, ...]] | None = None,
        units: Mapping[str, str] | None = None,
        dtype=None,
        chunk_frames: int | None = None,
        chunk_atoms: int = 65536,
        compression: str | None = None,
        quantize: Mapping[str, int] | int | None = None,
        allow_nan: bool = False,
        flush_every: int = 1,
        frames: range | None = None,
        n_frames: int = 0,
        author: str | None = None,
    ) -> None:
        if mode not in ("r", "w", "a", "r+"):
            raise StoreError(f"mode must be 'r', 'w', 'a' or 'r+', got {mode!r}")
        if flush_every < 1:
            raise StoreError(f"flush_every must be >= 1, got {flush_every}")
        self.path = Path(path)
        self.mode = mode
        self.allow_nan = bool(allow_nan)
        self.flush_every = int(flush_every)
        self._closed = False
        self._pending: list[tuple[int, int]] = []
        self._partial: dict | None = None
        self._range: range | None = None
        self.layout: Layout | None = None
        self._lock_fd: int | None = None
        try:
            self._setup(
                system, overwrite, fields, observables, units, dtype, chunk_frames, chunk_atoms,
                compression, quantize, frames, n_frames, author,
            )  # fmt: skip
        except BaseException:
            self._closed = True
            self._close_file()
            self._release_lock()
            raise

    def _setup(self, system, overwrite, fields, observables, units, dtype, chunk_frames, chunk_atoms,
               compression, quantize, frames, n_frames, author) -> None:  # fmt: skip
        mode = self.mode
        exists = self._exists()
        if mode in ("w", "a"):
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)  # like the outputs of every subcommand
            except OSError as e:
                raise StoreError(f"cannot create the directory of {self.path}: {e.strerror or e}") from None
            self._acquire_lock()
        if mode == "w" or (mode == "a" and not exists):
            if exists and not overwrite:
                raise StoreError(
                    f"{self.path} already exists; pass overwrite=True to replace it, or mode='a' to append"
                )
            if system is None:
                raise StoreError(f"creating {self.path} needs system= (the topology template)")
            layout = self._initial_layout(
                system, fields, observables, units, dtype, chunk_frames, chunk_atoms, compression, quantize
            )
            if exists:
                self._remove()
            self._create(system, author=author)
            self._load_static()
            if fields is not None or observables is not None or n_frames:
                self._materialize(layout, n_frames)
            else:
                self._deferred_layout = layout
            self._init_writer(resume=False)
            return
        if not exists:
            raise StoreError(f"no store at {self.path}")
        if system is not None and mode in ("r", "r+"):
            raise StoreError("system= is only used when creating a store (mode 'w' or 'a')")
        if mode == "r+" and not self.supports_ranges:
            raise StoreError(
                f"{self.backend} stores have a single writer: use mode='a' (mode='r+' with frames= "
                "is the zarr multi-writer protocol)"
            )
        try:
            self._open(writable=mode != "r")
            self._load_static()
            if mode == "r":
                self._scan()
        except StoreError:
            raise
        except (KeyError, ValueError, TypeError, IndexError, OSError) as e:  # a dataset or attribute is gone
            raise SchemaError(
                f"{self.path} is damaged (an incomplete hyenamd store): {type(e).__name__}: {e}"
            ) from None
        if mode == "r":
            return
        if mode == "r+":
            self._init_range_writer(frames)
            return
        if system is not None:
            self._check_same_atoms(system)
        self._deferred_layout = None
        self._init_writer(resume=True)

    def _check_same_atoms(self, system) -> None:
        """Appending with a template: it must describe the store's atoms."""
        species = system.species.cpu().numpy()
        if species.shape != self._static["species"].shape or not np.array_equal(
            species, self._static["species"]
        ):
            raise StoreError(
                f"system= has {len(species)} atoms ({sorted(set(species.tolist()))}) but {self.path} stores "
                f"{len(self._static['species'])} atoms ({sorted(set(self._static['species'].tolist()))})"
            )

    # ------------------------------------------------------------------ writer lock
    @property
    def lock_path(self) -> Path:
        """``<path>.lock``: flock-ed by the one writer of modes 'w'/'a' (released by the kernel on a crash)."""
        return self.path.with_name(self.path.name + ".lock")

    def _acquire_lock(self) -> None:
        import fcntl

        parent = self.path.parent
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except PermissionError:
            raise StoreError(f"cannot write {self.path}: directory {parent} is not writable") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreError(
                f"{self.path} is being written by another process (it holds {self.lock_path})"
            ) from None
        self._lock_fd = fd

    def _release_lock(self) -> None:
        claim = getattr(self, "_claim", None)
        if claim is not None:
            claim.release()
            self._claim = None
        if self._lock_fd is None:
            return
        try:
            self.lock_path.unlink(missing_ok=True)
        finally:
            os.close(self._lock_fd)
            self._lock_fd = None

    # ------------------------------------------------------------------ backend primitives
    @abstractmethod
    def _exists(self) -> bool: ...
    @abstractmethod
    def _remove(self) -> None: ...
    @abstractmethod
    def _create(self, system, *, author: str | None) -> None:
        """Create the file with /h5md, the topology and root attributes (status 'writing')."""

    @abstractmethod
    def _open(self, *, writable: bool) -> None:
        """Open an existing store (raises SchemaError for foreign files); sets ``self.layout``."""

    @abstractmethod
    def _read_static(self) -> dict:
        """species, masses, template_cell|None, pbc, labels|None, order|None (small arrays only)."""

    @abstractmethod
    def _read_array(self, path: str) -> np.ndarray:
        """A whole time-independent array by its path (e.g. the template positions, read lazily)."""

    @abstractmethod
    def _create_arrays(self, layout: Layout, n_frames: int) -> None: ...
    @abstractmethod
    def _begin_appending(self) -> None:
        """Called once the arrays exist, before the first frame (HDF5: switch SWMR on)."""

    @abstractmethod
    def _slots(self) -> int: ...
    @abstractmethod
    def _resize(self, n: int) -> None: ...
    @abstractmethod
    def _write(self, key: str, k: int | slice, value: np.ndarray, atoms: slice | None = None) -> None: ...
    def _write_many(self, writes: list[tuple[str, int, np.ndarray, slice | None]]) -> None:
        """Write several ``(key, k, value, atoms)`` (the values of one frame; zarr: concurrently)."""
        for key, k, value, atoms in writes:
            self._write(key, k, value, atoms)

    @abstractmethod
    def _read(self, key: str, k: int | slice, atoms: slice | None = None) -> np.ndarray: ...
    @abstractmethod
    def _flush(self) -> None: ...
    @abstractmethod
    def _set_status(self, status: str) -> None: ...
    @abstractmethod
    def _get_status(self) -> str: ...
    @abstractmethod
    def _close_file(self) -> None: ...
    def _refresh_file(self) -> None:
        """Re-read metadata of a store another process is writing (default: nothing)."""

    def _stored_scale(self, key: str) -> float:
        """Internal units per stored unit of ``key`` (1 unless the file keeps another unit)."""
        return 1.0

    def _resize_step(self) -> int:
        """Slots added when the frame axis is full (HDF5: 1; zarr: a block, trimmed on close)."""
        return 1

    # ------------------------------------------------------------------ creation helpers
    def _initial_layout(self, system, fields, observables, units, dtype, cf, ca, compression, quantize):
        from hyenamd.system import System

        if not isinstance(system, System):
            raise StoreError(f"system= must be a hyenamd.System, got {type(system).__name__}")
        dtype = np.dtype(dtype) if dtype is not None else np.dtype(str(system.dtype).replace("torch.", ""))
        if fields is None:
            fields = ("position",)
        fields = tuple(
            {"positions": "position", "velocities": "velocity", "forces": "force"}.get(f, f) for f in fields
        )
        if "position" not in fields:
            fields = ("position", *fields)
        if observables is None:
            obs = {}
        elif isinstance(observables, Mapping):
            obs = dict(observables)
        else:
            obs = {name: () for name in observables}
        if isinstance(quantize, int):
            quantize = {f: quantize for f in fields}
        cf = self._check_compression(compression, cf)
        if cf is None:
            cf = default_chunk_frames(system.n_atoms, dtype.itemsize, ca)
        return Layout(
            n_atoms=system.n_atoms,
            dtype=dtype,
            fields=fields,
            has_box=system.cell is not None,
            pbc=tuple(bool(p) for p in system.pbc.tolist()),
            observables=obs,
            units=dict(units or {}),
            chunk_frames=int(cf),
            chunk_atoms=int(ca),
            compression=compression,
            quantize=dict(quantize or {}),
        )

    def _check_compression(self, compression: str | None, chunk_frames: int | None) -> int | None:
        """Refuse codecs the backend cannot write; returns the (possibly defaulted) chunk_frames."""
        if compression is not None:
            raise StoreError(f"{self.backend} stores do not support compression={compression!r}")
        return chunk_frames

    def _materialize(self, layout: Layout, n_frames: int = 0) -> None:
        self._create_arrays(layout, n_frames)
        self.layout = layout
        self._deferred_layout = None

    def _load_static(self) -> None:
        self._static = self._read_static()

    # ------------------------------------------------------------------ state
    def _scan(self) -> None:
        """Find the committed frames: ``self._steps`` over all slots, ``len`` = last committed + 1."""
        if self.layout is None:
            self._steps = np.zeros(0, dtype=np.int64)
        else:
            n = self._slots()
            self._steps = (
                np.asarray(self._read("step", slice(0, n)), dtype=np.int64) if n else np.zeros(0, np.int64)
            )
        ok = np.flatnonzero(self._steps != STEP_SENTINEL)
        self._n = int(ok[-1]) + 1 if len(ok) else 0

    def _init_writer(self, *, resume: bool) -> None:
        self._scan()
        if resume and self.layout is not None:
            holes = np.flatnonzero(self._steps[: self._n] == STEP_SENTINEL)
            if len(holes):
                raise StoreError(
                    f"{self.path} has uncommitted frames {holes[:10].tolist()} before its last committed "
                    "frame (a pre-allocated multi-writer store): fill them with mode='r+', frames=range(...)"
                )
            if self._slots() != self._n:  # drop a torn tail frame left by a crash
                self._resize(self._n)
                self._steps = self._steps[: self._n]
        self._next = self._n
        self._last_step = int(self._steps[self._n - 1]) if self._n else None
        self._set_status("writing")
        if self.layout is not None:
            self._begin_appending()

    def _init_range_writer(self, frames: range | None) -> None:
        if self.layout is None:
            raise StoreError(f"{self.path} has no pre-allocated frames; create it with create_zarr_store")
        self._scan()
        slots, cf = self._slots(), self.layout.chunk_frames
        if frames is None:
            frames = range(slots)
        if not isinstance(frames, range) or frames.step != 1 or len(frames) == 0:
            raise StoreError(f"frames= must be a non-empty range with step 1, got {frames!r}")
        if frames.start < 0 or frames.stop > slots:
            raise StoreError(f"frames={frames} is outside the store's {slots} pre-allocated frames")
        if frames.start % cf or (frames.stop % cf and frames.stop != slots):
            raise StoreError(
                f"frames={frames} is not aligned to the frame chunk of {cf}: writers must own whole chunks"
            )
        from hyenamd.io.claims import claim_frames

        self._claim = claim_frames(self.path, frames)  # refuses a range another writer holds
        self._range = frames
        done = self._steps[frames.start : frames.stop] != STEP_SENTINEL
        first_free = int(np.argmin(done)) if not done.all() else len(frames)
        if done[first_free:].any():
            raise StoreError(f"frames {frames} are committed out of order; cannot resume this range")
        self._next = frames.start + first_free
        self._last_step = int(self._steps[self._next - 1]) if self._next > frames.start else None

    def _writable(self) -> None:
        if self._closed:
            raise StoreError(f"{self.path} is closed")
        if self.mode == "r":
            raise StoreError(f"{self.path} is open read-only (mode='r')")

    # ------------------------------------------------------------------ closing
    def close(self) -> None:
        """Commit pending frames and close; writers in modes 'w'/'a' mark ``status = "complete"``.

        An unfinished atom-range frame is dropped (it was never committed).
        """
        if self._closed:
            return
        try:
            if self.mode in ("w", "a"):
                self.flush()
                if self.layout is not None and self._slots() != self._n:
                    self._resize(self._n)
                self._set_status("complete")
            elif self.mode == "r+":
                self.flush()
        finally:
            self._closed = True
            self._close_file()
            self._release_lock()

    def __enter__(self) -> FrameStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def refresh(self) -> int:
        """Re-read a store that another process is still writing; returns the new ``len``."""
        if self.mode != "r":
            return len(self)
        self._refresh_file()
        self._scan()
        return self._n

    @property
    def status(self) -> str:
        """``"writing"`` (a writer has it open, or crashed) or ``"complete"`` (closed cleanly)."""
        return self._get_status()

    def __repr__(self) -> str:
        n_atoms = self.layout.n_atoms if self.layout else self._static["species"].shape[0]
        return (
            f"{type(self).__name__}({str(self.path)!r}, mode={self.mode!r}, frames={len(self)}, "
            f"atoms={n_atoms}, status={self.status!r})"
        )
