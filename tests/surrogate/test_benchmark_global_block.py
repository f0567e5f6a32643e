"""The global-block benchmark's --quick smoke run writes valid JSON and a figure (no timing assertions)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_benchmark_writes_json_and_figure(tmp_path):
    out, fig = tmp_path / "gb.json", tmp_path / "gb.png"
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "global_block.py"),
        "--quick",
        "--out",
        str(out),
        "--figure",
        str(fig),
    ]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300)
    data = json.loads(out.read_text())
    assert data["benchmark"] == "global_block"
    assert {"date", "git_commit", "machine", "command", "settings", "results", "summary", "stopped"} <= set(
        data
    )
    modes = {r["mode"] for r in data["results"]}
    assert modes == {"global", "attention_naive", "attention_chunked"}
    for r in data["results"]:
        assert "error" not in r, r
        for key in (
            "time_s_forward",
            "time_s_forward_backward",
            "peak_mb_forward",
            "peak_mb_forward_backward",
        ):
            assert isinstance(r[key], float) and r[key] >= 0.0
        assert r["time_s_forward"] > 0.0
    assert set(data["summary"]) == {"attention_naive", "attention_chunked"}
    assert fig.stat().st_size > 10_000 and fig.read_bytes()[:4] == b"\x89PNG"
