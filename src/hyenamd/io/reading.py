"""The read side of a frame store: indexing, field reads, and the prefetching frame iterator.

Mixed into :class:`hyenamd.io.base.FrameStore`; relies on its ``_read(key, k, atoms)``,
``layout``, ``_static`` (topology), ``_steps`` (step of every slot) and ``_n`` (frames).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hyenamd.io.frame_input import atom_range, frame_range
from hyenamd.io.schema import STEP_SENTINEL, MissingFrameError, StoreError, canonical_field

__all__ = ["Frame", "ReadMixin"]


@dataclass
class Frame:
    """One frame as numpy arrays (what :meth:`ReadMixin.frames` yields).

    index: frame number; step: MD step; time: fs; arrays: ``"position"`` ``[n, 3]`` Å,
    ``"velocity"`` Å/fs, ``"force"`` eV/Å (n = atoms read), ``"box"`` ``[3, 3]`` Å;
    observables: name -> value. ``frame["positions"]`` and ``frame["potential_energy"]`` work too.
    """

    index: int
    step: int
    time: float
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    observables: dict[str, np.ndarray] = field(default_factory=dict)

    def __getitem__(self, name: str) -> np.ndarray:
        name = canonical_field(name)
        if name in self.arrays:
            return self.arrays[name]
        if name in self.observables:
            return self.observables[name]
        raise KeyError(
            f"frame {self.index} has no {name!r}; it has {sorted(self.arrays) + sorted(self.observables)}"
        )


_DONE = object()


class ReadMixin:
    """``len``, ``store[i]`` → :class:`hyenamd.System`, ``read``, ``frames``, ``steps``, ``times``..."""

    # ------------------------------------------------------------------ metadata
    def __len__(self) -> int:
        return self._n

    @property
    def n_atoms(self) -> int:
        return int(self._static["species"].shape[0])

    @property
    def fields(self) -> tuple[str, ...]:
        """Per-frame arrays stored: ``position`` [, ``velocity``, ``force``][, ``box``]."""
        if self.layout is None:
            return ()
        return self.layout.fields + (("box",) if self.layout.has_box else ())

    @property
    def observable_names(self) -> tuple[str, ...]:
        return () if self.layout is None else tuple(self.layout.observables)

    @property
    def units(self) -> dict[str, str]:
        """Unit string (H5MD notation) of every stored element, ``time`` and observable."""
        from hyenamd.io.schema import UNITS

        out = {k: UNITS[k] for k in ("position", "time", "mass")}
        for name in self.fields + self.observable_names:
            u = self.layout.unit(name)
            if u is not None:
                out[name] = u
        return out

    @property
    def committed(self) -> np.ndarray:
        """``[len(store)]`` bool: which frame slots hold a committed frame (holes only in
        multi-writer zarr stores still being filled)."""
        return self._steps[: self._n] != STEP_SENTINEL

    @property
    def steps(self) -> np.ndarray:
        """``[len(store)]`` int64 MD steps (``STEP_SENTINEL`` marks an uncommitted slot)."""
        return self._steps[: self._n].copy()

    @property
    def times(self) -> np.ndarray:
        """``[len(store)]`` float64 times in fs (NaN for an uncommitted slot)."""
        t = self._read("time", slice(0, self._n)) if self._n else np.zeros(0)
        return np.where(self.committed, t, np.nan)

    def observable(self, name: str) -> np.ndarray:
        """``[len(store), *shape]`` float64 values of one observable (NaN where uncommitted)."""
        if name not in self.observable_names:
            raise KeyError(f"no observable {name!r}; this store records {list(self.observable_names)}")
        v = self._read(name, slice(0, self._n)) if self._n else np.zeros((0, *self.layout.observables[name]))
        mask = self.committed.reshape((-1,) + (1,) * (v.ndim - 1))
        return np.where(mask, v, np.nan)

    @property
    def system(self):
        """The topology template as a :class:`hyenamd.System` (positions of the template frame)."""
        from hyenamd.io.schema import PARAMETERS

        pos = self._read_array(f"{PARAMETERS}/template_position")
        return self._make_system(pos, self._static["template_cell"], None, {})

    # ------------------------------------------------------------------ frames
    def _frame_index(self, i: Any) -> int:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"frame index must be an int or a slice, got {type(i).__name__}")
        n = self._n
        if not -n <= i < n:
            raise IndexError(f"frame {i} out of range for a store of {n} frames")
        k = int(i) % n
        if self._steps[k] == STEP_SENTINEL:
            raise MissingFrameError(f"frame {k} of {self.path} was never committed (torn or not yet written)")
        return k

    def _indices(self, i: Any) -> list[int] | int:
        if isinstance(i, slice):
            return list(range(*i.indices(self._n)))
        return self._frame_index(i)

    def read(self, i: int | slice, name: str, atoms: slice | None = None) -> np.ndarray:
        """One array of frame ``i`` (or stacked over a slice of frames): ``"position"``,
        ``"velocity"``, ``"force"``, ``"box"``, ``"step"``, ``"time"`` or an observable name
        (plural spellings and ``"cell"`` accepted). ``atoms`` selects an atom range."""
        name = canonical_field(name)
        known = ("step", "time", *self.fields, *self.observable_names)
        if name not in known:
            raise KeyError(f"{self.path} has no {name!r}; it has {list(known)}")
        if atoms is not None and name not in ("position", "velocity", "force"):
            raise StoreError(f"atoms= only applies to per-atom arrays, not {name!r}")
        atoms = self._checked_atoms(atoms)
        idx = self._indices(i)
        if isinstance(idx, int):
            return self._read(name, idx, atoms)
        for k in idx:
            self._frame_index(k)
        if idx and idx == list(range(idx[0], idx[-1] + 1)):
            return self._read(name, slice(idx[0], idx[-1] + 1), atoms)
        shape = () if name in ("step", "time") else None
        parts = [self._read(name, k, atoms) for k in idx]
        if not parts:
            return np.zeros((0, *(shape if shape is not None else ())))
        return np.stack(parts)

    def __getitem__(self, i: int | slice):
        """``store[i]`` → a :class:`hyenamd.System` (velocities set when stored, per-frame cell,
        ``info`` = step, time, frame, observables); ``store[a:b]`` → a list of them."""
        idx = self._indices(i)
        if isinstance(idx, list):
            return [self[k] for k in idx]
        return self._frame_system(self._load_frame(idx, None, self._default_fields()))

    def _default_fields(self) -> tuple[str, ...]:
        return tuple(f for f in self.fields if f != "force") + self.observable_names

    def _load_frame(self, k: int, atoms: slice | None, fields: Sequence[str]) -> Frame:
        k = self._frame_index(k)
        fr = Frame(index=k, step=int(self._steps[k]), time=float(self._read("time", k)))
        for f in fields:
            if f in self.observable_names:
                fr.observables[f] = self._read(f, k)
            else:
                fr.arrays[f] = self._read(f, k, atoms if f != "box" else None)
        return fr

    def _frame_system(self, fr: Frame):
        info = {"frame": fr.index, "step": fr.step, "time": fr.time}
        info.update({k: (float(v) if np.ndim(v) == 0 else v) for k, v in fr.observables.items()})
        cell = fr.arrays.get("box", self._static["template_cell"])
        return self._make_system(fr.arrays["position"], cell, fr.arrays.get("velocity"), info)

    def _make_system(self, positions, cell, velocities, info):
        import torch

        from hyenamd.system import System

        st = self._static
        return System(
            positions=torch.from_numpy(np.ascontiguousarray(positions)),
            species=torch.from_numpy(st["species"]),
            masses=torch.from_numpy(st["masses"]),
            cell=None if cell is None else torch.from_numpy(np.ascontiguousarray(cell)),
            pbc=torch.as_tensor(st["pbc"]),
            velocities=None if velocities is None else torch.from_numpy(np.ascontiguousarray(velocities)),
            labels=st["labels"],
            order=None if st["order"] is None else torch.from_numpy(st["order"]),
            info=info,
        )

    def frames(
        self,
        start: int = 0,
        stop: int | None = None,
        stride: int = 1,
        *,
        atoms: slice | None = None,
        fields: Sequence[str] | None = None,
        prefetch: int = 2,
    ) -> Iterator[Frame]:
        """Iterate over frames ``start:stop:stride`` as :class:`Frame` objects.

        atoms: an atom range to read (cheap: chunks are frames x atom blocks). fields: element
        and observable names to read (default: all, forces included). prefetch: frames read
        ahead in a background thread (at most ``prefetch + 1`` frames in memory; 0 = no thread).
        Uncommitted slots (multi-writer stores being filled) raise :class:`MissingFrameError`.
        """
        fields = (
            tuple(self.fields + self.observable_names)
            if fields is None
            else tuple(canonical_field(f) for f in fields)
        )
        for f in fields:
            if f not in self.fields + self.observable_names:
                raise KeyError(
                    f"{self.path} has no {f!r}; it has {list(self.fields + self.observable_names)}"
                )
        ks = frame_range(start, stop, stride, self._n)
        atoms = self._checked_atoms(atoms)
        return self._iter_frames(ks, atoms, fields, int(prefetch))

    def _checked_atoms(self, atoms: slice | None) -> slice | None:
        """``atoms`` as a normalised slice; out-of-range or strided ranges raise FrameError."""
        if atoms is None:
            return None
        a, b = atom_range(atoms, self.n_atoms)
        return slice(a, b)

    def _iter_frames(self, ks: range, atoms: slice | None, fields: tuple[str, ...], prefetch: int):
        if prefetch <= 0:
            for k in ks:
                yield self._load_frame(k, atoms, fields)
            return
        q: queue.Queue = queue.Queue(maxsize=prefetch)
        stop_ev = threading.Event()

        def worker() -> None:
            try:
                for k in ks:
                    if stop_ev.is_set():
                        return
                    item = self._load_frame(k, atoms, fields)
                    while not stop_ev.is_set():
                        try:
                            q.put(item, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                q.put(_DONE)
            except BaseException as e:  # forwarded to the consumer
                q.put(e)

        th = threading.Thread(target=worker, name="hyenamd-prefetch", daemon=True)
        th.start()
        try:
            while True:
                item = q.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop_ev.set()
            while th.is_alive():
                try:
                    q.get(timeout=0.05)
                except queue.Empty:
                    pass
            th.join()
