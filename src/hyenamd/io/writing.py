"""The write side of a frame store: ``append`` (whole frames or atom ranges) and the commit.

Mixed into :class:`hyenamd.io.base.FrameStore`. The commit protocol: all values of a frame
(positions, velocities, forces, box, time, observables) are written, the backend flushes,
then the frame's ``step`` is written and flushed; ``flush_every`` frames share one commit.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hyenamd.io.frame_input import (
    as_float_array,
    as_observable,
    as_step,
    as_time,
    atom_range,
    check_frame_cell,
    layout_from_call,
)
from hyenamd.io.schema import STEP_SENTINEL, FrameError, Layout

__all__ = ["WriteMixin"]

_PLURAL = {"position": "positions", "velocity": "velocities", "force": "forces"}


class WriteMixin:
    """``append`` and ``flush``; relies on the backend primitives of ``FrameStore``."""

    # ------------------------------------------------------------------ appending
    def append(
        self,
        positions: Any,
        *,
        step: Any,
        time: Any,
        velocities: Any = None,
        forces: Any = None,
        cell: Any = None,
        atoms: slice | None = None,
        allow_nan: bool | None = None,
        **observables: Any,
    ) -> int:
        """Append one frame, or one atom range of a frame; returns the frame index.

        positions ``[n, 3]`` Å, velocities ``[n, 3]`` Å/fs, forces ``[n, 3]`` eV/Å (numpy or
        torch, n = n_atoms, or ``b - a`` with ``atoms=slice(a, b)``); cell ``[3, 3]`` Å (rows;
        default: the template's cell); step: int, strictly increasing; time: fs;
        ``observables``: scalars or fixed-shape arrays (eV, K...). With ``atoms=``, calls with the
        same step fill one frame; it is committed when every atom is covered. ``cell`` and the
        observables may be given with any one part. Everything is validated before anything is
        written: a bad call raises :class:`FrameError` and leaves the store unchanged.
        """
        self._writable()
        if self.layout is None:
            self._deferred_layout = layout_from_call(self._deferred_layout, velocities, forces, observables)
        lay = self.layout or self._deferred_layout
        allow = self.allow_nan if allow_nan is None else bool(allow_nan)
        a, b = atom_range(atoms, lay.n_atoms)
        step, time = as_step(step), as_time(time)
        part = self._partial
        if part is not None and step != part["step"]:
            missing = lay.n_atoms - part["covered"]
            raise FrameError(
                f"frame {part['k']} (step {part['step']}) is incomplete ({missing} atoms missing); "
                f"finish it before appending step {step}"
            )
        if part is not None:
            if time != part["time"]:
                raise FrameError(f"time {time} differs from {part['time']} given for step {step} earlier")
            for lo, hi in part["ranges"]:
                if a < hi and lo < b:
                    raise FrameError(f"atoms {a}:{b} overlap atoms {lo}:{hi} already written for step {step}")
            k = part["k"]
        else:
            k = self._next
            if self._range is not None and k >= self._range.stop:
                raise FrameError(f"this writer's frames {self._range} are all written")
            if self._last_step is not None and step <= self._last_step:
                raise FrameError(
                    f"step {step} does not increase (the previous frame has step {self._last_step})"
                )
            self._check_next_neighbour(k, step)
        given = {"velocity": velocities, "force": forces}
        for f, v in given.items():
            if f in lay.fields and v is None:
                raise FrameError(f"this store holds {f} for every frame; pass {_PLURAL[f]}=")
            if f not in lay.fields and v is not None:
                raise FrameError(f"this store has no {f} array (its layout was fixed by the first frame)")
        shape = (b - a, 3)
        what = f"atoms {a}:{b}" if (a, b) != (0, lay.n_atoms) else f"the store ({lay.n_atoms} atoms)"
        arrays = {"position": positions, **{f: v for f, v in given.items() if v is not None}}
        vals = {
            f: as_float_array(
                _PLURAL[f], x, shape, lay.dtype,
                allow_nan=allow, digits=lay.quantize.get(f), what=what, scale=self._stored_scale(f),
            )
            for f, x in arrays.items()
        }  # fmt: skip
        per_frame = self._per_frame(lay, cell, observables, allow, part)
        covered = (part["covered"] if part else 0) + (b - a)
        complete = covered == lay.n_atoms
        if complete:
            have = set(per_frame) | (part["given"] if part else set())
            missing = [o for o in lay.observables if o not in have]
            if missing:
                raise FrameError(f"observables {missing} were not given for step {step}")
            if lay.has_box and "box" not in have:
                per_frame["box"] = self._static["template_cell"].astype(lay.dtype)
        # ---- everything is valid: write
        if self.layout is None:
            self._materialize(self._deferred_layout)
            self._begin_appending()
        if k >= self._slots():
            self._resize(k + self._resize_step() if self._range is None else k + 1)
        sl = None if (a, b) == (0, lay.n_atoms) else slice(a, b)
        writes = [(f, k, v, sl) for f, v in vals.items()] + [
            (key, k, v, None) for key, v in per_frame.items()
        ]
        if part is None:
            writes.append(("time", k, np.float64(time), None))
        self._write_many(writes)
        if part is None:
            part = {"k": k, "step": step, "time": time, "covered": 0, "ranges": [], "given": set()}
        part["covered"] = covered
        part["ranges"].append((a, b))
        part["given"] |= set(per_frame)
        self._partial = None if complete else part
        if complete:
            self._pending.append((k, step))
            self._next, self._last_step = k + 1, step
            if len(self._pending) >= self.flush_every:
                self.flush()
        return k

    def _per_frame(self, lay: Layout, cell, observables, allow: bool, part) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        given_before = part["given"] if part else set()
        if cell is not None:
            if not lay.has_box:
                raise FrameError(
                    "this store has no box (its template system has no cell); cell= is not allowed"
                )
            if "box" in given_before:
                raise FrameError("cell was already given for this frame")
            c = as_float_array("cell", cell, (3, 3), lay.dtype, allow_nan=False)
            check_frame_cell(c, self._static["pbc"])
            out["box"] = c
        for name, v in observables.items():
            if name not in lay.observables:
                raise FrameError(
                    f"unknown observable {name!r}: this store records {sorted(lay.observables)} "
                    "(declare observables= when creating the store)"
                )
            if name in given_before:
                raise FrameError(f"observable {name!r} was already given for this frame")
            out[name] = as_observable(name, v, lay.observables[name], allow_nan=allow)
        return out

    def _check_next_neighbour(self, k: int, step: int) -> None:
        """Range writers: the step must lie between the neighbouring frames other writers committed."""
        if self._range is None:
            return
        if k == self._range.start and k > 0:
            prev = int(self._read("step", k - 1))
            if prev != STEP_SENTINEL and step <= prev:
                raise FrameError(f"step {step} is not above step {prev} of frame {k - 1}")
        if k + 1 < self._slots():
            nxt = int(self._read("step", k + 1))
            if nxt != STEP_SENTINEL and step >= nxt:
                raise FrameError(f"step {step} is not below step {nxt} of frame {k + 1}")

    def flush(self) -> None:
        """Commit the appended frames: flush their values, then write their steps, flush again."""
        if not self._pending or self._closed:
            return
        self._flush()
        ks = [k for k, _ in self._pending]
        steps = np.array([s for _, s in self._pending], dtype=np.int64)
        if ks == list(range(ks[0], ks[0] + len(ks))):
            self._write("step", slice(ks[0], ks[-1] + 1), steps)
        else:  # pragma: no cover - pending frames are always consecutive
            for k, s in zip(ks, steps):
                self._write("step", k, s)
        self._flush()
        if len(self._steps) < ks[-1] + 1:
            self._steps = np.concatenate(
                [self._steps, np.full(ks[-1] + 1 - len(self._steps), STEP_SENTINEL, dtype=np.int64)]
            )
        self._steps[ks] = steps
        self._n = max(self._n, ks[-1] + 1)
        self._pending.clear()
