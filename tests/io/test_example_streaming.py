"""examples/hdf5_streaming.py runs (small size) and prints both stores complete."""

from __future__ import annotations

import pathlib
import runpy

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_streaming_example_runs(capsys):
    mod = runpy.run_path(str(ROOT / "examples" / "hdf5_streaming.py"))
    mod["main"](2_000, 3)
    out = capsys.readouterr().out
    assert "traj.h5md" in out and "traj.zarr" in out
    assert out.count("3 frames x 2,000 atoms, status complete") == 2
