"""Dynamics training pairs from a reference of NVE segments never straddle two segments."""

from __future__ import annotations

import dataclasses
import pathlib

from hyenamd.config import load_config
from hyenamd.engine.reference import ReferenceConfig, reference_md
from hyenamd.io import open_store
from hyenamd.workflows.train import DataConfig, load_samples

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_pairs_stay_inside_nve_segments(tmp_path):
    cfg = load_config(ROOT / "configs" / "reference" / "tiny.yaml", ReferenceConfig, [])
    cfg = dataclasses.replace(
        cfg,
        output=str(tmp_path / "seg.h5"),
        segments="nve",
        segment_steps=30,
        segment_gap_steps=20,
        n_steps=90,
    )
    path = reference_md(cfg)
    samples, summary = load_samples(
        DataConfig(stores=(str(path),), horizon_frames=2, n_segments=2), "dynamics"
    )
    with open_store(path) as st:
        assert st.observable("segment").tolist() == [0] * 4 + [1] * 4 + [2] * 4
    # frames 0-5 | 6-11 are the train/valid split; pairs (k, k + 2) inside one NVE segment and one
    # split segment: (0,2), (1,3), (8,10), (9,11) — without the segment rule also (2,4), (3,5), (6,8), (7,9)
    assert len(samples) == 4
    assert summary["horizon_fs"] == 2 * 10 * cfg.dt_fs
    assert summary["reference_segments"] == ["nve: 3 NVE segments started from NVT states"]
    assert float(samples[0].displacement.abs().max()) < 5.0  # an 80 fs stride of argon
    # time reversal: every pair also reversed — (x', −v') → (x, −v), same split segment
    both, _ = load_samples(
        DataConfig(stores=(str(path),), horizon_frames=2, n_segments=2, time_reversal=True), "dynamics"
    )
    assert len(both) == 2 * len(samples)
    for fwd, (a, b) in zip(samples, zip(both[0::2], both[1::2])):
        assert a.system.positions.equal(fwd.system.positions) and a.displacement.equal(fwd.displacement)
        assert b.segment == a.segment
        assert b.displacement.equal(-a.displacement)
        assert b.next_velocities.equal(-a.system.velocities)
        assert b.system.velocities.equal(-a.next_velocities)
        x_back = b.system.positions + b.displacement  # the reversed pair ends where the forward one began
        assert float((x_back - a.system.positions).abs().max()) < 1e-9
