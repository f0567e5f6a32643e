"""benchmarks/engine_overhead.py --quick runs and writes valid JSON (no timing assertions)."""

from __future__ import annotations

import importlib.util
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_engine_overhead_quick(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_engine", ROOT / "benchmarks" / "engine_overhead.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.main(["--quick", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "engine_overhead_quick.json").read_text())
    assert {"date", "git_commit", "machine", "command", "zero_cost", "surrogate_split"} <= set(data)
    assert [r["n_atoms"] for r in data["zero_cost"]] == [1000, 10000]
    for r in data["zero_cost"]:
        for key in (
            "hyenamd_float32_s",
            "hyenamd_float64_s",
            "ase_zero_calculator_s",
            "ase_hyena_calculator_s",
        ):
            assert r[key] > 0
        assert r["ratio_float64_vs_ase"] == r["hyenamd_float64_s"] / r["ase_zero_calculator_s"]
    (split,) = data["surrogate_split"]
    parts = sum(
        split[f"{k}_s_per_step"] for k in ("model", "neighbors", "integrator_only", "reporting", "guard")
    )
    assert split["model_s_per_step"] > 0 and parts <= split["total_s_per_step"] * 1.0001
    assert (tmp_path / "engine_overhead_quick.png").stat().st_size > 0
