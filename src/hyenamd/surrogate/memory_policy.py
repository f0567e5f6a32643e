"""Speed or memory: what the G-Hyena model keeps for the backward pass of energy + forces.

Three regimes, from fastest to leanest (measured on preset S, 10⁵ atoms, one thread, the CLI's
allocator; BENCHMARKS.md, "Fast and lean regimes"):

* ``"fast"``: every block's activations are kept; the local blocks' pair chunks run as fused
  Functions (:mod:`hyenamd.surrogate.fused_messages`) that keep only their inputs and recompute
  the per-pair products in their backward pass; glibc reuses freed heap memory (the
  small-system allocator thresholds, :mod:`hyenamd.allocator`). Argon density (7 pairs/atom):
  16 kB/atom; water density (34.5 pairs/atom): 27 kB/atom (23 and 64 when every chunk's plain-op
  activations were kept, before the fused Function).
* ``"chunked"``: the name of the fixed rule's regime below its threshold (see below). It
  checkpointed the local blocks' pair chunks (the plain ops recomputed in the backward pass),
  which saved the ~1.5 kB per pair of kept messages at ~10 % more time; since the fused pair
  messages it runs exactly as ``"fast"``: the checkpointed chunks measured no leaner and slower
  (10⁵ atoms: argon density 16.0 against 15.7–16.1 kB/atom, water density 30–34 against 27;
  20–45 % more CPU time; BENCHMARKS.md, "Fused pair messages"). Its estimate is fast's.
* ``"lean"``: per-block activation checkpointing (each block's forward recomputed in the
  backward pass) and every large tensor its own mapping, returned to the OS when freed:
  6.1 kB/atom at argon density, at ~3× the fast regime's CPU time (the recomputation and the
  page faults of fresh mappings on every call).

The results are the same in every regime (they change what is kept, never a value), so the
choice only trades time for memory. ``GHyenaConfig.checkpoint_atoms`` selects it:

* an integer ``n`` (the fixed rule): lean for batches of at least ``n`` atoms, otherwise
  chunked; ``-1``: never lean;
* ``"auto"`` (the presets' default): below :data:`AUTO_MIN_ATOMS` atoms fast; above, the fastest
  regime whose estimated peak (:func:`peak_bytes`) fits in :data:`AUTO_MEMORY_FRACTION` of the
  memory available now on the call's device (:func:`available_memory`: ``MemAvailable`` of
  ``/proc/meminfo`` on the CPU, the device's free memory on CUDA), lean if none does. So a 10⁵-atom
  run takes the fast path on any machine with a few GB free, and a 10⁶-atom run on a 24 GB
  machine the lean one.

Only calls that record gradients are concerned (forward-only calls never checkpoint).
"""

from __future__ import annotations

import os
from typing import Literal

__all__ = [
    "AUTO_MEMORY_FRACTION",
    "AUTO_MIN_ATOMS",
    "Regime",
    "available_memory",
    "config_regime",
    "memory_regime",
    "peak_bytes",
]

Regime = Literal["fast", "chunked", "lean"]

#: below this many atoms in one call "auto" always takes the fast regime
AUTO_MIN_ATOMS = 20_000
#: "auto" takes the fastest regime whose estimated peak is at most this share of available memory
AUTO_MEMORY_FRACTION = 0.5
#: peak above the pre-call RSS, bytes, fitted to preset S at 10⁵ atoms (argon and water density,
#: BENCHMARKS.md) with a 1.3× margin: per atom and scalar-equivalent channel (F + 3C) per four
#: blocks (measured 12.7 kB/atom at F + 3C = 56); per pair (fused chunks: the list, pair
#: vectors, geometry and its radial graph; measured 0.41 kB)
_BYTES_PER_ATOM_CHANNEL = 300.0
_BYTES_PER_PAIR = 550.0


def peak_bytes(
    regime: Regime, n_atoms: int, n_pairs: int, n_scalar: int, n_vector: int, n_blocks: int, pair_chunk: int
) -> float:
    """Estimated peak memory (bytes above the pre-call RSS) of one energy + forces call in ``regime``.

    Linear in the atoms (per-atom activations of every block, ``∝ (F + 3C) · blocks``) and the
    pairs (the list, pair vectors and geometry); the same for fast and chunked (the same code).
    The lean regime is not estimated (it is the fallback): ``0``. ``pair_chunk``: kept for the
    signature (the chunks no longer change the estimate).
    """
    if regime == "lean":
        return 0.0
    per_atom = _BYTES_PER_ATOM_CHANNEL * (n_scalar + 3 * n_vector) * max(n_blocks, 1) / 4.0
    return per_atom * n_atoms + _BYTES_PER_PAIR * n_pairs


def available_memory(device=None) -> int | None:
    """Memory a call on ``device`` can still use now, bytes (None: unknown).

    CPU (``device`` None or ``"cpu"``): what the OS can give this process without swapping —
    Linux: ``MemAvailable`` of ``/proc/meminfo``; elsewhere the free physical pages.
    CUDA: the device's free memory (``torch.cuda.mem_get_info``) plus what torch's caching
    allocator holds reserved but unused (freed tensors it will hand out again): the tensors
    of a CUDA call live there, whatever the host has.
    """
    import torch

    device = torch.device("cpu" if device is None else device)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    if device.type != "cpu":
        return None  # unknown (e.g. MPS): counts as plenty, as documented in memory_regime
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


def memory_regime(
    checkpoint_atoms: int | str,
    n_atoms: int,
    n_pairs: int,
    n_scalar: int,
    n_vector: int,
    n_blocks: int,
    pair_chunk: int,
    available: int | None = None,
    device=None,
) -> Regime:
    """The regime of a call on ``n_atoms`` atoms and ``n_pairs`` pairs (see module doc).

    ``checkpoint_atoms``: the config value (an int ``>= -1`` or ``"auto"``); ``available``:
    bytes of memory to plan against (None: :func:`available_memory` of ``device`` — where the
    call's tensors live — is read, only when the batch is large enough for it to matter).
    Unknown available memory counts as plenty.
    """
    if checkpoint_atoms != "auto":
        return "lean" if 0 <= int(checkpoint_atoms) <= n_atoms else "chunked"
    if n_atoms < AUTO_MIN_ATOMS:
        return "fast"
    if available is None:
        available = available_memory(device)
        if available is None:
            return "fast"
    # chunked has fast's estimate (the same code), so fast or lean
    fits = peak_bytes("fast", n_atoms, n_pairs, n_scalar, n_vector, n_blocks, pair_chunk)
    return "fast" if fits <= AUTO_MEMORY_FRACTION * available else "lean"


def config_regime(cfg, n_atoms: int, n_pairs: int, available: int | None = None, device=None) -> Regime:
    """:func:`memory_regime` for a :class:`~hyenamd.surrogate.model.GHyenaConfig` (its
    ``checkpoint_atoms``, widths, block count and ``pair_chunk``) on ``device``."""
    return memory_regime(
        cfg.checkpoint_atoms,
        n_atoms,
        n_pairs,
        cfg.n_scalar,
        cfg.n_vector,
        len(cfg.pattern),
        cfg.pair_chunk,
        available,
        device,
    )
