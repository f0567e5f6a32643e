"""Validation of the arrays handed to ``FrameStore.append``: pure functions, no file access.

Every check runs before a store writes anything, so a bad frame leaves the file untouched.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from hyenamd.io.schema import FrameError, Layout, StoreError, quantize

__all__ = [
    "as_float_array",
    "as_observable",
    "as_step",
    "as_time",
    "atom_range",
    "frame_range",
    "layout_from_call",
]


def _to_numpy(name: str, x: Any) -> np.ndarray:
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor, without importing torch here
        x = x.detach().cpu().numpy()
    try:
        return np.asarray(x)
    except Exception as e:  # pragma: no cover - exotic inputs
        raise FrameError(f"{name} could not be converted to an array: {e}") from None


def _sum_is_finite(a: np.ndarray) -> bool:
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.isfinite(np.add.reduce(a, axis=None)))


def as_float_array(
    name: str,
    x: Any,
    shape: tuple[int, ...],
    dtype: np.dtype,
    *,
    allow_nan: bool,
    digits: int | None = None,
    what: str = "",
    scale: float = 1.0,
) -> np.ndarray:
    """``x`` as a C-contiguous array of ``dtype`` and ``shape``, or a :class:`FrameError`.

    Refuses non-float input (int, bool, complex...), a wrong shape (naming the atom count when
    that is what differs) and NaN/inf values unless ``allow_nan``. Float input is cast to the
    store's dtype (the storage precision chosen at creation: float64 → float32 rounds to
    nearest) and refused if that overflows. ``scale``: internal units per stored unit (the
    value is divided by it first, e.g. eV/Å → kJ/mol/Å in HDF5 files); ``digits`` then applies
    the store's opt-in quantisation in the stored unit.
    """
    a = _to_numpy(name, x)
    if a.dtype.kind != "f" or a.dtype.itemsize not in (2, 4, 8):
        raise FrameError(f"{name} must be a float32/float64 array, got dtype {a.dtype}")
    dtype = np.dtype(dtype)
    if a.shape != shape:
        if len(shape) == 2 and a.ndim == 2 and a.shape[1] == shape[1] and a.shape[0] != shape[0]:
            raise FrameError(f"{name} has {a.shape[0]} atoms but {what or 'the store'} expects {shape[0]}")
        raise FrameError(f"{name} has shape {a.shape}, expected {shape}")
    # one summing pass in the input's own dtype finds NaN/inf (they propagate); the exact check
    # runs only if it fires (an overflowing sum of finite values then passes)
    if not allow_nan and not _sum_is_finite(a) and not np.isfinite(a).all():
        bad = np.argwhere(~np.isfinite(a))
        raise FrameError(
            f"{name} contains NaN/inf ({len(bad)} entries, first at {tuple(int(i) for i in bad[0])}); "
            "refusing to store it (pass allow_nan=True to keep such frames)"
        )
    if scale != 1.0:  # in float64, then cast: at most one rounding beyond the cast
        a = np.asarray(a, dtype=np.float64) / scale
    narrowed = a.dtype.itemsize > dtype.itemsize
    with np.errstate(over="ignore"):
        a = np.asarray(a, dtype=dtype, order="C")
    if narrowed and not _sum_is_finite(a) and np.isinf(a).any():
        big = np.argwhere(np.isinf(a))[0]
        if np.isfinite(_to_numpy(name, x)[tuple(big)]):
            raise FrameError(
                f"{name} overflows {dtype} at index {tuple(int(i) for i in big)}; use a float64 store"
            )
    if digits is not None:
        a = quantize(a, digits)
    return a


def as_observable(name: str, v: Any, shape: tuple[int, ...], *, allow_nan: bool) -> np.ndarray:
    """An observable value (python/numpy/torch number or array, ints accepted) as float64."""
    a = _to_numpy(name, v)
    if a.dtype.kind in "iub":
        a = a.astype(np.float64)
    if a.dtype.kind != "f":
        raise FrameError(f"observable {name!r} must be a number or a float array, got dtype {a.dtype}")
    if a.shape != shape:
        raise FrameError(f"observable {name!r} has shape {a.shape}, expected {shape}")
    if not allow_nan and not np.isfinite(a).all():
        raise FrameError(f"observable {name!r} is NaN/inf; refusing to store it (pass allow_nan=True)")
    return a.astype(np.float64)


def as_step(step: Any) -> int:
    """An integer MD step (python/numpy int or 0-d integer tensor), or a FrameError."""
    s = _to_numpy("step", step)
    if s.ndim != 0 or s.dtype.kind not in "iu":
        raise FrameError(f"step must be an integer, got {step!r}")
    s = int(s)
    if s < -(2**62):
        raise FrameError(f"step {s} is out of range")
    return s


def as_time(time: Any) -> float:
    """A finite time in fs, or a FrameError."""
    t = _to_numpy("time", time)
    if t.ndim != 0 or t.dtype.kind not in "iuf":
        raise FrameError(f"time must be a number (fs), got {time!r}")
    t = float(t)
    if not np.isfinite(t):
        raise FrameError(f"time must be finite, got {t}")
    return t


def atom_range(atoms: Any, n_atoms: int) -> tuple[int, int]:
    """Normalise ``atoms`` (None or a step-1 slice) to ``(start, stop)`` within ``[0, n_atoms]``.

    A start or stop past the end (``slice(0, n + 5)``) is refused, never clipped: a silently
    shorter range would put data at the wrong atoms. Negative bounds count from the end.
    """
    if atoms is None:
        return 0, n_atoms
    if not isinstance(atoms, slice):
        raise FrameError(f"atoms must be a slice (a contiguous atom range), got {type(atoms).__name__}")
    for name, v in (("start", atoms.start), ("stop", atoms.stop), ("step", atoms.step)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int | np.integer)):
            raise FrameError(f"atoms={atoms}: {name} must be an integer, got {type(v).__name__}")
        if v is not None and name != "step" and not -n_atoms <= int(v) <= n_atoms:
            raise FrameError(f"atoms={atoms} is out of range for a store of {n_atoms} atoms")
    a, b, s = atoms.indices(n_atoms)
    if s != 1 or b <= a:
        raise FrameError(f"atoms must be a non-empty contiguous slice with step 1, got {atoms}")
    return a, b


def check_frame_cell(cell: np.ndarray, pbc: np.ndarray) -> None:
    """Refuse a frame's cell ``[3, 3]`` Å that no :class:`hyenamd.System` could hold with the store's
    ``pbc`` (a zero or singular vector on a periodic axis, a left-handed cell): a frame committed
    with it could never be read back."""
    import torch

    from hyenamd.checks import InvalidSystemError, validate_cell

    try:
        validate_cell(torch.as_tensor(np.asarray(cell, dtype=np.float64)), torch.as_tensor(np.asarray(pbc)))
    except InvalidSystemError as e:
        raise FrameError(
            f"cell of this frame is invalid for a store with pbc {list(map(bool, pbc))}: {e}"
        ) from None


def frame_range(start: Any, stop: Any, stride: Any, n_frames: int) -> range:
    """Frames ``start:stop:stride`` of a store of ``n_frames``; refuses a stride < 1 and
    non-integer bounds (a reversed or zero stride is a mistake, not a request)."""
    for name, v in (("start", start), ("stop", stop), ("stride", stride)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int | np.integer)):
            raise StoreError(f"frames(): {name} must be an integer, got {v!r}")
    if stride is None or int(stride) < 1:
        raise StoreError(f"frames(): stride must be a positive integer, got {stride!r}")
    return range(*slice(start, stop, int(stride)).indices(n_frames))


def layout_from_call(base: Layout, velocities: Any, forces: Any, observables: Mapping[str, Any]) -> Layout:
    """The layout a store takes when its first ``append`` defines which elements it holds."""
    fields = ["position"]
    if velocities is not None:
        fields.append("velocity")
    if forces is not None:
        fields.append("force")
    obs = {k: tuple(np.shape(_to_numpy(k, v))) for k, v in observables.items()}
    return base.replace(fields=tuple(fields), observables=obs)
