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

``--compile`` adds the compiled path (:class:`hyenamd.surrogate.compiled.CompiledGHyena`,
inductor, defaults) in the same process, interleaved window by window with the eager model for
an A/B under the same load (key ``compiled``): the first call's compile time (wall and this
process's CPU; inductor builds kernels in worker processes, so wall is the cost), energy and
forces against eager, call and MD-step min/median, outermost aten calls per step (profiler;
both paths), and a 200-step MD run (``--md-steps``; 300 K, 0.3 Å skin, so that the list is
rebuilt) with its rebuilds and the graphs compiled during it (``torch._dynamo`` counters: 0
means no recompile). ``--no-compact`` passes the superset list.

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
    ap.add_argument("--compile", action="store_true", help="also measure CompiledGHyena (A/B, same process)")
    ap.add_argument("--no-compact", action="store_true", help="compiled path: pass the superset list")
    ap.add_argument("--md-steps", type=int, default=200, help="compiled path: steps of the recompile check")
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
    if args.compile:
        payload["compiled"] = _compiled(model, system, batch, nb, sim, args)
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
    if args.compile:
        c = payload["compiled"]
        print(
            f"compiled: compile {c['compile_wall_s']:.1f} s wall, call {c['call']}, MD step {c['step']}, "
            f"eager in the same windows: call {c['eager_call']}, step {c['eager_step']}; "
            f"{c['md_run']}, aten calls/step {c['aten_calls_per_step']} (eager "
            f"{c['eager_aten_calls_per_step']}), forces rel. diff {c['forces_max_rel_diff']:.1e}",
            flush=True,
        )
    write_json(args.name, payload)
    return payload


def _count_aten_calls(fn) -> int:
    """Outermost ``aten::`` calls while ``fn()`` runs (torch.profiler; an op called by another op
    is not counted). Unlike :func:`_count_ops` it sees compiled code as it runs: the generated
    C++ kernels are not aten calls, the matmuls and fallbacks they call are (a dispatch mode
    would make dynamo run the function uncompiled)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    n = 0
    for ev in prof.events():
        if not ev.name.startswith("aten::"):
            continue
        parent = ev.cpu_parent
        while parent is not None and not parent.name.startswith("aten::"):
            parent = parent.cpu_parent
        n += parent is None
    return n


def _graphs() -> int:
    """Graphs torch.compile has compiled so far in this process (dynamo's counter)."""
    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])


def _compiled(model, system, batch, nb, sim, args) -> dict:
    """The compiled path against the eager model, interleaved window by window (see module doc)."""
    from hyenamd.engine import LangevinBAOAB, Simulation
    from hyenamd.surrogate import compute_forces
    from hyenamd.surrogate.compiled import CompiledGHyena

    pot = CompiledGHyena(model, compact=not args.no_compact)
    g0 = _graphs()
    t0, c0 = time.perf_counter(), time.process_time()
    out = compute_forces(pot, batch, neighbors=nb)  # compiles the forward and backward graphs
    compile_wall, compile_cpu = time.perf_counter() - t0, time.process_time() - c0
    ref = compute_forces(model, batch, neighbors=nb)
    res = {
        "compact": not args.no_compact,
        "compile_wall_s": compile_wall,
        "compile_cpu_s_this_process": compile_cpu,
        "graphs_first_call": _graphs() - g0,
        "fallback_reason": pot.fallback_reason,
        "energy_abs_diff_eV": float((out["energy"] - ref["energy"]).abs().max()),
        "forces_max_rel_diff": float((out["forces"] - ref["forces"]).abs().max() / ref["forces"].abs().max()),
    }
    calls = {"eager": [], "compiled": []}
    for _ in range(args.windows):
        for key, m in (("eager", model), ("compiled", pot)):
            for _ in range(max(args.calls // args.windows, 5)):
                t0 = time.process_time()
                compute_forces(m, batch, neighbors=nb)
                calls[key].append(time.process_time() - t0)
    sim_c = Simulation(LangevinBAOAB(pot, 4.0, 90.0, 1.0), system, temperature_k=90.0, seed=0)
    sim_c.run(5)  # warm-up: first list build, order, the MD batch's first call
    # the recompile check: a hotter run with a thin skin, so that the list is rebuilt often
    # (at 90 K and a 1 Å skin the atoms of this box stay within 0.3 Å over 200 steps)
    sim_r = Simulation(LangevinBAOAB(pot, 4.0, 300.0, 1.0, skin=0.3), system, temperature_k=300.0, seed=1)
    ev = sim_r.integrator.evaluator
    g0, b0, n0 = _graphs(), ev.n_builds, pot.n_compiled_calls
    t0 = time.process_time()
    sim_r.run(args.md_steps)
    md_cpu = time.process_time() - t0
    res["md_run"] = {
        "temperature_k": 300.0,
        "skin_A": 0.3,
        "steps": args.md_steps,
        "list_rebuilds": ev.n_builds - b0,
        "graphs_compiled_during_run": _graphs() - g0,
        "compiled_calls": pot.n_compiled_calls - n0,
        "capacity": pot.capacity,
        "fallback_reason": pot.fallback_reason,
        "cpu_ms_per_step": 1e3 * md_cpu / args.md_steps,
    }
    steps = {"eager": [], "compiled": []}
    for _ in range(args.windows):
        for key, sm in (("eager", sim), ("compiled", sim_c)):
            t0 = time.process_time()
            sm.run(args.steps)
            steps[key].append((time.process_time() - t0) / args.steps)
    res.update(
        {
            "call": _stats(calls["compiled"]),
            "eager_call": _stats(calls["eager"]),
            "step": _stats(steps["compiled"]),
            "eager_step": _stats(steps["eager"]),
            "aten_calls_per_step": _count_aten_calls(lambda: sim_c.run(10)) / 10,
            "eager_aten_calls_per_step": _count_aten_calls(lambda: sim.run(10)) / 10,
            "graphs_total": _graphs(),
        }
    )
    return res


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
