"""FrameDataset: frames and (t, t + k) pairs over several stores, collate into a Batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from hyenamd import Batch
from hyenamd.io import open_store
from hyenamd.io.dataset import FrameDataset, collate


def _write(path, system, frames):
    with open_store(path, "w", system=system) as st:
        for d in frames:
            st.append(**d)


@pytest.fixture
def two_stores(tmp_path, make_system, make_frames):
    a = make_system(n=7)
    b = make_system(n=5, cell=False, labels=False, order=False, seed=3)
    fa, fb = make_frames(7, 5, seed=1), make_frames(5, 3, seed=2, cell=False)
    _write(tmp_path / "a.h5", a, fa)
    _write(tmp_path / "b.zarr", b, fb)
    return [tmp_path / "a.h5", tmp_path / "b.zarr"], (fa, fb)


def test_frames_and_collate(two_stores):
    paths, (_, fb) = two_stores
    ds = FrameDataset(paths)
    assert len(ds) == 8
    it = ds[6]
    assert it["store"] == 1 and it["frame"] == 1
    np.testing.assert_array_equal(it["system"].positions.numpy(), fb[1]["positions"])
    np.testing.assert_array_equal(it["forces"].numpy(), fb[1]["forces"])
    assert float(it["energy"]) == fb[1]["potential_energy"]
    out = collate([ds[0], ds[4], ds[7]])
    assert isinstance(out["batch"], Batch) and out["batch"].counts.tolist() == [7, 7, 5]
    assert out["forces"].shape == (19, 3) and out["energy"].shape == (3,)
    np.testing.assert_array_equal(out["forces"][14:].numpy(), fb[2]["forces"])
    assert out["frame"].tolist() == [0, 4, 2] and out["store"].tolist() == [0, 0, 1]
    ds.close()


def test_pairs_for_the_dynamics_head(two_stores):
    paths, (fa, fb) = two_stores
    ds = FrameDataset(paths, horizon=2, dtype=torch.float32)
    assert len(ds) == 3 + 1  # pairs never cross stores
    it = ds[1]
    assert it["system"].dtype == torch.float32
    np.testing.assert_array_equal(it["target"].positions.numpy(), fa[3]["positions"].astype(np.float32))
    assert float(it["dt"]) == fa[3]["time"] - fa[1]["time"]
    out = collate([ds[0], ds[3]])
    assert out["target"].n_systems == 2 and out["target_forces"].shape == (12, 3)
    assert out["dt"].tolist() == [fa[2]["time"] - fa[0]["time"], fb[2]["time"] - fb[0]["time"]]
    with pytest.raises(ValueError, match="horizon"):
        FrameDataset(paths, horizon=0)


def test_dataloader_workers_reopen_stores(two_stores):
    paths, _ = two_stores
    ds = FrameDataset(paths[:1], stride=2)
    ds[0]  # the parent opens a handle; forked workers must not use it
    dl = DataLoader(ds, batch_size=2, num_workers=2, collate_fn=collate)
    frames = torch.cat([b["frame"] for b in dl]).tolist()
    assert frames == [0, 2, 4]
    ds.close()
