"""Small-system latency (issue #15): a 108-atom force-field MD step and one energy + forces call.

Preset S (``configs/surrogate/S.yaml``, species → argon, float32, randomly initialised), a
periodic 108-atom box at argon density (0.021 atoms/Å³), one torch thread. Measured with
``time.process_time`` (CPU seconds of this process; the machine is shared, so wall time is not
the model's cost), after a warm-up:

* ``call``: ``compute_forces(model, batch, neighbors=nb)`` with a prebuilt list and order;
  min and median over ``--calls`` calls;
* ``step``: ``Simulation(LangevinBAOAB(model, 4 fs, 90 K, 1/ps))`` (Verlet superset list with a
  1 Å skin, blow-up guard, no reporters), CPU seconds per step over ``--steps`` steps, min and
  median of ``--windows`` windows;
* ``parts`` (where a step's time goes): one more set of windows with the step's
  ``compute_forces`` and neighbour-list calls timed (min over windows of the per-step means),
  and the call split into the model's forward pass (on frozen parameters, as
  ``compute_forces`` runs it) and the rest (backward pass, bookkeeping);
* ``ops``: torch operators dispatched per call and per MD step (``TorchDispatchMode``; a
  load-independent count).

``--src DIR`` imports ``hyenamd`` from ``DIR`` instead of this tree (e.g. an older commit
exported with ``git archive REV src | tar -x -C /tmp/old``) for a before/after pair in one
session; the JSON records it. Writes ``benchmarks/results/small_step.json`` (``--name``).

    python benchmarks/small_step.py
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from common import ROOT, header, write_json


def _stats(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    return {"min_ms": 1e3 * xs[0], "median_ms": 1e3 * xs[len(xs) // 2]}


def _src_from_argv(argv: list[str] | None) -> str | None:
    args = sys.argv[1:] if argv is None else argv
    if "--src" in args and args.index("--src") + 1 < len(args):
        return args[args.index("--src") + 1]
    return None


def _count_ops(fn) -> int:
    """Torch operators dispatched while ``fn()`` runs."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Count.n += 1
            return func(*args, **(kwargs or {}))

    with Count():
        fn()
    return Count.n


def main(argv: list[str] | None = None) -> dict:
    src = _src_from_argv(argv)
    if src is not None:  # before anything imports hyenamd
        sys.path.insert(0, str(pathlib.Path(src).resolve()))
        for name in [m for m in sys.modules if m == "hyenamd" or m.startswith("hyenamd.")]:
            del sys.modules[name]
    from hyenamd import Batch
    from hyenamd.config import load_config
    from hyenamd.engine import LangevinBAOAB, Simulation
    from hyenamd.geometry import batch_neighbor_list
    from hyenamd.surrogate import GHyena, GHyenaConfig, compute_forces
    from hyenamd.surrogate.ordering import batch_order
    from hyenamd.workflows.demo import liquid_like_system

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--atoms", type=int, default=108)
    ap.add_argument("--calls", type=int, default=100)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--windows", type=int, default=5)
    ap.add_argument("--name", default="small_step")
    ap.add_argument("--src", default=None, help="import hyenamd from this directory (a src/ tree)")
    args = ap.parse_args(argv)
    import hyenamd

    torch.set_num_threads(1)
    payload = header(
        "python benchmarks/small_step.py " + " ".join(argv if argv is not None else sys.argv[1:])
    )
    payload["load_avg_start"] = os.getloadavg()
    payload["src"] = str(pathlib.Path(hyenamd.__file__).resolve().parents[1])
    cfg = load_config(
        ROOT / "configs" / "surrogate" / "S.yaml", GHyenaConfig, ["species=[18]", "dtype=float32"]
    )
    model = GHyena(cfg)
    system = liquid_like_system(args.atoms, 0.021, seed=0)
    batch = Batch.from_system(system)
    batch = batch.replace(order=batch_order(batch, model.cfg.ordering))
    nb = batch_neighbor_list(batch.positions, batch.cell, batch.pbc, batch.ptr, model.cutoff)
    for _ in range(5):
        compute_forces(model, batch, neighbors=nb)
    calls = []
    for _ in range(args.calls):
        t0 = time.process_time()
        compute_forces(model, batch, neighbors=nb)
        calls.append(time.process_time() - t0)
    sim = Simulation(LangevinBAOAB(model, 4.0, 90.0, 1.0), system, temperature_k=90.0, seed=0)
    sim.run(5)  # warm-up: first list build, order
    steps = []
    for _ in range(args.windows):
        t0 = time.process_time()
        sim.run(args.steps)
        steps.append((time.process_time() - t0) / args.steps)
    parts = _step_parts(sim, args.steps, args.windows)
    parts.update(_call_parts(model, batch, nb, args.calls))
    ops = {
        "per_call": _count_ops(lambda: compute_forces(model, batch, neighbors=nb)),
        "per_step": _count_ops(lambda: sim.run(10)) / 10,
    }
    payload.update(
        {
            "atoms": args.atoms,
            "preset": "S",
            "dtype": "float32",
            "call": _stats(calls),
            "step": _stats(steps),
            "parts_ms": parts,
            "ops": ops,
            "load_avg_end": os.getloadavg(),
        }
    )
    print(
        f"{args.atoms} atoms: call {payload['call']}, MD step {payload['step']}, parts {parts}, ops {ops}",
        flush=True,
    )
    write_json(args.name, payload)
    return payload


def _step_parts(sim, steps: int, windows: int) -> dict[str, float]:
    """Per-step CPU ms of ``compute_forces`` and of the neighbour list inside MD steps (min over windows)."""
    import hyenamd.surrogate.forces as forces_mod

    ev = sim.integrator.evaluator
    acc = {"compute_forces": 0.0, "neighbors": 0.0}
    inner_cf, inner_nb = forces_mod.compute_forces, ev.neighbors

    def cf(*a, **k):
        t0 = time.process_time()
        try:
            return inner_cf(*a, **k)
        finally:
            acc["compute_forces"] += time.process_time() - t0

    def nb(*a, **k):
        t0 = time.process_time()
        try:
            return inner_nb(*a, **k)
        finally:
            acc["neighbors"] += time.process_time() - t0

    forces_mod.compute_forces, ev.neighbors = cf, nb
    best = None
    try:
        for _ in range(windows):
            acc.update(compute_forces=0.0, neighbors=0.0)
            t0 = time.process_time()
            sim.run(steps)
            row = (
                (time.process_time() - t0) / steps,
                acc["compute_forces"] / steps,
                acc["neighbors"] / steps,
            )
            best = row if best is None or row[0] < best[0] else best
    finally:
        forces_mod.compute_forces = inner_cf
        del ev.neighbors
    total, cf_s, nb_s = best
    return {
        "step": 1e3 * total,
        "step_compute_forces": 1e3 * cf_s,
        "step_neighbors": 1e3 * nb_s,
        "step_integrator_rest": 1e3 * (total - cf_s - nb_s),
    }


def _call_parts(model, batch, nb, calls: int) -> dict[str, float]:
    """The call's forward pass alone (frozen parameters, gradients recorded) vs the whole call (min)."""
    from hyenamd.surrogate import compute_forces
    from hyenamd.surrogate.forces import _frozen_parameters

    pos = batch.positions.detach().requires_grad_(True)
    b = batch.replace(positions=pos)

    def forward():
        with torch.enable_grad(), _frozen_parameters(model):
            return model(b, neighbors=nb)

    fw, whole = [], []
    for _ in range(max(calls // 2, 10)):
        t0 = time.process_time()
        forward()
        fw.append(time.process_time() - t0)
        t0 = time.process_time()
        compute_forces(model, batch, neighbors=nb)
        whole.append(time.process_time() - t0)
    return {"call_forward": 1e3 * min(fw), "call_backward_rest": 1e3 * (min(whole) - min(fw))}


if __name__ == "__main__":
    main()
