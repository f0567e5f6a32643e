"""Speed or memory: when the G-Hyena model recomputes its blocks in the backward pass.

Energy + forces on a large system can run in two regimes (measured on preset S at argon
density, 10⁵ atoms, one thread; BENCHMARKS.md, "Fast and lean regimes"):

* **fast**: every block's activations are kept for the backward pass and glibc reuses freed
  heap memory (the small-system allocator thresholds, :mod:`hyenamd.allocator`): ~17 kB/atom
  peak, about 3× less CPU time per call than lean;
* **lean**: per-block activation checkpointing (each block's forward is recomputed in the
  backward pass) and every large tensor its own mapping, returned to the OS when freed:
  ~6 kB/atom peak, at the price of the recomputation and of page faults on every call.

The results are the same either way (checkpointing and the allocator change no value), so the
choice only trades time for memory. ``GHyenaConfig.checkpoint_atoms`` selects it:

* an integer ``n`` (the old behaviour): lean for batches of at least ``n`` atoms, ``-1``: never;
* ``"auto"`` (the presets' default): fast unless the batch has at least :data:`AUTO_MIN_ATOMS`
  atoms *and* the fast regime's estimated peak (:func:`fast_peak_bytes`) exceeds
  :data:`AUTO_MEMORY_FRACTION` of the memory available now (``MemAvailable`` of
  ``/proc/meminfo``). So a 10⁵-atom run takes the fast path on any machine with a few GB free,
  and a 10⁶-atom run on a 24 GB machine the lean one.

Only the batch that records gradients is concerned (forward-only calls never checkpoint).
"""

from __future__ import annotations

import os

__all__ = [
    "AUTO_MEMORY_FRACTION",
    "AUTO_MIN_ATOMS",
    "available_memory",
    "fast_peak_bytes",
    "use_lean_memory",
]

#: below this many atoms in one call the fast regime is always taken by "auto"
AUTO_MIN_ATOMS = 20_000
#: "auto" goes lean when the fast regime's estimated peak exceeds this share of available memory
AUTO_MEMORY_FRACTION = 0.5
#: fast-regime peak above baseline per atom and scalar-equivalent channel (F + 3C) per four
#: blocks, bytes, and per pair: preset S at 10⁵ atoms measured 16.5 kB/atom at argon density
#: (7 pairs/atom) and 24.5 kB/atom at water density (34.5 pairs/atom), i.e. 14.5 kB/atom +
#: 290 B/pair (BENCHMARKS.md); here with a 1.3× margin
_BYTES_PER_ATOM_CHANNEL = 340.0
_BYTES_PER_PAIR = 380.0


def fast_peak_bytes(n_atoms: int, n_pairs: int, n_scalar: int, n_vector: int, n_blocks: int) -> float:
    """Estimated peak memory (bytes above the pre-call RSS) of one fast-regime energy + forces call.

    Linear in the atoms (per-atom activations of every block, ``∝ (F + 3C) · blocks``) and the
    pairs (neighbour list, pair geometry and one chunk's messages).
    """
    per_atom = _BYTES_PER_ATOM_CHANNEL * (n_scalar + 3 * n_vector) * max(n_blocks, 1) / 4.0
    return per_atom * n_atoms + _BYTES_PER_PAIR * n_pairs


def available_memory() -> int | None:
    """Memory the OS can give this process now without swapping, bytes (None: unknown).

    Linux: ``MemAvailable`` of ``/proc/meminfo``; elsewhere the free physical pages.
    """
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def use_lean_memory(
    checkpoint_atoms: int | str,
    n_atoms: int,
    n_pairs: int,
    n_scalar: int,
    n_vector: int,
    n_blocks: int,
    available: int | None = None,
) -> bool:
    """Whether a call on ``n_atoms`` atoms and ``n_pairs`` pairs runs lean (see module doc).

    ``checkpoint_atoms``: the config value (an int ``>= -1`` or ``"auto"``); ``available``:
    bytes of memory to plan against (None: :func:`available_memory` is read, only when the
    batch is large enough for it to matter). Unknown available memory counts as plenty.
    """
    if checkpoint_atoms != "auto":
        return 0 <= int(checkpoint_atoms) <= n_atoms
    if n_atoms < AUTO_MIN_ATOMS:
        return False
    if available is None:
        available = available_memory()
        if available is None:
            return False
    need = fast_peak_bytes(n_atoms, n_pairs, n_scalar, n_vector, n_blocks)
    return need > AUTO_MEMORY_FRACTION * available
