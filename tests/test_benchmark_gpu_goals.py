"""The prepared GPU-goals run (issue #15) works end to end; here on the CPU at tiny sizes (no timing
assertions). On a device machine the same script runs the real sizes."""

from __future__ import annotations

import importlib.util
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location("bench_gpu_goals", ROOT / "benchmarks" / "gpu_goals.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_gpu_goals_quick_on_the_cpu(tmp_path):
    out = tmp_path / "g.json"
    _module().main(["--device", "cpu", "--quick", "--repeats", "1", "--out", str(out)])
    data = json.loads(out.read_text())
    assert {"date", "git_commit", "machine", "sizes", "block_comparison", "largest_n_atoms"} <= set(data)
    assert [r["n_atoms"] for r in data["sizes"]] == [300, 1000] and data["largest_n_atoms"] == 1000
    for r in data["sizes"]:
        assert r["finite"] and r["pairs"] > 0 and r["regime"] == "fast"
        assert r["energy_forces_min_s"] > 0 and r["forward_min_s"] > 0
    blocks = data["block_comparison"]
    assert blocks["n_tokens"] == 256
    for name in ("global", "attention_chunked", "attention_naive"):
        assert blocks[name]["forward_min_s"] > 0 and blocks[name]["forward_backward_min_s"] > 0
    assert blocks["speedup_over_attention_chunked"]["forward_min_s"] > 0


def test_the_size_sweep_stops_at_the_time_budget(tmp_path):
    out = tmp_path / "g.json"
    _module().main(
        [
            "--device",
            "cpu",
            "--sizes",
            "200",
            "300",
            "--budget-s",
            "0",
            "--repeats",
            "1",
            "--attention-n",
            "0",
            "--out",
            str(out),
        ]
    )
    data = json.loads(out.read_text())
    assert data["sizes"] == [] and data["largest_n_atoms"] is None
    assert "time budget" in data["stopped"] and data["block_comparison"] is None  # --attention-n 0: skipped
