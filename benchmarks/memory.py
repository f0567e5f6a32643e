"""Peak memory and CPU time of G-Hyena energy + forces per atom (issue #15), one fresh process per size.

Preset S (``configs/surrogate/S.yaml``, species → argon, float32) on a periodic liquid-like box at
``--density`` atoms/Å³ (0.021: argon; 0.1: water-like). Each (size, mode) runs in its own
subprocess (with a timeout): setup (model, system, neighbour list, order) first, then the peak
RSS is reset (``/proc/self/clear_refs``) and one call is measured:

* ``ef``: ``compute_forces`` (energy + forces); ``fwd``: ``model(batch)`` under ``torch.no_grad``.
* ``bytes_per_atom`` = (VmHWM during the call − RSS before it) / N: load-independent.
* ``cpu_us_per_atom``: ``time.process_time`` of the call / N (one thread), with the load average.
* ``--calls K`` (K > 1): K calls in a row, as MD makes them; ``bytes_per_atom`` is then the peak
  over all K, ``cpu_us_per_atom`` the first call and ``steady_cpu_us_per_atom`` the median of the
  later ones (the first call also pays for growing the heap and filling caches).
* ``kernel_s`` / ``minor_faults`` (per call with ``--calls``): the system part of the CPU time and
  the page faults (``getrusage``): what touching fresh memory cost, apart from the arithmetic.
* ``--cli-allocator``: the child calls :func:`hyenamd.allocator.tune_malloc` first, so the glibc
  thresholds follow the model's memory regime as under the ``hyenamd`` CLI
  (:mod:`hyenamd.surrogate.memory_policy`); ``regime`` records which one the call took.

``--src DIR`` runs the children against another source tree (e.g. the code before a change:
``git archive <commit> src | tar -x -C /tmp/base``), so a baseline and the current code are
measured in one run. Writes ``benchmarks/results/memory.json`` (``--name``) and, with ``--plot``,
``docs/figures/memory_bytes_per_atom.png``.

    python benchmarks/memory.py --sizes 10000 100000 --modes ef fwd [--src /tmp/base --name base]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from common import ROOT, header, save_figure, write_json

FIGURE = ROOT / "docs" / "figures" / "memory_bytes_per_atom.png"


def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def run_child(args: argparse.Namespace) -> dict:
    import torch

    from hyenamd import Batch
    from hyenamd.config import load_config
    from hyenamd.geometry import batch_neighbor_list
    from hyenamd.surrogate import GHyena, GHyenaConfig, compute_forces
    from hyenamd.surrogate.ordering import batch_order
    from hyenamd.workflows.demo import liquid_like_system

    torch.set_num_threads(1)
    if args.cli_allocator:
        from hyenamd.allocator import tune_malloc

        tune_malloc()
    n = args.child
    cfg = load_config(
        ROOT / "configs" / "surrogate" / "S.yaml", GHyenaConfig, ["species=[18]", "dtype=float32", *args.set]
    )
    model = GHyena(cfg)
    batch = Batch.from_system(liquid_like_system(n, args.density, seed=0))
    nb = batch_neighbor_list(batch.positions, batch.cell, batch.pbc, batch.ptr, model.cutoff)
    batch = batch.replace(order=batch_order(batch, model.cfg.ordering))
    if args.warmup:  # a small call first: one-off allocations (FFT plans, thread pools) out of the way
        small = Batch.from_system(liquid_like_system(500, args.density, seed=1))
        compute_forces(model, small.replace(order=batch_order(small, model.cfg.ordering)))
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak RSS (VmHWM) to the current RSS
    before = _rss_kb("VmRSS")
    cpus, kernel, faults = [], [], []
    for _ in range(args.calls):
        t0, k0, f0 = (
            time.process_time(),
            os.times().system,
            resource.getrusage(resource.RUSAGE_SELF).ru_minflt,
        )
        if args.mode == "ef":
            out = compute_forces(model, batch, neighbors=nb)
            check = float(out["forces"].abs().sum())
        else:
            with torch.no_grad():
                out = model(batch, neighbors=nb)
            check = float(out["energy"].sum())
        cpus.append(time.process_time() - t0)
        kernel.append(os.times().system - k0)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
    cpu = cpus[0]
    peak = _rss_kb("VmHWM")
    extra = {}
    if args.calls > 1:
        later = sorted(cpus[1:])
        extra = {
            "calls": args.calls,
            "cpu_s_calls": cpus,
            "kernel_s_calls": kernel,
            "minor_faults_calls": faults,
            "steady_cpu_us_per_atom": 1e6 * later[len(later) // 2] / n,
        }
    if args.mode == "ef":
        extra["regime"] = _regime(model, n, int(nb.i.shape[0]))
    extra["malloc_env"] = {k: v for k, v in os.environ.items() if k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    return extra | {
        "n_atoms": n,
        "mode": args.mode,
        "pairs": int(nb.i.shape[0]),
        "rss_before_mb": before / 1024,
        "peak_mb": peak / 1024,
        "bytes_per_atom": (peak - before) * 1024 / n,
        "cpu_s": cpu,
        "cpu_us_per_atom": 1e6 * cpu / n,
        "kernel_s": kernel[0],  # of cpu_s: system time, mostly page faults of fresh memory
        "minor_faults": faults[0],
        "checksum": check,
        "energy": float(out["energy"].sum()),
    }


def _regime(model, n_atoms: int, n_pairs: int) -> str:
    """Which memory regime the model's ``checkpoint_atoms`` picks for this call (now)."""
    try:
        from hyenamd.surrogate.memory_policy import config_regime
    except ImportError:  # an older tree (--src): its fixed checkpoint_atoms rule
        return "lean" if 0 <= model.cfg.checkpoint_atoms <= n_atoms else "chunked"
    return config_regime(model.cfg, n_atoms, n_pairs)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--modes", nargs="+", default=["ef", "fwd"], choices=["ef", "fwd"])
    ap.add_argument("--density", type=float, default=0.021)
    ap.add_argument("--set", nargs="*", default=[], help="GHyenaConfig overrides (key=value)")
    ap.add_argument("--src", default=None, help="source tree to import hyenamd from (default: this one)")
    ap.add_argument("--name", default="memory")
    ap.add_argument("--timeout", type=float, default=1200.0)
    ap.add_argument("--warmup", action="store_true")
    ap.add_argument(
        "--calls", type=int, default=1, help="calls in a row (steady-state CPU from the later ones)"
    )
    ap.add_argument(
        "--cli-allocator", action="store_true", help="glibc thresholds as the hyenamd CLI sets them"
    )
    ap.add_argument("--plot", action="store_true")
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="ef", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child is not None:
        print(json.dumps(run_child(args)), flush=True)
        return {}
    payload = header("python benchmarks/memory.py " + " ".join(argv if argv is not None else sys.argv[1:]))
    payload.update(
        {"density": args.density, "preset": "S", "overrides": args.set, "src": args.src or "this tree"}
    )
    payload["load_avg_start"] = os.getloadavg()
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(pathlib.Path(args.src or ROOT / "src")))
    rows, failed = [], []
    for n in args.sizes:
        for mode in args.modes:
            cmd = [
                sys.executable,
                __file__,
                "--child",
                str(n),
                "--mode",
                mode,
                "--density",
                str(args.density),
            ]
            cmd += ["--set", *args.set] if args.set else []
            cmd += ["--warmup"] if args.warmup else []
            cmd += ["--calls", str(args.calls)] + (["--cli-allocator"] if args.cli_allocator else [])
            try:
                res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
            except subprocess.TimeoutExpired:
                failed.append({"n_atoms": n, "mode": mode, "why": f"timeout {args.timeout} s"})
                continue
            if res.returncode != 0:
                failed.append({"n_atoms": n, "mode": mode, "why": res.stderr.strip().splitlines()[-1:]})
                continue
            row = json.loads(res.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(json.dumps(row), flush=True)
    payload["rows"], payload["failed"] = rows, failed
    payload["alpha"] = {mode: fit_alpha(rows, mode) for mode in args.modes}
    payload["load_avg_end"] = os.getloadavg()
    write_json(args.name, payload)
    if args.plot:
        plot(args.name)
    return payload


def fit_alpha(rows: list[dict], mode: str = "ef") -> dict | None:
    """Least-squares exponent α of CPU time ∝ N^α over the rows of ``mode`` (None below 2 sizes):
    of the first call, and with ``--calls`` > 1 also of the steady state (``alpha_steady``)."""
    import numpy as np

    rows = sorted((r for r in rows if r["mode"] == mode), key=lambda r: r["n_atoms"])
    if len(rows) < 2:
        return None
    n = np.log([float(r["n_atoms"]) for r in rows])
    out = {"alpha": float(np.polyfit(n, np.log([r["cpu_s"] for r in rows]), 1)[0])}
    if all("steady_cpu_us_per_atom" in r for r in rows):
        steady = [r["steady_cpu_us_per_atom"] * r["n_atoms"] for r in rows]
        out["alpha_steady"] = float(np.polyfit(n, np.log(steady), 1)[0])
    return out | {"sizes": [int(r["n_atoms"]) for r in rows]}


#: legend names of the result files the figure shows (others: the file name)
LABELS = {
    "memory_base": "before #15",
    "memory_alpha": "lean regime (checkpoint_atoms=20000)",
    "memory_fast": "auto: fast regime",
    "memory_fast_sweep_cf": "fast regime, channel-first global block",
    "memory_lean_sweep_cf": "lean regime, channel-first global block",
}


def plot(*names: str) -> pathlib.Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax_t) = plt.subplots(1, 2, figsize=(11, 4))
    for name in names:
        data = json.loads((ROOT / "benchmarks" / "results" / f"{name}.json").read_text())
        for mode in ("ef", "fwd"):
            rows = sorted((r for r in data["rows"] if r["mode"] == mode), key=lambda r: r["n_atoms"])
            if rows:
                ax.plot(
                    [r["n_atoms"] for r in rows],
                    [r["bytes_per_atom"] / 1024 for r in rows],
                    "o-",
                    label=f"{LABELS.get(name, name)}: {'energy+forces' if mode == 'ef' else 'forward'}",
                )
                fit = fit_alpha(rows, mode)
                ax_t.plot(
                    [r["n_atoms"] for r in rows],
                    [r["cpu_us_per_atom"] for r in rows],
                    "o-",
                    label=f"{LABELS.get(name, name)}: {mode}, first call"
                    + (f", α = {fit['alpha']:.2f}" if fit else ""),
                )
                if fit and "alpha_steady" in fit:
                    ax_t.plot(
                        [r["n_atoms"] for r in rows],
                        [r["steady_cpu_us_per_atom"] for r in rows],
                        "s--",
                        label=f"{LABELS.get(name, name)}: {mode}, later calls, α = {fit['alpha_steady']:.2f}",
                    )
    for a, goal, ylabel, title in (
        (
            ax,
            "6 KB/atom",
            "peak RSS above baseline, KB/atom",
            "G-Hyena preset S, argon density, float32, 1 thread",
        ),
        (ax_t, "40 µs/atom", "CPU µs per atom (one thread)", "time per atom; α: CPU time ∝ N^α"),
    ):
        a.axhline(float(goal.split()[0]), color="grey", ls="--", lw=0.8, label=f"goal E+F ({goal})")
        a.set_xscale("log")
        a.set_xlabel("atoms")
        a.set_ylabel(ylabel)
        a.set_title(title)
        a.legend(fontsize=7)
    return save_figure(fig, FIGURE)


if __name__ == "__main__":
    main()
