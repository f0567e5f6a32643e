"""``benchmarks/fused_messages.py`` runs end to end on a tiny box and writes its JSON (no timing asserted)."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_fused_messages_benchmark_writes_its_json(tmp_path):
    env = {**os.environ, "HYENAMD_BENCH_RESULTS": str(tmp_path), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(ROOT / "benchmarks" / "fused_messages.py"), "--atoms", "800", "--reps", "1"]
    subprocess.run([*cmd, "--name", "smoke"], env=env, check=True, capture_output=True, timeout=300)
    out = json.loads((tmp_path / "smoke.json").read_text())
    assert out["pairs"] > 800 and set(out["median_cpu_s"]) == {"fused", "plain", "checkpointed"}
    assert all(t > 0 for t in out["median_cpu_s"].values()) and out["git_commit"]
