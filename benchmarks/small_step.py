"""Small-system latency (issue #15): a 108-atom force-field MD step and one energy + forces call.

Preset S (``configs/surrogate/S.yaml``, species → argon, float32, randomly initialised), a
periodic 108-atom box at argon density (0.021 atoms/Å³), one torch thread. Measured with
``time.process_time`` (CPU seconds of this process; the machine is shared, so wall time is not
the model's cost), after a warm-up:

* ``call``: ``compute_forces(model, batch, neighbors=nb)`` with a prebuilt list and order;
  min and median over ``--calls`` calls;
* ``step``: ``Simulation(LangevinBAOAB(model, 4 fs, 90 K, 1/ps))`` (Verlet superset list with a
  1 Å skin, blow-up guard, no reporters), CPU seconds per step over ``--steps`` steps, min and
  median of ``--windows`` windows.

Writes ``benchmarks/results/small_step.json`` (``--name``).

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


def main(argv: list[str] | None = None) -> dict:
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
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    payload = header(
        "python benchmarks/small_step.py " + " ".join(argv if argv is not None else sys.argv[1:])
    )
    payload["load_avg_start"] = os.getloadavg()
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
    payload.update(
        {
            "atoms": args.atoms,
            "preset": "S",
            "dtype": "float32",
            "call": _stats(calls),
            "step": _stats(steps),
            "load_avg_end": os.getloadavg(),
        }
    )
    print(f"{args.atoms} atoms: call {payload['call']}, MD step {payload['step']}", flush=True)
    write_json(args.name, payload)
    return payload


if __name__ == "__main__":
    main()
