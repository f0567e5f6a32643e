"""Frame stores as validation trajectories: :class:`StoreTrajectory` over :func:`hyenamd.io.open_store`.

Reads frames through the store's prefetching iterator, asking only for positions, velocities
and the box (forces are read one frame at a time, for the accuracy metric only), so memory is
a few frames whatever the store's size. Observables are read whole (one float per frame).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from hyenamd.validate.trajectory import Frame

__all__ = ["StoreTrajectory", "open_trajectory"]


class StoreTrajectory:
    """A :class:`~hyenamd.validate.trajectory.Trajectory` backed by an open hyenamd frame store.

    ``info`` holds the store's ``path`` and ``status`` ("complete" once closed by its writer), and
    the ``ensemble`` ("nvt", "nve", ...) when a provenance file ``<store>.provenance.json`` (written
    by ``hyenamd reference``) names it at its top level or under ``config``.
    """

    def __init__(self, store: Any) -> None:
        self.store = store
        template = store.system
        self.species = template.species.numpy().astype(np.int64)
        self.masses = template.masses.double().numpy()
        self.labels = template.labels
        self.order = template.order  # canonical sequence order of the model (None if not stored)
        self.pbc = template.pbc.numpy().astype(bool)
        self._template_cell = None if template.cell is None else template.cell.double().numpy()
        self.info: dict[str, Any] = {
            "path": str(getattr(store, "path", "")),
            "status": getattr(store, "status", ""),
        }
        ensemble = _provenance_ensemble(Path(self.info["path"]))
        if ensemble:
            self.info["ensemble"] = ensemble
        committed = np.asarray(store.committed)
        if len(committed) and not committed.all():
            k = int(np.flatnonzero(~committed)[0])
            raise ValueError(
                f"store {self.info['path']} has uncommitted frames (first: {k}); it is still being filled"
            )
        self._fields = tuple(f for f in ("position", "velocity", "box") if f in store.fields)
        self._obs = tuple(store.observable_names)

    def __len__(self) -> int:
        return len(self.store)

    @property
    def times(self) -> np.ndarray:
        return np.asarray(self.store.times, dtype=np.float64)

    def frames(self, start: int = 0, stop: int | None = None, stride: int = 1) -> Iterator[Frame]:
        for fr in self.store.frames(start, stop, stride, fields=self._fields):
            v = fr.arrays.get("velocity")
            cell = fr.arrays.get("box", self._template_cell)
            yield Frame(
                fr.index,
                float(fr.time),
                np.asarray(fr.arrays["position"], dtype=np.float64),
                None if v is None else np.asarray(v, dtype=np.float64),
                None if cell is None else np.asarray(cell, dtype=np.float64),
                self.pbc,
            )

    def observable(self, name: str) -> np.ndarray | None:
        if name not in self._obs:
            return None
        v = np.asarray(self.store.observable(name), dtype=np.float64)
        return v if v.ndim == 1 else None

    def forces(self, index: int) -> np.ndarray | None:
        if "force" not in self.store.fields:
            return None
        return np.asarray(self.store.read(int(index), "force"), dtype=np.float64)

    def close(self) -> None:
        self.store.close()


def _provenance_ensemble(path: Path) -> str | None:
    prov = path.with_name(path.name + ".provenance.json")
    if not prov.is_file():
        return None
    try:
        data = json.loads(prov.read_text())
    except (OSError, ValueError):
        return None
    value = data.get("ensemble") or (data.get("config") or {}).get("ensemble")
    return str(value).lower() if value else None


def open_trajectory(path: str | os.PathLike) -> StoreTrajectory:
    """Open a store (``.h5``/``.h5md``/``.hdf5`` or ``.zarr``) read-only as a trajectory."""
    from hyenamd.io import open_store

    if not os.path.exists(path):
        raise FileNotFoundError(f"no trajectory store at {path}")
    return StoreTrajectory(open_store(path, "r"))
