"""The stochastic-head benchmark runs end to end on a tiny budget and writes its JSON (no timing assertions)."""

from __future__ import annotations

import json

import pytest


@pytest.mark.slow  # ~35 s wall: an OpenMM reference, a training epoch, replicas and rollouts
def test_stochastic_head_benchmark_tiny(tmp_path, run_benchmark):
    args = ["--out", str(tmp_path / "run"), "--ps", "6", "--epochs", "1", "--n-starts", "2"]
    args += ["--replicas", "2", "--strides", "2", "--name", "tiny"]
    run_benchmark("stochastic_head.py", *args)
    data = json.loads((tmp_path / "res" / "tiny.json").read_text())
    assert {"date", "git_commit", "machine", "load_average_start", "cpu_seconds"} <= set(data)
    h, r = data["heldout"], data["replica"]
    assert 0 < h["predicted_noise_fraction_v"] and 0 < r["noise_fraction_v"] < 1
    assert 0 <= h["calibration_v"]["within_1sigma"] <= h["calibration_v"]["within_2sigma"] <= 1
    assert set(data["rollouts"]) == {"sampled", "means", "sampled_rescale", "means_rescale"}
    assert (tmp_path / "fig" / "tiny.png").exists()
