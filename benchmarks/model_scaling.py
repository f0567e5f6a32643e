"""Full G-Hyena energy + forces vs system size: time and peak memory, fit time ∝ N^α.

A periodic liquid-like box (``hyenamd.workflows.demo.liquid_like_system``, 0.1 atoms/Å³, argon) per
size, preset S (``configs/surrogate/S.yaml``, species overridden to argon) in float32. Each
size runs in a fresh subprocess, so the peak RSS (``ru_maxrss``) is that size's own; a size
whose peak RSS, extrapolated linearly from the last two sizes, exceeds ``--max-rss-gb`` is
skipped and recorded. Timed:

* ``neighbors_s`` — the full neighbour list (vesin), ``order_s`` — the Hilbert order;
* ``model_s`` — ``compute_forces(model, batch, neighbors=...)``: forward + backward (best of
  ``repeats``); ``model_cpu_s`` — the process CPU time of that call (less sensitive to other
  jobs on a shared machine than the wall time).

α is fitted by least squares on log(time) vs log(N) for N ≥ 10⁴.

    python benchmarks/model_scaling.py                   # 10³ … 10⁶ (as far as memory allows)
    python benchmarks/model_scaling.py --quick --out /tmp  # seconds, for the test suite
    python benchmarks/model_scaling.py --device cuda      # same on a GPU (device-agnostic)
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import resource
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from common import FIGURES, ROOT, header, write_json

FULL_SIZES = [1_000, 3_000, 10_000, 30_000, 100_000, 300_000, 1_000_000]
QUICK_SIZES = [300, 1_000]
FIGURE = FIGURES / "model_scaling.png"


def run_child(args: argparse.Namespace) -> dict:
    """One size, in this process: build, time, report one JSON line on stdout."""
    import torch

    from hyenamd import Batch
    from hyenamd.config import load_config
    from hyenamd.geometry import batch_neighbor_list
    from hyenamd.surrogate import GHyena, GHyenaConfig, compute_forces
    from hyenamd.surrogate.ordering import batch_order
    from hyenamd.workflows.demo import liquid_like_system

    if args.threads:
        torch.set_num_threads(args.threads)
    n, device = args.child, torch.device(args.device)
    overrides = ["species=[18]", "dtype=float32", *args.set]
    cfg = load_config(ROOT / "configs" / "surrogate" / f"{args.preset}.yaml", GHyenaConfig, overrides)
    model = GHyena(cfg).to(device)
    batch = Batch.from_system(liquid_like_system(n, args.density, seed=0)).to(device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    t = time.perf_counter()
    batch = batch.replace(order=batch_order(batch, cfg.ordering))
    t_order = time.perf_counter() - t
    t = time.perf_counter()
    nb = batch_neighbor_list(batch.positions, batch.cell, batch.pbc, batch.ptr, cfg.cutoff)
    sync()
    t_nb = time.perf_counter() - t
    if n <= 10_000:  # warm-up (one-time imports, allocator) where it is cheap
        compute_forces(model, batch, neighbors=nb)
    best, best_cpu = math.inf, math.inf
    for _ in range(args.repeats if n <= 100_000 else 1):
        sync()
        t, c = time.perf_counter(), time.process_time()
        out = compute_forces(model, batch, neighbors=nb)
        sync()
        best, best_cpu = min(best, time.perf_counter() - t), min(best_cpu, time.process_time() - c)
    assert bool(torch.isfinite(out["forces"]).all()), "non-finite forces"
    row = {
        "n_atoms": n,
        "pairs_full": len(nb),
        "neighbors_s": t_nb,
        "order_s": t_order,
        "model_s": best,
        "model_cpu_s": best_cpu,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
        "n_parameters": sum(p.numel() for p in model.parameters()),
    }
    if device.type == "cuda":
        row["peak_cuda_gb"] = torch.cuda.max_memory_allocated() / 1e9
    return row


def predict_rss(rows: list[dict], n: int) -> float:
    """Peak RSS (GB) at ``n`` atoms, extrapolated linearly from the last two sizes (or ∝ N from one)."""
    last = rows[-1]
    if len(rows) < 2:
        return last["peak_rss_gb"] * n / last["n_atoms"]
    prev = rows[-2]
    slope = (last["peak_rss_gb"] - prev["peak_rss_gb"]) / (last["n_atoms"] - prev["n_atoms"])
    return last["peak_rss_gb"] + max(slope, 0.0) * (n - last["n_atoms"])


def fit_alpha(rows: list[dict], key: str, n_min: int) -> float | None:
    pts = [(math.log(r["n_atoms"]), math.log(r[key])) for r in rows if r["n_atoms"] >= n_min and r.get(key)]
    if len(pts) < 2:
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)


def plot(rows: list[dict], alpha: float | None, path: pathlib.Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [r["n_atoms"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.loglog(n, [r["model_s"] for r in rows], "o-", label="energy + forces (wall)")
    ax1.loglog(n, [r["model_cpu_s"] for r in rows], "s--", label="energy + forces (CPU time)")
    ax1.loglog(n, [r["neighbors_s"] for r in rows], "^:", label="neighbour list")
    ref = rows[-1]["model_s"] / rows[-1]["n_atoms"]
    ax1.loglog(n, [ref * k for k in n], "k-", lw=0.7, label="∝ N")
    ax1.set_xlabel("atoms N")
    ax1.set_ylabel("time (s)")
    ax1.set_title(f"time, α = {alpha:.3f} (N ≥ 10⁴)" if alpha is not None else "time")
    ax1.legend(fontsize=8)
    ax2.loglog(n, [r["peak_rss_gb"] for r in rows], "o-")
    ax2.set_xlabel("atoms N")
    ax2.set_ylabel("peak RSS (GB)")
    ax2.set_title("peak memory (fresh process per N)")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="two tiny sizes (for tests)")
    p.add_argument("--sizes", type=int, nargs="*", default=None, help="atom counts (default 10³ … 10⁶)")
    p.add_argument("--out", type=pathlib.Path, default=None, help="directory for the JSON (and PNG)")
    p.add_argument("--preset", default="S", choices=["S", "M", "L"])
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    p.add_argument("--device", default="cpu")
    p.add_argument("--density", type=float, default=0.1)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--max-rss-gb", type=float, default=18.0, help="skip sizes predicted to need more")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per size")
    p.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child is not None:
        print(json.dumps(run_child(args)), flush=True)
        return {}

    from hyenamd.progress import progress_bar

    sizes = args.sizes or (QUICK_SIZES if args.quick else FULL_SIZES)
    rows, skipped = [], []
    passthrough = ["--preset", args.preset, "--device", args.device, "--density", str(args.density)]
    passthrough += ["--repeats", str(args.repeats), "--threads", str(args.threads)]
    for s in args.set:
        passthrough += ["--set", s]
    for n in (bar := progress_bar(sizes, desc="model scaling", unit="size")):
        if rows:
            predicted = predict_rss(rows, n)
            if predicted > args.max_rss_gb:
                skipped.append(
                    {"n_atoms": n, "reason": f"predicted peak RSS {predicted:.1f} GB > {args.max_rss_gb} GB"}
                )
                continue
        bar.set_postfix(n=n)
        cmd = [sys.executable, __file__, "--child", str(n), *passthrough]
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            skipped.append({"n_atoms": n, "reason": f"timed out after {args.timeout:.0f} s"})
            break
        if res.returncode != 0:
            reason = "killed (out of memory?)" if res.returncode < 0 else res.stderr.strip().splitlines()[-1:]
            skipped.append({"n_atoms": n, "reason": f"failed rc={res.returncode}: {reason}"})
            break
        row = json.loads(res.stdout.strip().splitlines()[-1])
        rows.append(row)
        bar.write(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}))

    alpha = fit_alpha(rows, "model_s", 10_000)
    alpha_cpu = fit_alpha(rows, "model_cpu_s", 10_000)
    cmd = "python benchmarks/model_scaling.py " + " ".join(argv if argv is not None else sys.argv[1:])
    try:
        load = open("/proc/loadavg").read().split()[:3]
    except OSError:
        load = None
    payload = {
        **header(cmd.strip()),
        "preset": args.preset,
        "overrides": ["species=[18]", "dtype=float32", *args.set],
        "device": args.device,
        "child_torch_threads": args.threads or "torch default",
        "density_per_A3": args.density,
        "load_average_at_end": load,
        "alpha_wall_n_ge_1e4": alpha,
        "alpha_cpu_n_ge_1e4": alpha_cpu,
        "rows": rows,
        "skipped": skipped,
    }
    out_dir = args.out
    path = write_json("model_scaling", payload, out_dir)
    if rows:
        fig = FIGURE if out_dir is None else out_dir / "model_scaling.png"
        plot(
            rows, alpha, fig, f"G-Hyena preset {args.preset}, float32, {args.device}, {payload['git_commit']}"
        )
    print(f"α (wall, N ≥ 10⁴) = {alpha}; α (CPU time) = {alpha_cpu}; wrote {path}")
    return payload


if __name__ == "__main__":
    main()
