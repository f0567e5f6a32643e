"""The kill -9 sweep: every write path a user runs is SIGKILLed at seeded points, then checked.

Write paths (one parametrised case each, real processes, no mocks): H5MD and zarr store appends
(``open_store(path, "a")``), zarr range writers with claims (``open_store(path, "r+",
frames=...)``), an MD run with a state-data CSV, a trajectory store and engine checkpoints
(``build_simulation(..., resume=True)``), and ``hyenamd train`` writing its output directory.
After every kill: everything committed before the kill is readable and bit-identical to what an
uninterrupted writer produces; the store/checkpoint reopens and the writer resumes; no lock or
claim of the dead writer blocks a new one; where the engine promises it (MD resume, training
resume on CPU) the resumed run ends bit-identical to an uninterrupted one.

Writers are children forked by one launcher (hyenamd and torch are imported once: a fresh
interpreter per kill would cost seconds); the jobs are in ``kill_jobs.py``. Kill points: after
``k`` committed units (frames, CSV rows, epochs; seeded) plus a seeded delay (up to 30 ms; up
to 200 ms inside a training epoch).
"""

from __future__ import annotations

import csv
import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from hyenamd.io import open_store

from .conftest import tree_hash

pytestmark = pytest.mark.slow

JOBS = pathlib.Path(__file__).with_name("kill_jobs.py")
N_ATOMS = 40  # kill_jobs.N_ATOMS

LAUNCHER = textwrap.dedent(
    """
    import importlib.util, json, os, signal, sys, traceback
    import torch
    torch.set_num_threads(1)
    spec = importlib.util.spec_from_file_location("kill_jobs", sys.argv[1])
    jobs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(jobs)
    # everything the writers import, once, before the forks (AdamW alone imports torch._dynamo: seconds)
    import hyenamd.cli, hyenamd.engine.config, hyenamd.io, hyenamd.workflows.train, torch._dynamo
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped automatically
    for line in sys.stdin:
        job = json.loads(line)
        pid = os.fork()
        if pid:
            print(pid, flush=True)
            continue
        code = 0
        try:
            err = os.open(job["kwargs"]["log"] + ".err", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(err, 1)
            os.dup2(err, 2)
            getattr(jobs, job["name"])(**job["kwargs"])
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    """
)


class Launcher:
    """One process that forks a writer per request (``start`` returns the writer's pid)."""

    def __init__(self) -> None:
        env = dict(os.environ, OMP_NUM_THREADS="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, str(JOBS)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True, env=env,
        )  # fmt: skip
        self.pids: list[int] = []

    def start(self, name: str, **kwargs) -> int:
        pathlib.Path(kwargs["log"]).unlink(missing_ok=True)
        self.proc.stdin.write(json.dumps({"name": name, "kwargs": kwargs}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"the launcher died (exit {self.proc.poll()})")
        self.pids.append(int(line))
        return int(line)

    def close(self) -> None:
        """Stop the launcher and SIGKILL any writer still running (a failed case leaves none behind)."""
        for pid in self.pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


@pytest.fixture(scope="module")
def launcher():
    lx = Launcher()
    yield lx
    lx.close()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_for(
    cond, what: str, pid: int | None = None, log: pathlib.Path | None = None, timeout: float = 120.0
):
    """Poll ``cond`` until true; fail early (with the writer's log) if the writer died first."""
    deadline = time.monotonic() + timeout
    while not cond():
        if pid is not None and not alive(pid) and not cond():
            detail = ""
            for p in (log, None if log is None else pathlib.Path(str(log) + ".err")):
                if p is not None and p.exists():
                    detail += f"\n--- {p.name}:\n{p.read_text()[-3000:]}"
            raise AssertionError(f"the writer exited before {what}{detail}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.003)


def kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not alive(pid), "the killed writer to vanish")


def lines(log: pathlib.Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def units(log: pathlib.Path) -> int:
    """Committed units the writer logged (lines that are plain integers)."""
    return sum(1 for ln in lines(log) if ln.lstrip("-").isdigit())


def run_to_end(launcher: Launcher, name: str, log: pathlib.Path, end: str = "closed", **kwargs) -> None:
    pid = launcher.start(name, log=str(log), **kwargs)
    wait_for(lambda: any(ln.startswith(end) for ln in lines(log)), f"{name} to finish", pid, log)
    wait_for(lambda: not alive(pid), f"{name} to exit")


# ---------------------------------------------------------------- stores: append (H5MD, zarr)
def _frame(step: int) -> np.ndarray:
    base = np.arange(N_ATOMS * 3, dtype=np.float32).reshape(N_ATOMS, 3) * np.float32(1e-3)
    return base + np.float32(step)


def check_store(path, *, slots: int | None = None) -> np.ndarray:
    """Open ``path`` read-only; every committed frame equals the writer's bitwise. Returns the mask."""
    with open_store(path) as st:
        committed = st.committed
        steps = st.steps
        for k in np.flatnonzero(committed):
            assert steps[k] == k, f"frame {k} holds step {steps[k]}"
            x = _frame(int(k))
            assert st.read(int(k), "position").tobytes() == x.tobytes(), f"frame {k} positions torn"
            assert st.read(int(k), "velocity").tobytes() == (-x).tobytes(), f"frame {k} velocities torn"
        if slots is not None:  # a pre-allocated store: its length ends at the last committed slot
            assert len(committed) <= slots
            committed = np.concatenate([committed, np.zeros(slots - len(committed), bool)])
        return committed


def sweep_append(launcher: Launcher, tmp_path: pathlib.Path, suffix: str, rng) -> str:
    from hyenamd import System

    path, log = tmp_path / f"store{suffix}", tmp_path / "writer.log"
    template = System(positions=torch.zeros(N_ATOMS, 3), species=torch.full((N_ATOMS,), 6))
    open_store(path, "w", system=template, fields=("position", "velocity"), observables=("potential_energy",),
               chunk_atoms=16).close()  # fmt: skip
    committed = 0
    for _ in range(3):
        pid = launcher.start("append_frames", path=str(path), log=str(log), frames=10**6, pace=0.001)
        k = int(rng.integers(1, 12))
        wait_for(lambda k=k: units(log) >= k, f"{k} frames", pid, log)
        time.sleep(float(rng.uniform(0, 0.03)))
        kill(pid)
        reported = units(log)
        mask = check_store(path)
        n = int(mask.sum())
        assert mask.all() and n >= committed + reported, "a reported or earlier frame was lost"
        committed = n
    run_to_end(launcher, "append_frames", log, path=str(path), frames=3)
    mask = check_store(path)
    assert mask.all() and len(mask) == committed + 3
    with open_store(path) as st:
        assert st.status == "complete"
    return f"{suffix}: 3 kills, {committed} frames survived, resumed to {committed + 3}"


# ---------------------------------------------------------------- stores: r+ range writers
def sweep_ranges(launcher: Launcher, tmp_path: pathlib.Path, rng) -> str:
    from hyenamd import System
    from hyenamd.io.schema import StoreError
    from hyenamd.io.zarr_store import complete_store, create_zarr_store

    path = tmp_path / "pre.zarr"
    template = System(positions=torch.zeros(N_ATOMS, 3), species=torch.full((N_ATOMS,), 6))
    create_zarr_store(path, template, 24, chunk_frames=2, fields=("position", "velocity"),
                      observables=("potential_energy",), chunk_atoms=16)  # fmt: skip
    logs = [tmp_path / f"range{i}.log" for i in range(3)]
    hold = tmp_path / "release"
    # writer 0 fills [0, 8) and stays open (a live claim); writers 1 and 2 are killed mid-range
    live = launcher.start("fill_range", path=str(path), log=str(logs[0]), start=0, stop=8, hold=str(hold))
    wait_for(lambda: units(logs[0]) >= 8, "writer 0's frames", live, logs[0])
    for i, (a, b) in ((1, (8, 16)), (2, (16, 24))):
        pid = launcher.start("fill_range", path=str(path), log=str(logs[i]), start=a, stop=b, pace=0.002)
        k = int(rng.integers(1, 6))
        wait_for(lambda k=k, i=i: units(logs[i]) >= k, f"{k} frames of writer {i}", pid, logs[i])
        time.sleep(float(rng.uniform(0, 0.01)))
        kill(pid)
    mask = check_store(path, slots=24)
    for i, (a, b) in ((1, (8, 16)), (2, (16, 24))):
        done = mask[a:b]
        assert done[: units(logs[i])].all(), f"writer {i} reported frames that are not committed"
        assert not done[int(done.sum()) :].any(), "holes inside a range"
    before = tree_hash(path)
    with pytest.raises(StoreError, match="overlap"):  # the live writer's claim still holds
        open_store(path, "r+", frames=range(6, 10))
    assert tree_hash(path) == before
    for i, (a, b) in ((1, (8, 16)), (2, (16, 24))):  # the dead writers' claims block nobody
        run_to_end(launcher, "fill_range", logs[i], path=str(path), start=a, stop=b)
    hold.write_text("")
    wait_for(lambda: "closed" in lines(logs[0]), "writer 0 to close", live, logs[0])
    wait_for(lambda: not alive(live), "writer 0 to exit")
    assert check_store(path, slots=24).all()
    assert complete_store(path) == 24
    leftovers = [p.name for p in (tmp_path / "pre.zarr.claims").iterdir() if not p.name.startswith(".")]
    assert leftovers == [], f"claims left behind: {leftovers}"
    return (
        f"r+: 2 writers killed mid-range ({int(mask.sum()) - 8} of their frames survived), resumed, completed"
    )


# ---------------------------------------------------------------- MD: CSV + trajectory + checkpoints
MD_STEPS, MD_CKPT = 400, 40


def md_config(d: pathlib.Path, **reporters) -> dict:
    rep = {"state_data": str(d / "md.csv"), "state_data_interval": 1, "progress": False,
           "trajectory": str(d / "traj.h5"), "trajectory_interval": 4,
           "checkpoint": str(d / "md.ckpt.safetensors"), "checkpoint_interval": MD_CKPT} | reporters  # fmt: skip
    integ = {"kind": "langevin_baoab", "dt_fs": 2.0, "temperature_k": 120.0, "friction_per_fs": 0.01,
             "seed": 3, "skin": 0.3}  # fmt: skip
    return {"n_steps": MD_STEPS, "integrator": integ, "reporters": rep}


def csv_rows(path: pathlib.Path) -> list[list[str]]:
    """The CSV's rows without the wall-clock column (ns_per_day); asserts no torn row."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header = rows[0]
    assert header[-1] == "ns_per_day"
    for r in rows[1:]:
        assert len(r) == len(header), f"torn CSV row {r}"
    return [r[:-1] for r in rows[1:]]


def store_frames(path: pathlib.Path) -> dict[int, bytes]:
    with open_store(path) as st:
        out = {}
        for k, step in enumerate(st.steps):
            parts = [np.asarray(st.read(k, f)).tobytes() for f in ("position", "velocity", "force")]
            out[int(step)] = b"".join(parts)
        return out


def sweep_md(launcher: Launcher, tmp_path: pathlib.Path, rng) -> str:
    from hyenamd.engine.checkpoint import read_checkpoint_metadata

    ref_dir, run_dir = tmp_path / "uninterrupted", tmp_path / "killed"
    ref_dir.mkdir()
    run_dir.mkdir()
    run_to_end(launcher, "md", ref_dir / "md.log", config=md_config(ref_dir))
    ref_rows, ref_frames = csv_rows(ref_dir / "md.csv"), store_frames(ref_dir / "traj.h5")
    assert len(ref_rows) == MD_STEPS + 1 and len(ref_frames) == MD_STEPS // 4 + 1
    log, cfg = run_dir / "md.log", md_config(run_dir)

    # killed before its first checkpoint: resume has nothing to continue from and refuses to
    # replace the partial outputs (nothing on disk changes); the user restarts with overwrite
    pid = launcher.start("md", config=cfg, log=str(log))
    wait_for(
        lambda: (run_dir / "md.csv").exists() and len(lines(run_dir / "md.csv")) > 5, "first rows", pid, log
    )
    kill(pid)
    early = not (run_dir / "md.ckpt.safetensors").exists()
    if early:
        before = tree_hash(run_dir / "md.csv", run_dir / "traj.h5")
        run_to_end(launcher, "md", log, end="error", config=cfg)
        assert "OutputExistsError" in lines(log)[-1] and "overwrite" in lines(log)[-1]
        assert tree_hash(run_dir / "md.csv", run_dir / "traj.h5") == before
    for name in ("md.csv", "traj.h5", "md.ckpt.safetensors"):  # what the error tells the user to do
        (run_dir / name).unlink(missing_ok=True)

    kills = 0
    for _ in range(3):
        pid = launcher.start("md", config=cfg, log=str(log))
        wait_for(lambda: any(ln.startswith("ready") for ln in lines(log)), "the MD run", pid, log)
        start = int(next(ln for ln in lines(log) if ln.startswith("ready")).split()[1])
        k = min(start + MD_CKPT + int(rng.integers(1, 80)), MD_STEPS)  # past a checkpoint of this process
        wait_for(lambda k=k: len(lines(run_dir / "md.csv")) > k + 1, f"step {k}", pid, log)
        time.sleep(float(rng.uniform(0, 0.03)))
        if not alive(pid):
            break
        kill(pid)
        kills += 1
        # committed outputs equal the uninterrupted run's, row for row and frame for frame
        rows = csv_rows(run_dir / "md.csv")
        assert rows == ref_rows[: len(rows)], "a CSV row differs from the uninterrupted run"
        frames = store_frames(run_dir / "traj.h5")
        assert all(frames[s] == ref_frames[s] for s in frames), "a trajectory frame differs"
        meta = read_checkpoint_metadata(run_dir / "md.ckpt.safetensors")
        assert meta["step"] % MD_CKPT == 0 and meta["step"] <= int(rows[-1][0])
    run_to_end(launcher, "md", log, config=cfg)
    assert csv_rows(run_dir / "md.csv") == ref_rows, "the resumed run's CSV differs (duplicates/holes?)"
    assert store_frames(run_dir / "traj.h5") == ref_frames, "the resumed trajectory differs"
    return (
        f"md: a kill before the first checkpoint ({'resume refused, nothing changed' if early else 'missed'}), "
        f"{kills} kills after one; resumed run bit-identical (CSV {len(ref_rows)} rows)"
    )


# ---------------------------------------------------------------- hyenamd train
TRAIN_EPOCHS = 6


def make_reference_store(path: pathlib.Path) -> None:
    """10 frames of a 6-atom H/O chain with energies and forces (a smooth made-up potential)."""
    from hyenamd import System

    rng = np.random.default_rng(0)
    base = np.zeros((6, 3))
    base[:, 0] = 1.4 * np.arange(6)
    species = torch.tensor([8, 1, 8, 1, 8, 1])
    system = System(torch.tensor(base), species)
    with open_store(path, "w", system=system, fields=("position", "force"), observables=("potential_energy",),
                    dtype="float64") as st:  # fmt: skip
        for k in range(10):
            x = base + rng.normal(0, 0.05, base.shape)
            st.append(
                x, step=k, time=float(k), forces=-(x - base), potential_energy=float(((x - base) ** 2).sum())
            )


def train_config(d: pathlib.Path, store: pathlib.Path, resume: bool) -> pathlib.Path:
    cfg = {
        "task": "force_field", "output_dir": str(d / "out"), "resume": resume, "torch_threads": 1,
        "data": {"stores": [str(store)], "n_segments": 5, "valid_fraction": 0.2},
        "model": {"species": [1, 8], "cutoff": 3.0, "n_scalar": 8, "n_vector": 2, "n_rbf": 4,
                  "pattern": ["local", "global"], "filter_order": 4, "filter_depth": 1, "filter_bands": 2,
                  "dtype": "float64"},
        "training": {"epochs": TRAIN_EPOCHS, "batch_size": 2, "lr": 2e-3, "warmup_steps": 2,
                     "patience": 0, "progress": False, "seed": 1},
    }  # fmt: skip
    path = d / "train.yaml"
    path.write_text(json.dumps(cfg))  # JSON is YAML
    return path


def state_epoch(path: pathlib.Path) -> int:
    from safetensors import safe_open

    if not path.exists():
        return 0
    try:
        with safe_open(str(path), framework="pt") as f:
            return int(json.loads(f.metadata()["state"])["epoch"])
    except Exception:  # being replaced right now
        return 0


def training_outputs(out: pathlib.Path) -> dict:
    from safetensors import safe_open
    from safetensors.torch import load_file

    res = {}
    for name in ("best.safetensors", "train_state.safetensors"):
        tensors = load_file(str(out / name))
        with safe_open(str(out / name), framework="pt") as f:
            meta = f.metadata()
        info = json.loads(meta.get("state") or meta["hyenamd"])
        info.pop("settings", None)
        res[name] = ({k: v.numpy().tobytes() for k, v in tensors.items()}, info)
    res["history.json"] = json.loads((out / "history.json").read_text())
    return res


def sweep_train(launcher: Launcher, tmp_path: pathlib.Path, rng) -> str:
    from hyenamd.surrogate import load_model

    store = tmp_path / "ref.h5"
    make_reference_store(store)
    ref_dir, run_dir = tmp_path / "uninterrupted", tmp_path / "killed"
    ref_dir.mkdir()
    run_dir.mkdir()
    run_to_end(
        launcher, "train", ref_dir / "train.log", end="rc", config=str(train_config(ref_dir, store, False))
    )
    assert lines(ref_dir / "train.log")[-1] == "rc 0", (ref_dir / "train.log.err").read_text()[-2000:]
    ref = training_outputs(ref_dir / "out")
    cfg, log, state = (
        train_config(run_dir, store, True),
        run_dir / "train.log",
        run_dir / "out/train_state.safetensors",
    )
    kills, epochs = 0, []
    for _ in range(3):
        e = state_epoch(state) + int(rng.integers(0, 2))
        if e >= TRAIN_EPOCHS:
            break
        pid = launcher.start("train", config=str(cfg), log=str(log))
        wait_for(lambda e=e: state_epoch(state) >= e, f"epoch {e}", pid, log)
        time.sleep(float(rng.uniform(0, 0.2)))
        if not alive(pid):
            break
        kill(pid)
        kills += 1
        epochs.append(state_epoch(state))
        # the best checkpoint written so far loads (never half a file)
        if (run_dir / "out/best.safetensors").exists():
            load_model(run_dir / "out/best.safetensors")
    run_to_end(launcher, "train", log, end="rc", config=str(cfg))
    assert lines(log)[-1] == "rc 0", (pathlib.Path(str(log) + ".err")).read_text()[-2000:]
    got = training_outputs(run_dir / "out")
    for name in ref:
        assert got[name] == ref[name], f"{name} of the resumed training differs from the uninterrupted run"
    return f"train: {kills} kills at epochs {epochs}; resumed outputs bit-identical"


# ---------------------------------------------------------------- the sweep
CASES = {
    "h5md append": lambda lx, d, rng: sweep_append(lx, d, ".h5", rng),
    "zarr append": lambda lx, d, rng: sweep_append(lx, d, ".zarr", rng),
    "zarr r+ range writers": sweep_ranges,
    "md run (csv, trajectory, checkpoints)": sweep_md,
    "hyenamd train": sweep_train,
}


@pytest.mark.parametrize("case", list(CASES))
def test_kill_9_sweep(launcher, tmp_path, case):
    rng = np.random.default_rng(list(CASES).index(case) + 1)
    print(CASES[case](launcher, tmp_path, rng))
