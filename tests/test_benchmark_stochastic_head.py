"""The stochastic-head benchmark runs end to end on a tiny budget and writes its JSON (no timing assertions)."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow  # ~35 s wall: an OpenMM reference, a training epoch, replicas and rollouts
def test_stochastic_head_benchmark_tiny(tmp_path):
    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT / "src"),
        OMP_NUM_THREADS="1",
        HYENAMD_BENCH_RESULTS=str(tmp_path / "res"),
        HYENAMD_BENCH_FIGURES=str(tmp_path / "fig"),
    )
    args = ["--out", str(tmp_path / "run"), "--ps", "6", "--epochs", "1", "--n-starts", "2"]
    args += ["--replicas", "2", "--strides", "2", "--name", "tiny"]
    subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "stochastic_head.py"), *args],
        env=env, cwd=ROOT, check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    data = json.loads((tmp_path / "res" / "tiny.json").read_text())
    assert {"date", "git_commit", "machine", "load_average_start", "cpu_seconds"} <= set(data)
    h, r = data["heldout"], data["replica"]
    assert 0 < h["predicted_noise_fraction_v"] and 0 < r["noise_fraction_v"] < 1
    assert 0 <= h["calibration_v"]["within_1sigma"] <= h["calibration_v"]["within_2sigma"] <= 1
    assert set(data["rollouts"]) == {"sampled", "means", "sampled_rescale", "means_rescale"}
    assert (tmp_path / "fig" / "tiny.png").exists()
