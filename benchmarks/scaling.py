"""Scaling of one G-Hyena global block against equivariant attention, N = 2⁸ … 2²⁰ (paper Fig. 5), CPU.

Reuses the measurement machinery of ``benchmarks/global_block.py`` unchanged (fresh subprocess
per (block, N); forward and forward+backward wall time = min over repeats; peak memory = the
``ru_maxrss`` delta of the call; attention modes dropped once their predicted memory exceeds
``--max-gb`` or their predicted time exceeds ``--max-seconds``, and the stopping point recorded).
On top of it this script adds:

* the speed-up and memory ratio of the global block at EVERY N where both ran
  (vs chunked attention for time, vs naive attention for memory, and both ways for each mode);
* log-log fits ``t ∝ N^α`` (and memory) per block over ``N ≥ --fit-from``;
* a log-log plot with the fitted exponents in the legend.

Usage::

    python benchmarks/scaling.py                 # recorded run: N = 2^8 … 2^20 (GPU: not in this task)
    python benchmarks/scaling.py --quick         # seconds: smoke run for CI

Writes ``benchmarks/results/scaling.json`` and ``docs/figures/scaling.png``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import global_block as gb
from common import FIGURES, RESULTS, header, save_figure, write_json

LABELS = {
    "global": "G-Hyena global block",
    "attention_naive": "attention, naive",
    "attention_chunked": "attention, chunked",
}
METRICS = ("time_s_forward", "time_s_forward_backward", "peak_mb_forward", "peak_mb_forward_backward")


def fit_exponent(n: list[int], y: list[float]) -> dict[str, float] | None:
    """Least-squares slope of log y on log N (``y ∝ N^α``); None with fewer than two points."""
    pts = [(a, b) for a, b in zip(n, y) if b > 0]
    if len(pts) < 2:
        return None
    x, z = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
    alpha, logc = np.polyfit(x, z, 1)
    return {"alpha": float(alpha), "prefactor": float(np.exp(logc)), "n_points": len(pts)}


def analyse(results: list[dict], fit_from: int) -> dict[str, object]:
    ok = {(r["mode"], r["n_atoms"]): r for r in results if "error" not in r}
    fits: dict[str, dict] = {}
    for mode in gb.MODES:
        rs = sorted(
            (r for (m, _), r in ok.items() if m == mode and r["n_atoms"] >= fit_from),
            key=lambda r: r["n_atoms"],
        )
        fits[mode] = {k: fit_exponent([r["n_atoms"] for r in rs], [r[k] for r in rs]) for k in METRICS}
    ratios = []
    for n in sorted({n for (_, n) in ok}):
        g = ok.get(("global", n))
        if g is None:
            continue
        row: dict[str, object] = {"n_atoms": n}
        for mode in gb.MODES[1:]:
            a = ok.get((mode, n))
            if a is None:
                continue
            short = mode.split("_")[1]
            for key in ("forward", "forward_backward"):
                row[f"speedup_{key}_vs_{short}"] = a[f"time_s_{key}"] / g[f"time_s_{key}"]
                row[f"memory_ratio_{key}_vs_{short}"] = a[f"peak_mb_{key}"] / max(g[f"peak_mb_{key}"], 1e-3)
        if len(row) > 1:
            ratios.append(row)
    largest = {m: max((n for (mm, n) in ok if mm == m), default=None) for m in gb.MODES}
    return {"fits": fits, "ratios": ratios, "largest_n": largest}


def merge(old: dict, new: dict) -> dict:
    """Results of two runs: new (block, N) points replace old ones; a block's stop is kept only beyond its last N."""
    keys = {(r["mode"], r["n_atoms"]) for r in new["results"]}
    results = [r for r in old["results"] if (r["mode"], r["n_atoms"]) not in keys] + new["results"]
    results.sort(key=lambda r: (r["n_atoms"], r["mode"]))
    ran = {}
    for r in results:
        if "error" not in r:
            ran[r["mode"]] = max(ran.get(r["mode"], 0), r["n_atoms"])
    stopped = {**old.get("stopped", {}), **new.get("stopped", {})}
    stopped = {m: s for m, s in stopped.items() if s["n_atoms"] > ran.get(m, 0)}
    commands = [*old.get("commands", [old.get("command")]), new.get("command")]
    return {
        **new,
        "results": results,
        "stopped": stopped,
        "commands": commands,
        "summary": gb.summarize(results),
    }


def plot(data: dict, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    colours = {"global": "C0", "attention_naive": "C3", "attention_chunked": "C1"}
    panels = ((axes[0], "time_s", "time per call (s)"), (axes[1], "peak_mb", "peak extra memory (MB)"))
    for ax, prefix, ylabel in panels:
        for mode in gb.MODES:
            rs = sorted(
                (r for r in data["results"] if r["mode"] == mode and "error" not in r),
                key=lambda r: r["n_atoms"],
            )
            if not rs:
                continue
            n = np.array([r["n_atoms"] for r in rs])
            for key, style in (("forward", "o-"), ("forward_backward", "s--")):
                y = np.array([max(r[f"{prefix}_{key}"], 0.1 if prefix == "peak_mb" else 0) for r in rs])
                fit = data["analysis"]["fits"][mode][f"{prefix}_{key}"]
                lab = f"{LABELS[mode]}, {key.replace('_', '+')}"
                if fit:
                    lab += f"  (N^{fit['alpha']:.2f})"
                ax.loglog(n, y, style, color=colours[mode], label=lab, ms=4)
        for mode, stop in data["stopped"].items():
            ax.axvline(stop["n_atoms"], color=colours[mode], lw=0.8, alpha=0.5)
        ax.set_xlabel("tokens N")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    st = data["settings"]
    fig.suptitle(
        f"one block, F={st['n_scalar']}, C={st['n_vector']}, float32, CPU ({st['threads']} thread), "
        f"fits over N ≥ {data['config']['fit_from']}; vertical lines: where attention stopped"
    )
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="seconds-long smoke run in one process")
    p.add_argument("--max-log2", type=int, default=20, help="largest N = 2^this")
    p.add_argument("--log2-step", type=int, default=1, help="N = 2^8, 2^(8+step), ... (2: every 4×)")
    p.add_argument("--f", type=int, default=64, help="scalar channels F (as benchmarks/global_block.py)")
    p.add_argument("--c", type=int, default=16, help="vector channels C")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--budget", type=float, default=2.0, help="seconds of repeats per measurement")
    p.add_argument("--max-gb", type=float, default=8.0)
    p.add_argument("--max-seconds", type=float, default=90.0)
    p.add_argument("--sizes", default=None, help="comma-separated N (overrides --max-log2/--log2-step)")
    p.add_argument(
        "--merge",
        action="store_true",
        help="add to the existing JSON (same (block, N) replaced), e.g. bigger N",
    )
    p.add_argument("--fit-from", type=int, default=4096, help="fit exponents over N >= this")
    p.add_argument("--out-dir", type=pathlib.Path, default=RESULTS)
    p.add_argument("--fig-dir", type=pathlib.Path, default=FIGURES)
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.fit_from = "64,128", 64
        args.f, args.c, args.budget = 16, 4, 0.05
    elif args.sizes is None:
        args.sizes = ",".join(str(2**k) for k in range(8, args.max_log2 + 1, args.log2_step))
    name = "scaling_quick" if args.quick else "scaling"
    data = gb.run(args)  # the measurement machinery of benchmarks/global_block.py, unchanged
    if args.merge and (args.out_dir / f"{name}.json").exists():
        data = merge(json.loads((args.out_dir / f"{name}.json").read_text()), data)
    data["benchmark"] = "scaling"
    data.update(
        header("python benchmarks/scaling.py " + " ".join(argv if argv is not None else sys.argv[1:]))
    )
    data["config"] = {
        "sizes": args.sizes,
        "fit_from": args.fit_from,
        "max_gb": args.max_gb,
        "max_seconds": args.max_seconds,
    }
    data["gpu"] = "not measured: no GPU was lent to this task"
    data["analysis"] = analyse(data["results"], args.fit_from)
    path = write_json(name, data, args.out_dir)
    plot(data, args.fig_dir / f"{name}.png")
    print(f"wrote {path}")
    for row in data["analysis"]["ratios"]:
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
