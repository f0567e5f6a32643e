"""The engine's examples run end to end (ASE calculator, OpenMM potential)."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ase_calculator.py", "openmm_potential.py"])
def test_example_runs(name):
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name)], capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "E" in out.stdout and "nan" not in out.stdout.lower()
