"""glibc allocator settings for large, short-lived tensors (what ``hyenamd`` commands run with).

A G-Hyena energy + forces call on 10⁵–10⁶ atoms allocates and frees many tensors of tens to
hundreds of MB. glibc's default *dynamic* mmap threshold rises to 32 MB after the first large
free, so later large blocks come from the heap, and the default trim threshold keeps freed heap
memory resident: 3.5–4 KB/atom of RSS that no tensor uses (measured, issue #15). With a fixed
mmap threshold, every block above it is its own mapping and returns to the OS when freed.

:func:`tune_malloc` sets, for this process (``mallopt``, effective immediately) and for its
children (the environment variables, read by glibc at start-up), whichever of
``MALLOC_MMAP_THRESHOLD_`` (default here 256 KiB) and ``MALLOC_TRIM_THRESHOLD_`` (1 MiB) the
user has not set. The CLI calls it first; library users may call it or set the variables.
Non-glibc platforms: no-op. See BENCHMARKS.md ("Memory per atom") for the measured effect.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "tune_malloc"]

MMAP_THRESHOLD = 256 * 1024
TRIM_THRESHOLD = 1024 * 1024
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc malloc.h


def tune_malloc() -> dict[str, int]:
    """Apply the thresholds the user left unset (see module doc); returns what was set."""
    wanted = {"MALLOC_MMAP_THRESHOLD_": MMAP_THRESHOLD, "MALLOC_TRIM_THRESHOLD_": TRIM_THRESHOLD}
    todo = {k: v for k, v in wanted.items() if k not in os.environ}
    if not todo:
        return {}
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = getattr(libc, "mallopt", None)
    except OSError:
        mallopt = None
    if mallopt is None:
        return {}
    codes = {"MALLOC_MMAP_THRESHOLD_": _M_MMAP_THRESHOLD, "MALLOC_TRIM_THRESHOLD_": _M_TRIM_THRESHOLD}
    done = {}
    for key, value in todo.items():
        if mallopt(codes[key], value) == 1:  # 1: success
            os.environ[key] = str(value)
            done[key] = value
    return done
