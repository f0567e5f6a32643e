"""ASE MD with ``HyenaCalculator(compile=...)`` on vs off: ms per step of a 108-atom argon run.

Preset S (``configs/surrogate/S.yaml``, species → argon, float32 as the force-field workflow
trains it, randomly initialised), a periodic 108-atom box at argon density (0.021 atoms/Å³)
with Maxwell-Boltzmann momenta at 90 K, ASE's ``VelocityVerlet`` (4 fs), the calculator's
defaults (0.5 Å skin, stress on), one torch thread. Two ``Atoms`` copies run side by side in
one process: one with the eager calculator, one with ``compile=True`` (``--backend``), their
windows interleaved (eager, compiled, eager, ...) so both see the same machine load.

Recorded: the compiled calculator's first call (compile) in wall and process CPU seconds
(inductor's C++ builds run in this process with ``TORCHINDUCTOR_COMPILE_THREADS=1``; ``--cold``
uses a fresh, empty inductor cache directory so the figure is a first compile, not a cache
hit), energy and forces of the two calculators on the same atoms, then per ``--windows``
window of ``--steps`` steps the CPU ms per step (``time.process_time``: load-independent up to
cache effects) and wall ms per step, min and median over windows; the compiled wrapper's
``fallback_reason``, compiled calls, graphs compiled (``torch._dynamo`` counter) and Verlet
list rebuilds; and where a step's CPU time goes (``parts_ms``, per step over all windows):
``calculate`` (the whole ``HyenaCalculator.calculate``), of it ``evaluate`` (the model call,
``compute_forces`` and the results as numpy), the rest being ASE's integrator and property
machinery. ``--no-stress``: calculators without the stress (ASE's Verlet needs forces only;
with it, every call also differentiates the strain). Writes ``benchmarks/results/ase_compile.json`` (``--name``).

    TORCHINDUCTOR_COMPILE_THREADS=1 python benchmarks/ase_compile.py --cold
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from common import ROOT, header, write_json


def _stats(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    return {"min_ms": 1e3 * xs[0], "median_ms": 1e3 * xs[len(xs) // 2]}


def _timed(calc, acc: dict[str, float]) -> None:
    """Accumulate the CPU seconds of ``calc.calculate`` and ``calc.runner.evaluate`` in ``acc``."""
    calculate, evaluate = calc.calculate, calc.runner.evaluate

    def timed_calculate(*a, **k):
        c0 = time.process_time()
        try:
            return calculate(*a, **k)
        finally:
            acc["calculate"] += time.process_time() - c0

    def timed_evaluate(*a, **k):
        c0 = time.process_time()
        try:
            return evaluate(*a, **k)
        finally:
            acc["evaluate"] += time.process_time() - c0

    calc.calculate, calc.runner.evaluate = timed_calculate, timed_evaluate


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--atoms", type=int, default=108)
    ap.add_argument("--steps", type=int, default=20, help="MD steps per window")
    ap.add_argument("--windows", type=int, default=8, help="windows per calculator (interleaved)")
    ap.add_argument("--backend", default="inductor", help="the compile value (a torch.compile backend)")
    ap.add_argument("--no-stress", action="store_true", help="calculators with stress=False")
    ap.add_argument("--cold", action="store_true", help="a fresh, empty inductor cache directory")
    ap.add_argument("--name", default="ase_compile")
    ap.add_argument("--out", default=None, help="directory of the JSON (default benchmarks/results)")
    args = ap.parse_args(argv)
    os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")
    cache = None
    if args.cold:
        cache = tempfile.mkdtemp(prefix="hyenamd-inductor-")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache
    import numpy as np
    import torch
    from ase import units
    from ase.md.velocitydistribution import thermalize_momenta
    from ase.md.verlet import VelocityVerlet

    from hyenamd.config import load_config
    from hyenamd.engine import HyenaCalculator
    from hyenamd.surrogate import GHyena, GHyenaConfig
    from hyenamd.workflows.demo import liquid_like_system

    torch.set_num_threads(1)
    payload = header(
        "python benchmarks/ase_compile.py " + " ".join(argv if argv is not None else sys.argv[1:])
    )
    payload["load_avg_start"] = os.getloadavg()
    payload["torch_threads"] = torch.get_num_threads()
    payload["inductor_compile_threads"] = os.environ.get("TORCHINDUCTOR_COMPILE_THREADS")
    payload["inductor_cache"] = "fresh empty directory" if args.cold else "default (may hold earlier kernels)"
    cfg = load_config(
        ROOT / "configs" / "surrogate" / "S.yaml", GHyenaConfig, ["species=[18]", "dtype=float32"]
    )
    model = GHyena(cfg)
    base = liquid_like_system(args.atoms, 0.021, seed=0).to_ase()
    thermalize_momenta(base, temperature_K=90.0, rng=np.random.default_rng(0))
    eager, comp = base.copy(), base.copy()
    stress = not args.no_stress
    eager.calc = HyenaCalculator(model, stress=stress)
    comp.calc = HyenaCalculator(model, stress=stress, compile=args.backend)
    wrapper = comp.calc.compiled

    t0, c0 = time.perf_counter(), time.process_time()
    f_comp = comp.get_forces()
    compile_wall, compile_cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"first compiled call (compile): {compile_wall:.1f} s wall, {compile_cpu:.1f} s CPU", flush=True)
    f_eager = eager.get_forces()
    e_diff = abs(comp.get_potential_energy() - eager.get_potential_energy())
    f_diff = float(np.abs(f_comp - f_eager).max())
    f_scale = float(np.abs(f_eager).max())

    md = {"eager": VelocityVerlet(eager, 4.0 * units.fs), "compiled": VelocityVerlet(comp, 4.0 * units.fs)}
    for dyn in md.values():
        dyn.run(5)  # warm-up: list, order, allocator
    cpu: dict[str, list[float]] = {"eager": [], "compiled": []}
    wall: dict[str, list[float]] = {"eager": [], "compiled": []}
    parts = {name: {"calculate": 0.0, "evaluate": 0.0} for name in md}
    _timed(eager.calc, parts["eager"])
    _timed(comp.calc, parts["compiled"])
    graphs_before = int(torch._dynamo.utils.counters["stats"]["unique_graphs"])
    for w in range(args.windows):
        for name in ("eager", "compiled") if w % 2 == 0 else ("compiled", "eager"):
            t0, c0 = time.perf_counter(), time.process_time()
            md[name].run(args.steps)
            cpu[name].append((time.process_time() - c0) / args.steps)
            wall[name].append((time.perf_counter() - t0) / args.steps)
    graphs_during = int(torch._dynamo.utils.counters["stats"]["unique_graphs"]) - graphs_before
    payload.update(
        {
            "atoms": args.atoms,
            "preset": "S",
            "dtype": "float32",
            "md": "ase.md.verlet.VelocityVerlet, 4 fs, 90 K start, HyenaCalculator defaults (skin 0.5 A, stress)",
            "backend": args.backend,
            "steps_per_window": args.steps,
            "windows": args.windows,
            "stress": stress,
            "compile_wall_s": compile_wall,
            "compile_cpu_s": compile_cpu,
            "energy_abs_diff_ev": e_diff,
            "forces_max_abs_diff": f_diff,
            "forces_max_abs": f_scale,
            "cpu_step": {k: _stats(v) for k, v in cpu.items()},
            "wall_step": {k: _stats(v) for k, v in wall.items()},
            "parts_ms": {
                name: {
                    "step": 1e3 * sum(cpu[name]) / args.windows,
                    "calculate": 1e3 * v["calculate"] / (args.windows * args.steps),
                    "evaluate": 1e3 * v["evaluate"] / (args.windows * args.steps),
                }
                for name, v in parts.items()
            },
            "speedup_cpu_median": _stats(cpu["eager"])["median_ms"] / _stats(cpu["compiled"])["median_ms"],
            "fallback_reason": wrapper.fallback_reason,
            "n_compiled_calls": wrapper.n_compiled_calls,
            "n_calls": comp.calc.runner.n_calls,
            "graphs_compiled_during_windows": graphs_during,
            "list_builds": {
                "eager": eager.calc.runner.neighbor_list.n_builds,
                "compiled": comp.calc.runner.neighbor_list.n_builds,
            },
            "positions_max_abs_diff_end": float(np.abs(comp.positions - eager.positions).max()),
            "load_avg_end": os.getloadavg(),
        }
    )
    print(
        f"{args.atoms} atoms, ASE VelocityVerlet: CPU ms/step eager {payload['cpu_step']['eager']}, "
        f"compiled {payload['cpu_step']['compiled']} (x{payload['speedup_cpu_median']:.2f}); "
        f"wall {payload['wall_step']}; parts {payload['parts_ms']}; forces max diff {f_diff:.1e} of {f_scale:.2f} eV/A; "
        f"fallback {wrapper.fallback_reason}, compiled calls {wrapper.n_compiled_calls}/"
        f"{comp.calc.runner.n_calls}, graphs during windows {graphs_during}",
        flush=True,
    )
    write_json(args.name, payload, None if args.out is None else pathlib.Path(args.out))
    if cache is not None:
        import shutil

        shutil.rmtree(cache, ignore_errors=True)
    return payload


if __name__ == "__main__":
    main()
