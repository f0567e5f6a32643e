"""benchmarks/ase_glue.py runs (tiny) and writes valid JSON (no timing assertions)."""

from __future__ import annotations

import json

import pytest


@pytest.mark.slow
def test_ase_glue_benchmark_tiny(run_benchmark):
    out = run_benchmark("ase_glue.py", "--atoms", "32", "--windows", "2", "--steps", "30")
    data = json.loads((out / "res" / "ase_glue.json").read_text())
    assert {"date", "git_commit", "machine", "command", "load_avg_start", "load_avg_end"} <= set(data)
    assert data["atoms"] == 32 and data["steps"] == 60 and len(data["step_us"]["all"]) == 2
    parts = data["parts_us_per_step"]
    assert set(parts) == {"calculate", "verlet_build", "verlet_reuse", "check_state"}
    assert parts["calculate"] > parts["verlet_reuse"] > 0  # the list is reused inside calculate
