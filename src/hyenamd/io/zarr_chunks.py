"""Missing-chunk detection for zarr stores: a committed frame never reads a deleted chunk as zeros.

zarr returns the fill value for a chunk that is not in the store, which is indistinguishable
from data. Our writers store every chunk they touch, even one that equals the fill value
(``write_empty_chunks=True``), so a committed frame whose chunk is absent was damaged after the
fact (a deleted file, a partial copy or sync): reading it raises :class:`StoreError`
naming the chunk. Only stores written by this version carry that guarantee; an older store
may skip all-zero chunks (e.g. zero velocities), which then read as missing.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from hyenamd.io.schema import StoreError

__all__ = ["check_chunks_present", "keep_empty_chunks"]


def keep_empty_chunks(arr: Any) -> Any:
    """``arr`` configured to write every chunk it is given, even one equal to the fill value."""
    return arr.with_config({"write_empty_chunks": True})


def _axis_chunks(sel: Any, size: int, chunk: int) -> range:
    if sel is None:
        return range(math.ceil(size / chunk))
    if isinstance(sel, slice):
        a, b, _ = sel.indices(size)
        return range(a // chunk, (b - 1) // chunk + 1) if b > a else range(0)
    k = int(sel)
    return range(k // chunk, k // chunk + 1)


def check_chunks_present(
    arr: Any, frames: int | slice, atoms: slice | None, store: Any, key: str, committed: Any = None
) -> None:
    """Raise :class:`StoreError` when a chunk of ``arr[frames, atoms]`` is absent from the store.

    arr: a zarr v3 array whose first axis is the frame axis (and second the atom axis when
    ``atoms`` is given); store: the path shown in the message; key: the logical array name;
    committed: bool per frame slot (None: every frame counts). Only chunks holding at least one
    committed frame must exist (uncommitted slots of a pre-allocated store have none yet).
    """
    from zarr.core.sync import sync

    shape, chunks = arr.shape, arr.chunks
    rows = _axis_chunks(frames, shape[0], chunks[0])
    if committed is not None:
        n = len(committed)
        rows = [r for r in rows if bool(committed[r * chunks[0] : min((r + 1) * chunks[0], n)].any())]
    axes = [rows]
    for ax in range(1, len(shape)):
        axes.append(_axis_chunks(atoms if ax == 1 else None, shape[ax], chunks[ax]))
    coords = list(itertools.product(*axes))
    if not coords:
        return
    sp = arr.store_path
    keys = [f"{sp.path}/{arr.metadata.encode_chunk_key(c)}" if sp.path else arr.metadata.encode_chunk_key(c)
            for c in coords]  # fmt: skip

    async def exists_all():
        import asyncio

        return await asyncio.gather(*[sp.store.exists(k) for k in keys])

    present = sync(exists_all())
    missing = [c for c, ok in zip(coords, present) if not ok]
    if missing:
        c = missing[0]
        raise StoreError(
            f"{store}: chunk {arr.metadata.encode_chunk_key(c)} of {key!r} (frames "
            f"{c[0] * chunks[0]}..{(c[0] + 1) * chunks[0] - 1}) is missing although those frames are "
            f"committed ({len(missing)} chunk(s) missing): the store was damaged (deleted files or a "
            "partial copy); it would read as the fill value, so it is refused"
        )
