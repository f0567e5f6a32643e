"""benchmarks/ase_compile.py runs (tiny, ``aot_eager``) and writes valid JSON (no timing assertions)."""

from __future__ import annotations

import importlib.util
import json
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_ase_compile_benchmark_tiny(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_ase_compile", ROOT / "benchmarks" / "ase_compile.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.main(
        ["--atoms", "32", "--windows", "2", "--steps", "2", "--backend", "aot_eager", "--out", str(tmp_path)]
    )
    data = json.loads((tmp_path / "ase_compile.json").read_text())
    assert {"date", "git_commit", "machine", "command", "load_avg_start", "load_avg_end"} <= set(data)
    assert data["fallback_reason"] is None and data["n_compiled_calls"] == data["n_calls"]
    assert data["graphs_compiled_during_windows"] == 0
    assert data["forces_max_abs_diff"] <= 1e-4 * max(data["forces_max_abs"], 1.0)  # float32 rounding
    for name in ("eager", "compiled"):
        assert data["cpu_step"][name]["min_ms"] > 0
