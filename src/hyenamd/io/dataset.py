"""A torch ``Dataset`` over frame stores, and ``collate`` into a :class:`hyenamd.Batch`.

Two kinds of items:

* frames (``horizon=None``): ``{"system": System, "energy": [] eV, "forces": [n, 3] eV/Å,
  "store": int, "frame": int}`` (energy/forces only when the store has them);
* pairs for the dynamics head (``horizon=k``): frame ``t`` and frame ``t + k`` of the same
  store, ``{"system": System(t), "target": System(t + k), "dt": [] fs, ...}``.

Stores are opened lazily and re-opened in each DataLoader worker process (an HDF5 handle
must not cross a fork); uncommitted slots of multi-writer stores are skipped.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["FrameDataset", "collate"]


class FrameDataset(Dataset):
    """Frames or (t, t + horizon) frame pairs from one or more stores.

    stores: paths (or open stores, used for their paths) of ``.h5``/``.zarr`` stores.
    horizon: None for single frames, k >= 1 for pairs k frames apart. stride: use every
    stride-th frame as a start. energy_key: observable used as the energy target.
    dtype: cast positions/velocities/cell/targets (default: as stored).
    """

    def __init__(
        self,
        stores: str | os.PathLike | Any | Sequence[Any],
        *,
        horizon: int | None = None,
        stride: int = 1,
        energy_key: str = "potential_energy",
        dtype: torch.dtype | None = None,
    ) -> None:
        from hyenamd.io import FrameStore, open_store

        if isinstance(stores, (str, os.PathLike, FrameStore)):
            stores = [stores]
        self.paths = [Path(s.path) if isinstance(s, FrameStore) else Path(s) for s in stores]
        if not self.paths:
            raise ValueError("FrameDataset needs at least one store")
        if horizon is not None and int(horizon) < 1:
            raise ValueError(f"horizon must be >= 1 frames, got {horizon}")
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        self.horizon = None if horizon is None else int(horizon)
        self.energy_key = energy_key
        self.dtype = dtype
        self._open: dict[int, Any] = {}
        self._pid = os.getpid()
        index = []
        for s, path in enumerate(self.paths):
            with open_store(path) as st:
                ok = st.committed
                starts = np.arange(0, len(st), stride)
                if self.horizon is not None:
                    starts = starts[starts + self.horizon < len(st)]
                    starts = starts[ok[starts] & ok[starts + self.horizon]]
                else:
                    starts = starts[ok[starts]]
                index.append(np.stack([np.full(len(starts), s), starts], axis=1))
        self.index = np.concatenate(index).astype(np.int64)

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def _store(self, s: int):
        from hyenamd.io import open_store

        if os.getpid() != self._pid:  # a forked DataLoader worker: never reuse the parent's handles
            self._open, self._pid = {}, os.getpid()
        if s not in self._open:
            self._open[s] = open_store(self.paths[s])
        return self._open[s]

    def _frame(self, st, k: int) -> tuple[Any, dict]:
        system = st[k]
        if self.dtype is not None:
            system = system.to(dtype=self.dtype)
        extra = {}
        if self.energy_key in st.observable_names:
            extra["energy"] = torch.tensor(float(st.read(k, self.energy_key)), dtype=system.dtype)
        if "force" in st.fields:
            extra["forces"] = torch.from_numpy(st.read(k, "force")).to(system.dtype)
        return system, extra

    def __getitem__(self, i: int) -> dict[str, Any]:
        s, k = (int(x) for x in self.index[i])
        st = self._store(s)
        system, item = self._frame(st, k)
        item.update({"system": system, "store": s, "frame": k})
        if self.horizon is not None:
            target, t_extra = self._frame(st, k + self.horizon)
            item["target"] = target
            item["dt"] = torch.tensor(target.info["time"] - system.info["time"], dtype=torch.float64)
            for key, v in t_extra.items():
                item[f"target_{key}"] = v
        return item

    def close(self) -> None:
        for st in self._open.values():
            st.close()
        self._open = {}

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_open"] = {}
        return state


def collate(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Concatenate dataset items: ``"batch"`` (a :class:`hyenamd.Batch`), ``"energy"``
    ``[B]``, ``"forces"`` ``[N, 3]`` (when every item has them), for pairs ``"target"`` (a
    Batch), ``"dt"`` ``[B]`` fs and ``"target_energy"``/``"target_forces"``; ``"store"``,
    ``"frame"`` ``[B]`` int64."""
    from hyenamd.system import Batch

    if not items:
        raise ValueError("collate needs at least one item")
    out: dict[str, Any] = {"batch": Batch.from_systems([it["system"] for it in items])}
    if all("target" in it for it in items):
        out["target"] = Batch.from_systems([it["target"] for it in items])
        out["dt"] = torch.stack([it["dt"] for it in items])
    for key, op in (("energy", torch.stack), ("forces", torch.cat), ("target_energy", torch.stack),
                    ("target_forces", torch.cat)):  # fmt: skip
        if all(key in it for it in items):
            out[key] = op([it[key] for it in items])
    out["store"] = torch.tensor([it["store"] for it in items], dtype=torch.int64)
    out["frame"] = torch.tensor([it["frame"] for it in items], dtype=torch.int64)
    return out
