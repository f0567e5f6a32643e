"""The validation benchmark runs and writes valid JSON (no timing assertions)."""

from __future__ import annotations

import importlib.util
import json
import pathlib

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_validate_benchmark_quick(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_validate", ROOT / "benchmarks" / "validate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.main(["--quick", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "validate_quick.json").read_text())
    assert {"date", "git_commit", "machine", "command", "rdf"} <= set(data)
    rows = data["rdf"]
    assert [r["chunk_atoms"] for r in rows] == [2000, 1000]
    # chunked and unchunked count the same pairs (ideal-gas-like lattice, r_max 6 Å)
    assert rows[0]["n_pairs"] == rows[1]["n_pairs"] > 0
    assert np.isfinite([r["seconds"] for r in rows]).all()
