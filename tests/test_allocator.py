"""tune_malloc: sets only what the user left unset, for this process and its children."""

from __future__ import annotations

import os
import subprocess
import sys

from hyenamd.allocator import MMAP_THRESHOLD, TRIM_THRESHOLD


def _run(env_extra: dict[str, str]) -> str:
    code = "import os; from hyenamd.allocator import tune_malloc; print(tune_malloc()); print(os.environ.get('MALLOC_MMAP_THRESHOLD_'), os.environ.get('MALLOC_TRIM_THRESHOLD_'))"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")} | env_extra
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout


def test_sets_unset_thresholds_and_keeps_the_users():
    out = _run({})
    if sys.platform.startswith("linux"):
        assert f"{MMAP_THRESHOLD} {TRIM_THRESHOLD}" in out
    out = _run({"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "99"})
    assert "{}" in out and "65536 99" in out
