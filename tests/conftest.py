"""Fixtures shared by every test directory."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture
def run_benchmark(tmp_path):
    """Run ``benchmarks/<script>`` in a subprocess with this tree's source, one thread, and its JSON
    and figures redirected to ``tmp_path / "res"`` and ``tmp_path / "fig"``; returns ``tmp_path``."""

    def run(script: str, *args: str, timeout: float = 600) -> pathlib.Path:
        env = dict(
            os.environ,
            PYTHONPATH=str(ROOT / "src"),
            OMP_NUM_THREADS="1",
            HYENAMD_BENCH_RESULTS=str(tmp_path / "res"),
            HYENAMD_BENCH_FIGURES=str(tmp_path / "fig"),
        )
        subprocess.run(
            [sys.executable, str(ROOT / "benchmarks" / script), *args],
            env=env, cwd=ROOT, check=True, capture_output=True, timeout=timeout,
        )  # fmt: skip
        return tmp_path

    return run


@pytest.fixture
def fresh_dynamo():
    """``torch._dynamo`` reset (compiled graphs and counters) before and after the test; yields
    a function returning the number of graphs compiled since (``unique_graphs``)."""
    import torch._dynamo

    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    yield lambda: int(torch._dynamo.utils.counters["stats"]["unique_graphs"])
    torch._dynamo.reset()
