"""benchmarks/ray_overhead.py --quick runs on a local 2-node cluster and writes valid JSON (no timing asserts)."""

from __future__ import annotations

import importlib.util
import json
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_ray_overhead_benchmark_quick(tmp_path):
    pytest.importorskip("ray")
    spec = importlib.util.spec_from_file_location(
        "bench_ray_overhead", ROOT / "benchmarks" / "ray_overhead.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.main(["--quick", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "ray_overhead.json").read_text())
    assert {"date", "git_commit", "machine", "command", "workload"} <= set(data)
    assert data["workload"]["n_rollouts"] == 2 and data["workload"]["steps_per_rollout"] >= 20
    assert len(data["ray_serial_worker_s"]) == len(data["direct_rollout_s"]) == 2
    for key in ("direct_s", "ray_serial_s", "ray_parallel_s", "cluster_startup_s"):
        assert data[key] > 0
    assert data["overhead_serial"] == pytest.approx(data["ray_serial_s"] / data["direct_s"] - 1)
