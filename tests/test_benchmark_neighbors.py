"""The neighbour-list benchmark runs and writes valid JSON (no timing assertions)."""

from __future__ import annotations

import importlib.util
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_neighbors_benchmark_quick(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_neighbors", ROOT / "benchmarks" / "neighbors.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.main(["--quick", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "neighbors.json").read_text())
    assert {"date", "git_commit", "machine", "rows"} <= set(data)
    assert [r["n_atoms"] for r in data["rows"]] == [1000, 3000]
    for r in data["rows"]:
        assert r["pairs_half"] > 0 and r["hyenamd_vesin_half_s"] > 0
        assert r["ase_full_s"] > 0
