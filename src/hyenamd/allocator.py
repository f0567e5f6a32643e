"""glibc allocator settings sized to the system (what ``hyenamd`` commands run with).

Two regimes, both measured (BENCHMARKS.md, "Allocator thresholds by system size"):

* **Large systems** (≥ :data:`LARGE_ATOMS` atoms in one call). A G-Hyena energy + forces call
  on 10⁵–10⁶ atoms allocates and frees many tensors of tens to hundreds of MB. glibc's default
  *dynamic* mmap threshold rises to 32 MB after the first large free, so later large blocks come
  from the heap, and the default trim threshold keeps freed heap memory resident: 3.5–4 KB/atom
  of RSS that no tensor uses (issue #15). A fixed mmap threshold of 256 KiB (trim 1 MiB) makes
  every large block its own mapping, returned to the OS when freed: 6.3 KB/atom at 10⁵ (11.3
  with 32 MiB), at the price of page faults on every call (133 vs 71 µs/atom).
* **Small systems** (MD of 10²–10⁴ atoms, training on small frames). The 256 KiB threshold
  turns the many mid-sized tensors of every step into fresh mappings: on the demo's 108-atom
  argon, 60 training steps took 11.7 s wall (sys 4.8 s, 2.6 M page faults) against 7.1 s with
  32 MiB / 64 MiB (sys 0.3 s). Memory is no concern at that size.

:func:`tune_malloc` (the CLI calls it first) sets the small-system thresholds for this process
(``mallopt``, immediate) and its children (environment variables read by glibc at start-up),
for whichever of ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` the user left unset,
and marks the process (``HYENAMD_MALLOC=auto``, inherited by Ray workers). Then
:func:`adapt_malloc` — called by :func:`hyenamd.surrogate.compute_forces` with the batch size —
switches between the two regimes when the size crosses :data:`LARGE_ATOMS`. Thresholds the user
set are never changed; without :func:`tune_malloc` (library use) nothing is changed.
Non-glibc platforms: no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

__all__ = [
    "LARGE_ATOMS",
    "MMAP_THRESHOLD",
    "SMALL_MMAP_THRESHOLD",
    "SMALL_TRIM_THRESHOLD",
    "TRIM_THRESHOLD",
    "adapt_malloc",
    "tune_malloc",
]

#: large-system thresholds (bytes): every block above 256 KiB is its own mapping
MMAP_THRESHOLD = 256 * 1024
TRIM_THRESHOLD = 1024 * 1024
#: small-system thresholds (bytes): mid-sized tensors reuse heap memory
SMALL_MMAP_THRESHOLD = 32 * 1024 * 1024
SMALL_TRIM_THRESHOLD = 64 * 1024 * 1024
#: atoms in one call from which the large-system thresholds apply (the size from which the
#: model also checkpoints its blocks, ``GHyenaConfig.checkpoint_atoms``' default)
LARGE_ATOMS = 20_000
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc malloc.h
_KEYS = {"MALLOC_MMAP_THRESHOLD_": _M_MMAP_THRESHOLD, "MALLOC_TRIM_THRESHOLD_": _M_TRIM_THRESHOLD}
_MARK = "HYENAMD_MALLOC"
_state: dict[str, object] = {"owned": None, "large": None}


def _mallopt():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        return getattr(libc, "mallopt", None)
    except OSError:
        return None


def _values(large: bool) -> dict[str, int]:
    if large:
        return {"MALLOC_MMAP_THRESHOLD_": MMAP_THRESHOLD, "MALLOC_TRIM_THRESHOLD_": TRIM_THRESHOLD}
    return {"MALLOC_MMAP_THRESHOLD_": SMALL_MMAP_THRESHOLD, "MALLOC_TRIM_THRESHOLD_": SMALL_TRIM_THRESHOLD}


def _apply(keys, large: bool) -> dict[str, int]:
    mallopt = _mallopt()
    if mallopt is None:
        return {}
    done = {}
    for key, value in _values(large).items():
        if key in keys and mallopt(_KEYS[key], value) == 1:  # 1: success
            os.environ[key] = str(value)
            done[key] = value
    _state["large"] = large
    return done


def _owned() -> tuple[str, ...]:
    """The thresholds this process may change: those tune_malloc set here or in a parent."""
    if _state["owned"] is None:
        mark = os.environ.get(_MARK, "")
        _state["owned"] = tuple(k for k in mark.split(",") if k in _KEYS) if mark else ()
    return _state["owned"]  # type: ignore[return-value]


def tune_malloc() -> dict[str, int]:
    """Small-system thresholds for what the user left unset (see module doc); returns what was set."""
    todo = tuple(k for k in _KEYS if k not in os.environ or k in _owned())
    if not todo:
        return {}
    done = _apply(todo, large=False)
    if done:
        _state["owned"] = tuple(done)
        os.environ[_MARK] = ",".join(done)
    return done


def adapt_malloc(n_atoms: int, *, large: bool | None = None) -> bool | None:
    """Switch to the large- or small-system thresholds for a call on ``n_atoms`` atoms.

    ``large``: the caller's own choice (the G-Hyena model passes its memory regime,
    :mod:`hyenamd.surrogate.memory_policy`); None: large from :data:`LARGE_ATOMS` atoms.
    Only thresholds :func:`tune_malloc` set are touched. Returns whether the large-system
    thresholds are now in force (None: nothing is managed here). Cheap when nothing changes.
    """
    keys = _owned()
    if not keys:
        return None
    large = n_atoms >= LARGE_ATOMS if large is None else bool(large)
    if _state["large"] is not large:
        _apply(keys, large)
    return large
