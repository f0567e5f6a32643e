"""The I/O benchmark runs in --quick mode and writes a well-formed JSON (speed is never asserted)."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_io_throughput_quick(tmp_path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "io_throughput.py"), "--quick", "--n-atoms", "20000",
         "--out", str(tmp_path), "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    data = json.loads((tmp_path / "io_throughput.json").read_text())
    assert data["config"]["n_atoms"] == 20000 and data["config"]["dtype"] == "float32"
    assert data["command"].endswith("--quick") and data["git_commit"]
    for backend in ("hdf5", "zarr"):
        r = data["results"][backend]
        assert r["write"]["raw_MBps"] > 0 and r["write"]["hyenamd_MBps"] > 0 and r["write"]["ratio"] > 0
        for kind in ("read_warm", "read_cold"):
            assert set(r[kind]) == {"raw_MBps", "hyenamd_MBps", "hyenamd_frames_iter_MBps"}
            assert all(v > 0 for v in r[kind].values())
        assert (
            r["atom_range_read"]["n_atoms_read"] == 5000 and r["atom_range_read"]["hyenamd_ms_per_frame"] > 0
        )
        assert set(data["met"][backend]) == {"write_ratio", "read_warm", "read_cold"}
    assert not list(tmp_path.glob("hyenamd-io-*"))  # the stores were cleaned up
