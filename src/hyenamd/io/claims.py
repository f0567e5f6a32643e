"""Frame-range claims of the writers of a pre-allocated store (``open_store(path, "r+", frames=...)``).

Several processes may fill one pre-allocated zarr store, each a chunk-aligned range of frames.
Two writers whose ranges overlap would overwrite each other's committed frames, so every
``r+`` writer claims its range first:

- claims live beside the store in ``<store>.claims/``, one file ``<start>-<stop>`` per writer,
  each held with an exclusive ``flock`` for the writer's lifetime (the kernel releases it when
  the process dies, so a killed writer's claim is stale, never a dead lock);
- a new writer takes the directory's mutex (``<store>.claims/.mutex``), drops stale claims
  (files it can lock), refuses when a live claim overlaps its range, then writes its own.

A writer removes its claim file when it closes (a leftover unlocked file is stale and ignored).
The directory and its mutex stay: deleting a mutex that another process may hold open would
let two writers check claims at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from hyenamd.io.schema import StoreError

__all__ = ["RangeClaim", "claim_frames", "claims_dir"]


def claims_dir(store: str | os.PathLike) -> Path:
    """The directory holding the range claims of ``store`` (``<store>.claims``)."""
    p = Path(store)
    return p.with_name(p.name + ".claims")


class RangeClaim:
    """A held claim on frames ``[start, stop)`` of one store; :meth:`release` gives it back."""

    def __init__(self, path: Path, fd: int, frames: range) -> None:
        self.path, self._fd, self.frames = path, fd, frames

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None


def _parse(name: str) -> range | None:
    a, sep, b = name.partition("-")
    if not sep or not a.isdigit() or not b.isdigit():
        return None
    return range(int(a), int(b))


def claim_frames(store: str | os.PathLike, frames: range) -> RangeClaim:
    """Claim frames ``frames`` of ``store`` for this writer; :class:`StoreError` on an overlap."""
    d = claims_dir(store)
    try:
        d.mkdir(exist_ok=True)
        mutex = os.open(d / ".mutex", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise StoreError(
            f"cannot claim frames {frames} of {store}: {d} is not writable ({e.strerror})"
        ) from None
    try:
        fcntl.flock(mutex, fcntl.LOCK_EX)
        for p in sorted(d.iterdir()):
            other = _parse(p.name)
            if other is None:
                continue
            try:
                fd = os.open(p, os.O_RDWR)
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    if other.start < frames.stop and frames.start < other.stop:
                        raise StoreError(
                            f"frames {frames.start}:{frames.stop} of {store} overlap frames "
                            f"{other.start}:{other.stop} that another writer is filling (its claim "
                            f"{p} is held); give each writer its own chunk-aligned range"
                        ) from None
                    continue
                p.unlink(missing_ok=True)  # stale: its writer died
            finally:
                os.close(fd)
        mine = d / f"{frames.start}-{frames.stop}"
        fd = os.open(mine, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # pragma: no cover - the same range is held (refused above)
            os.close(fd)
            raise StoreError(f"frames {frames} of {store} are being filled by another writer") from None
        return RangeClaim(mine, fd, frames)
    finally:
        os.close(mutex)
