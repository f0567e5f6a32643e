"""tune_malloc / adapt_malloc: only what the user left unset, sized to the system, inherited by children."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from hyenamd.allocator import (
    LARGE_ATOMS,
    MMAP_THRESHOLD,
    SMALL_MMAP_THRESHOLD,
    SMALL_TRIM_THRESHOLD,
    TRIM_THRESHOLD,
)

LINUX = sys.platform.startswith("linux")


def _run(code: str, env_extra: dict[str, str]) -> list[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "HYENAMD_MALLOC"))} | env_extra
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return out.stdout.splitlines()


SHOW = "print(os.environ.get('MALLOC_MMAP_THRESHOLD_'), os.environ.get('MALLOC_TRIM_THRESHOLD_'))"


def test_sets_unset_thresholds_and_keeps_the_users():
    code = f"import os; from hyenamd.allocator import tune_malloc; print(tune_malloc()); {SHOW}"
    out = _run(code, {})
    if LINUX:
        assert out[-1] == f"{SMALL_MMAP_THRESHOLD} {SMALL_TRIM_THRESHOLD}"
    out = _run(code, {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "99"})
    assert out[0] == "{}" and out[-1] == "65536 99"


@pytest.mark.skipif(not LINUX, reason="glibc mallopt only")
def test_adapts_to_the_system_size_and_children_inherit():
    code = (
        "import os, subprocess, sys; from hyenamd.allocator import tune_malloc, adapt_malloc\n"
        "print(adapt_malloc(10))\n"  # nothing managed before tune_malloc
        "tune_malloc()\n"
        f"print(adapt_malloc({LARGE_ATOMS})); {SHOW}\n"
        f"print(adapt_malloc(108)); {SHOW}\n"
        f"print(adapt_malloc({LARGE_ATOMS})); {SHOW}\n"
        "child = 'import os; from hyenamd.allocator import adapt_malloc; print(adapt_malloc(5))'\n"
        "print(subprocess.run([sys.executable, '-c', child], capture_output=True, text=True).stdout.strip())\n"
    )
    out = _run(code, {})
    small, large = f"{SMALL_MMAP_THRESHOLD} {SMALL_TRIM_THRESHOLD}", f"{MMAP_THRESHOLD} {TRIM_THRESHOLD}"
    assert out == ["None", "True", large, "False", small, "True", large, "False"]


@pytest.mark.skipif(not LINUX, reason="glibc mallopt only")
def test_user_thresholds_are_never_adapted():
    code = (
        "import os; from hyenamd.allocator import tune_malloc, adapt_malloc\n"
        f"tune_malloc(); print(adapt_malloc({LARGE_ATOMS})); {SHOW}\n"
    )
    out = _run(code, {"MALLOC_MMAP_THRESHOLD_": "65536"})
    assert out[0] == "True" and out[1] == f"65536 {TRIM_THRESHOLD}"  # only the trim threshold is ours


@pytest.mark.skipif(not LINUX, reason="glibc mallopt only")
def test_the_callers_regime_overrides_the_size_rule():
    """``large=`` (the G-Hyena model's memory regime) wins over the atom count, both ways."""
    code = (
        "import os; from hyenamd.allocator import tune_malloc, adapt_malloc\n"
        f"tune_malloc(); print(adapt_malloc({10 * LARGE_ATOMS}, large=False)); {SHOW}\n"
        f"print(adapt_malloc(108, large=True)); {SHOW}\n"
    )
    out = _run(code, {})
    small, large = f"{SMALL_MMAP_THRESHOLD} {SMALL_TRIM_THRESHOLD}", f"{MMAP_THRESHOLD} {TRIM_THRESHOLD}"
    assert out == ["False", small, "True", large]
