"""The writer processes of the kill -9 sweep (``test_kill_sweep.py``), one function per write path.

Each job runs in a child forked by the sweep's launcher (hyenamd and torch imported once), writes
through the public API or the CLI exactly as a user's process would, and logs its progress to a
text file (``ready``, one line per committed unit, ``closed``/``rc N``) so the test can kill it at
a chosen point. Not a test module: the launcher loads it by path.
"""

from __future__ import annotations

import time

import numpy as np

N_ATOMS = 40


def frame(step: int, n_atoms: int = N_ATOMS) -> np.ndarray:
    """The positions ``[n_atoms, 3]`` float32 every writer stores for ``step`` (checked bitwise)."""
    base = np.arange(n_atoms * 3, dtype=np.float32).reshape(n_atoms, 3) * np.float32(1e-3)
    return base + np.float32(step)


def append_frames(path: str, log: str, frames: int, pace: float = 0.0) -> None:
    """``open_store(path, "a")``: resume after the last committed frame, append ``frames`` more."""
    from hyenamd.io import open_store

    with open(log, "w", buffering=1) as out:
        st = open_store(path, "a")
        start = len(st)
        out.write(f"ready {start}\n")
        for step in range(start, start + frames):
            x = frame(step)
            st.append(x, step=step, time=0.5 * step, velocities=-x, potential_energy=0.25 * step)
            out.write(f"{step}\n")
            time.sleep(pace)
        st.close()
        out.write("closed\n")


def fill_range(
    path: str, log: str, start: int, stop: int, pace: float = 0.0, hold: str | None = None
) -> None:
    """``open_store(path, "r+", frames=range(start, stop))``: fill the range (resuming after its
    committed frames); with ``hold``, keep the store (and its claim) open until that file exists."""
    import pathlib

    from hyenamd.io import open_store

    with open(log, "w", buffering=1) as out:
        st = open_store(path, "r+", frames=range(start, stop))
        with open_store(path) as reader:
            first = start + int(reader.committed[start:stop].sum())
        out.write(f"ready {first}\n")
        for k in range(first, stop):
            x = frame(k)
            st.append(x, step=k, time=0.5 * k, velocities=-x, potential_energy=0.25 * k)
            out.write(f"{k}\n")
            time.sleep(pace)
        deadline = time.monotonic() + 300  # never outlive a failed test by more than minutes
        while hold is not None and not pathlib.Path(hold).exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        st.close()
        out.write("closed\n")


def md_system(n_atoms: int = 8):
    """A periodic 8-atom box for the MD job (float64; atoms on a jittered 2×2×2 grid, 2.5 Å apart)."""
    import torch

    from hyenamd import System

    rng = np.random.default_rng(5)
    grid = np.stack(np.meshgrid(*[np.arange(2)] * 3, indexing="ij"), -1).reshape(-1, 3)[:n_atoms]
    pos = 2.5 * grid + 1.0 + rng.normal(0, 0.05, (n_atoms, 3))
    return System(torch.tensor(pos), torch.full((n_atoms,), 18), cell=np.eye(3) * 5.0, pbc=True)


def md_potential():
    from hyenamd.engine.potentials import LennardJones

    return LennardJones(sigma=2.0, epsilon=0.01, cutoff=2.4, switch_on=2.2)


def md(config: dict, log: str) -> None:
    """An MD run as a user script drives it: ``build_simulation(cfg, potential, system, resume=True)``
    (continues from ``reporters.checkpoint`` when it exists), then ``run_to(cfg.n_steps)``."""
    from hyenamd.config import from_dict
    from hyenamd.engine.config import MDConfig, build_simulation

    cfg = from_dict(MDConfig, config)
    with open(log, "w", buffering=1) as out:
        try:
            with build_simulation(cfg, md_potential(), md_system(), resume=True) as sim:
                out.write(f"ready {sim.state.step}\n")
                sim.run_to(cfg.n_steps)
        except Exception as e:  # the test asserts on refused resumes
            out.write(f"error {type(e).__name__}: {e}\n")
            return
        out.write("closed\n")


def train(config: str, log: str) -> None:
    """``hyenamd train CONFIG`` through the CLI's entry point (exit code logged)."""
    from hyenamd.cli import main

    with open(log, "w", buffering=1) as out:
        out.write("ready\n")
        rc = main(["train", config])
        out.write(f"rc {rc}\n")
