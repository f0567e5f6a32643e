"""Crash safety: a writer process is SIGKILLed at random moments, for both formats.

After every kill the store opens, every frame up to the last one the writer reported as
appended is intact (steps and values checked bitwise), no torn frame is returned, and
``mode="a"`` resumes; a final clean run completes the store.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from hyenamd import System
from hyenamd.io import open_store

N_ATOMS = 300

# A launcher imports hyenamd once, then forks one writer per crash cycle (a fresh
# interpreter per cycle would spend seconds importing torch). Each writer appends frames to
# the store in mode "a" and logs every step it appended; the test SIGKILLs it by pid.
LAUNCHER = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    from hyenamd.io import open_store

    path, n = sys.argv[1], int(sys.argv[2])
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped automatically
    base = np.arange(n * 3, dtype=np.float32).reshape(n, 3) * np.float32(1e-3)
    for line in sys.stdin:
        log, frames = line.split()
        pid = os.fork()
        if pid:
            print(pid, flush=True)
            continue
        try:
            out = open(log, "w", buffering=1)
            st = open_store(path, "a")
            start = len(st)
            out.write("ready %d\\n" % start)
            for step in range(start, start + int(frames)):
                x = base + np.float32(step)
                st.append(x, step=step, time=0.5 * step, velocities=-x, potential_energy=float(step) * 0.25)
                out.write("%d\\n" % step)
            st.close()
            out.write("closed\\n")
        finally:
            os._exit(0)
    """
)


def _expected(step: int):
    base = np.arange(N_ATOMS * 3, dtype=np.float32).reshape(N_ATOMS, 3) * np.float32(1e-3)
    return base + np.float32(step)


def _check_store(path) -> tuple[int, int]:
    """Every committed frame is intact; returns (frames, slots on disk)."""
    with open_store(path) as st:
        n = len(st)
        np.testing.assert_array_equal(st.steps, np.arange(n))
        np.testing.assert_array_equal(st.times, 0.5 * np.arange(n))
        np.testing.assert_array_equal(st.observable("potential_energy"), 0.25 * np.arange(n))
        for i in range(n):
            x = _expected(i)
            assert st.read(i, "position").tobytes() == x.tobytes(), f"frame {i} positions torn"
            assert st.read(i, "velocity").tobytes() == (-x).tobytes(), f"frame {i} velocities torn"
        with pytest.raises(IndexError):
            st[n]
        return n, st._slots()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait(cond, what: str, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while not cond():
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


class _Launcher:
    def __init__(self, path):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, str(path), str(N_ATOMS)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def start(self, log, frames: int) -> int:
        log.unlink(missing_ok=True)
        self.proc.stdin.write(f"{log} {frames}\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def _last_reported(log) -> int:
    lines = [ln for ln in log.read_text().splitlines() if ln and not ln.startswith(("ready", "closed"))]
    return int(lines[-1]) if lines else -1


def _crash_cycles(tmp_path, suffix: str, kills: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    path = tmp_path / f"crash{suffix}"
    log = tmp_path / "writer.log"
    template = System(positions=torch.zeros(N_ATOMS, 3), species=torch.full((N_ATOMS,), 6))
    kw = {"fields": ("position", "velocity"), "observables": ("potential_energy",), "chunk_atoms": 128}
    open_store(path, "w", system=template, **kw).close()
    launcher = _Launcher(path)
    committed, torn = 0, 0
    try:
        for _ in range(kills):
            pid = launcher.start(log, 10**6)
            _wait(lambda: log.exists() and log.read_text().startswith("ready"), "the writer")
            time.sleep(float(rng.uniform(0.0, 0.2)))
            os.kill(pid, signal.SIGKILL)
            _wait(lambda pid=pid: not _alive(pid), "the killed writer to vanish")
            reported = _last_reported(log)
            n, slots = _check_store(path)
            assert n >= reported + 1, f"frame {reported} was reported appended but only {n} frames survive"
            assert n >= committed, "committed frames disappeared"
            committed = n
            torn += slots > n
        # a clean run resumes after the last committed frame and completes the store
        pid = launcher.start(log, 5)
        _wait(lambda: log.exists() and log.read_text().endswith("closed\n"), "the clean writer")
        _wait(lambda: not _alive(pid), "the clean writer to exit")
    finally:
        launcher.close()
    n, slots = _check_store(path)
    assert n == committed + 5 and slots == n
    with open_store(path) as st:
        assert st.status == "complete"
    print(f"{suffix}: {kills} kills, {committed} frames survived, {torn} kills left spare/torn slots")


@pytest.mark.parametrize("suffix", [".h5", ".zarr"])
def test_sigkill_at_random_moments(tmp_path, suffix):
    _crash_cycles(tmp_path, suffix, kills=5, seed=11)


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".h5", ".zarr"])
def test_sigkill_many_times(tmp_path, suffix):
    _crash_cycles(tmp_path, suffix, kills=20, seed=12)
