"""One G-Hyena GlobalBlock vs one EquivariantAttentionBlock (naive and chunked) of equal width, CPU.

Measures, for N = 256 … 16 384 atoms (one system, float32, random canonical order):
forward time (no grad) and forward+backward time (grad of a scalar loss w.r.t. inputs and
weights), and the peak extra memory of each.

Memory: each (block, N) runs in a fresh subprocess; after a warm-up call on 16 atoms (which
loads library code, thread pools and FFT plans), peak memory = ``ru_maxrss`` after the measured
call minus ``ru_maxrss`` before it: the high-water mark of resident memory the call added (big
tensors are returned to the OS when freed, so this is the call's real footprint). The forward
is measured first (no grad), then forward+backward (whose peak contains the forward's).
``--quick`` runs everything in one process instead (seconds; its memory numbers are rough).
``--cli-allocator``: each child first sets glibc's thresholds as the ``hyenamd`` CLI does
(:func:`hyenamd.allocator.tune_malloc`, then the size rule of
:func:`hyenamd.allocator.adapt_malloc`), for every block alike; default: glibc's own dynamic
thresholds, as in a bare Python process.

Time: the minimum over repeats of the wall-clock time and, separately, of the process CPU
time (one torch thread by default: the 2 cores are shared with other jobs, and CPU time is what
the call itself costs whatever else runs); repeats are chosen so one measurement takes about
``--budget`` seconds. A mode is dropped for larger N once its predicted memory
exceeds ``--max-gb`` (naive attention ×4 per doubling, the others ×2) or its predicted time
exceeds ``--max-seconds``; where it stops is recorded.

``--interleave K``: timing only, in one process: K rounds, each timing the global block (minimum
of 5 calls) and then one call of chunked attention, forward and then forward + backward, so both
see the same machine conditions; reports each round's ratio and the ratio of the minima (the
attention rows of the subprocess runs are single calls taken minutes apart from the block's,
and moved by ±20 % between runs).

Usage::

    .venv/bin/python benchmarks/global_block.py            # full run, ~10 min on 2 cores
    .venv/bin/python benchmarks/global_block.py --quick --out /tmp/gb.json --figure /tmp/gb.png
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import FIGURES, RESULTS  # noqa: E402

MODES = ("global", "attention_naive", "attention_chunked")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def measure(
    mode: str, n: int, f: int, c: int, threads: int, budget: float, seed: int = 0, cli_allocator: bool = False
) -> dict:
    """Time and peak memory of one block at size n (call in a fresh process for clean memory)."""
    if cli_allocator:
        from hyenamd.allocator import adapt_malloc, tune_malloc

        tune_malloc()
        adapt_malloc(n)
    import torch

    from hyenamd.surrogate.baselines import EquivariantAttentionBlock
    from hyenamd.surrogate.global_block import GlobalBlock

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    if mode == "global":
        blk = GlobalBlock(f, c)
    else:
        blk = EquivariantAttentionBlock(f, c, mode=mode.split("_")[1], chunk_size=512)
    s = torch.randn(n, f)
    v = torch.randn(n, c, 3)
    order = torch.randperm(n)
    ptr = torch.tensor([0, n])

    def fwd():
        with torch.no_grad():
            return blk(s, v, order, ptr)

    def fwd_bwd():
        s_ = s.detach().requires_grad_(True)
        v_ = v.detach().requires_grad_(True)
        so, vo = blk(s_, v_, order, ptr)
        (so.square().mean() + vo.square().mean()).backward()
        blk.zero_grad(set_to_none=True)

    # warm-up on 16 atoms: loads library code, thread pools and FFT plans, which would otherwise
    # count as the first call's memory
    with torch.no_grad():
        blk(s[:16], v[:16], torch.arange(16), torch.tensor([0, 16]))
    s16 = s[:16].detach().requires_grad_(True)
    blk(s16, v[:16], torch.arange(16), torch.tensor([0, 16]))[0].sum().backward()
    blk.zero_grad(set_to_none=True)

    out = {"mode": mode, "n_atoms": n, "n_scalar": f, "n_vector": c, "threads": threads}
    out["malloc"] = {k: os.environ.get(k) for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")}
    base = _rss_mb()
    t0 = time.perf_counter()
    fwd()
    first_fwd = time.perf_counter() - t0
    out["peak_mb_forward"] = _rss_mb() - base
    t0 = time.perf_counter()
    fwd_bwd()
    first_fb = time.perf_counter() - t0
    out["peak_mb_forward_backward"] = _rss_mb() - base
    for key, fn, first in (("forward", fwd, first_fwd), ("forward_backward", fwd_bwd, first_fb)):
        reps = max(1, min(7, int(budget / max(first, 1e-4))))
        walls, cpus = [], []
        for _ in range(reps):
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
        out[f"time_s_{key}"] = min(walls)
        out[f"cpu_s_{key}"] = min(cpus)
        out[f"repeats_{key}"] = reps
    return out


def _child(args: argparse.Namespace, mode: str, n: int) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, str(n), "--f", str(args.f), "--c", str(args.c)]
    cmd += ["--threads", str(args.threads), "--budget", str(args.budget)]
    cmd += ["--cli-allocator"] if getattr(args, "cli_allocator", False) else []
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if res.returncode != 0:
        return {"mode": mode, "n_atoms": n, "error": res.stderr.strip().splitlines()[-1:] or ["failed"]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def _header(name: str) -> dict:
    """What every result file records: benchmark, date, commit, machine (load at the end), command."""
    return {
        "benchmark": name,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "git_commit": _git_commit(),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "processor": platform.processor(),
            "load_average_at_end": list(os.getloadavg()),
        },
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }


def _git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run(args: argparse.Namespace) -> dict:
    from hyenamd.progress import progress_bar

    sizes = [int(x) for x in args.sizes.split(",")]
    results, stopped = [], {}
    last: dict[str, dict] = {}
    jobs = [(m, n) for n in sizes for m in MODES]
    for mode, n in progress_bar(jobs, desc="global_block benchmark", unit="run"):
        if mode in stopped:
            continue
        prev = last.get(mode)
        if prev is not None:
            ratio = n / prev["n_atoms"]
            mem = (
                prev["peak_mb_forward_backward"] * (ratio**2 if mode == "attention_naive" else ratio) / 1024.0
            )
            secs = (
                (prev["time_s_forward"] + prev["time_s_forward_backward"])
                * (ratio if mode == "global" else ratio**2)
                * 1.1
            )
            if mem > args.max_gb or secs > args.max_seconds:
                stopped[mode] = {
                    "n_atoms": n,
                    "reason": f"predicted {mem:.1f} GB (limit {args.max_gb}) / {secs:.0f} s (limit {args.max_seconds})",
                }
                continue
        r = (
            measure(
                mode,
                n,
                args.f,
                args.c,
                args.threads,
                args.budget,
                cli_allocator=getattr(args, "cli_allocator", False),
            )
            if args.quick
            else _child(args, mode, n)
        )
        results.append(r)
        if "error" in r:
            stopped[mode] = {"n_atoms": n, "reason": " ".join(r["error"])}
        else:
            last[mode] = r
    return {
        **_header("global_block"),
        "settings": {
            "n_scalar": args.f,
            "n_vector": args.c,
            "dtype": "float32",
            "threads": args.threads,
            "attention_heads": 1,
            "attention_chunk": 512,
            "allocator": "hyenamd CLI (tune_malloc + adapt_malloc size rule)"
            if getattr(args, "cli_allocator", False)
            else "glibc default",
            "memory_method": "in-process ru_maxrss delta (rough)"
            if args.quick
            else "ru_maxrss delta in a fresh subprocess per (block, N)",
            "time_method": "min over repeats: wall clock (time_s_*) and process CPU time (cpu_s_*)",
        },
        "results": results,
        "stopped": stopped,
        "summary": summarize(results),
    }


def interleaved(args: argparse.Namespace) -> dict:
    """``--interleave K``: the global block against chunked attention, alternating in one process."""
    import torch

    from hyenamd.surrogate.baselines import EquivariantAttentionBlock
    from hyenamd.surrogate.global_block import GlobalBlock

    if getattr(args, "cli_allocator", False):
        from hyenamd.allocator import adapt_malloc, tune_malloc

        tune_malloc()
    n = int(args.sizes.split(",")[-1])
    if getattr(args, "cli_allocator", False):
        adapt_malloc(n)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    blocks = {
        "global": GlobalBlock(args.f, args.c),
        "attention_chunked": EquivariantAttentionBlock(args.f, args.c, mode="chunked", chunk_size=512),
    }
    s, v = torch.randn(n, args.f), torch.randn(n, args.c, 3)
    order, ptr = torch.randperm(n), torch.tensor([0, n])

    def call(blk, backward: bool) -> float:
        c0 = time.process_time()
        if backward:
            s_, v_ = s.detach().requires_grad_(True), v.detach().requires_grad_(True)
            so, vo = blk(s_, v_, order, ptr)
            (so.square().mean() + vo.square().mean()).backward()
            blk.zero_grad(set_to_none=True)
        else:
            with torch.no_grad():
                blk(s, v, order, ptr)
        return time.process_time() - c0

    for blk in blocks.values():  # warm-up, forward and backward: library code, FFT plans, thread pools
        s64 = s[:64].detach().requires_grad_(True)
        blk(s64, v[:64], torch.arange(64), torch.tensor([0, 64]))[0].sum().backward()
        blk.zero_grad(set_to_none=True)
    rounds = []
    from hyenamd.progress import progress_bar

    for _ in progress_bar(range(args.interleave), desc="interleaved rounds", unit="round"):
        row = {}
        for key, backward in (("forward", False), ("forward_backward", True)):
            call(blocks["global"], backward)
            g = min(call(blocks["global"], backward) for _ in range(5))
            a = call(blocks["attention_chunked"], backward)
            row[key] = {"global_cpu_s": g, "attention_chunked_cpu_s": a, "ratio": a / g}
        rounds.append(row)
    summary = {
        key: {
            "ratio_of_minima": min(r[key]["attention_chunked_cpu_s"] for r in rounds)
            / min(r[key]["global_cpu_s"] for r in rounds),
            "ratios": [r[key]["ratio"] for r in rounds],
        }
        for key in ("forward", "forward_backward")
    }
    return {
        **_header("global_block_interleaved"),
        "settings": {
            "n_atoms": n,
            "n_scalar": args.f,
            "n_vector": args.c,
            "threads": args.threads,
            "rounds": args.interleave,
            "allocator": "hyenamd CLI" if getattr(args, "cli_allocator", False) else "glibc default",
            "time_method": "process CPU time; global: min of 5 calls per round; attention: 1 call per round",
        },
        "rounds": rounds,
        "summary": summary,
    }


def summarize(results: list[dict]) -> dict:
    """Speed-up and memory ratios of the global block at the largest N both were measured."""
    ok = {(r["mode"], r["n_atoms"]): r for r in results if "error" not in r}
    out = {}
    for mode in MODES[1:]:
        common = [n for (m, n) in ok if m == mode and ("global", n) in ok]
        if not common:
            continue
        n = max(common)
        g, a = ok[("global", n)], ok[(mode, n)]
        out[mode] = {
            "n_atoms": n,
            "speedup_forward": a["time_s_forward"] / g["time_s_forward"],
            "speedup_forward_backward": a["time_s_forward_backward"] / g["time_s_forward_backward"],
            "cpu_speedup_forward": a["cpu_s_forward"] / g["cpu_s_forward"],
            "cpu_speedup_forward_backward": a["cpu_s_forward_backward"] / g["cpu_s_forward_backward"],
            "memory_ratio_forward": a["peak_mb_forward"] / max(g["peak_mb_forward"], 1e-3),
            "memory_ratio_forward_backward": a["peak_mb_forward_backward"]
            / max(g["peak_mb_forward_backward"], 1e-3),
        }
    return out


def plot(data: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    styles = {"global": ("C0", "G-Hyena GlobalBlock"), "attention_naive": ("C3", "attention, naive"),
              "attention_chunked": ("C1", "attention, chunked")}  # fmt: skip
    for mode, (col, label) in styles.items():
        rs = sorted(
            (r for r in data["results"] if r["mode"] == mode and "error" not in r), key=lambda r: r["n_atoms"]
        )
        if not rs:
            continue
        n = [r["n_atoms"] for r in rs]
        axes[0].loglog(n, [r["cpu_s_forward"] for r in rs], "o-", color=col, label=f"{label}, fwd")
        axes[0].loglog(
            n, [r["cpu_s_forward_backward"] for r in rs], "s--", color=col, label=f"{label}, fwd+bwd"
        )
        axes[1].loglog(
            n, [max(r["peak_mb_forward"], 0.1) for r in rs], "o-", color=col, label=f"{label}, fwd"
        )
        axes[1].loglog(
            n,
            [max(r["peak_mb_forward_backward"], 0.1) for r in rs],
            "s--",
            color=col,
            label=f"{label}, fwd+bwd",
        )
    axes[0].set(xlabel="atoms N", ylabel="CPU time (s)", title="CPU time per call (min of repeats)")
    axes[1].set(xlabel="atoms N", ylabel="peak extra memory (MB)", title="peak memory (ru_maxrss delta)")
    st = data["settings"]
    fig.suptitle(
        f"one block, F={st['n_scalar']}, C={st['n_vector']}, float32, CPU {st['threads']} thread(s), commit {data['git_commit']}"
    )
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def table(data: dict) -> str:
    """A markdown table of the results (for BENCHMARKS.md)."""
    lines = [
        "| N | block | fwd wall (s) | fwd CPU (s) | fwd+bwd wall (s) | fwd+bwd CPU (s) | peak fwd (MB) | peak fwd+bwd (MB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(data["results"], key=lambda r: (r["n_atoms"], MODES.index(r["mode"]))):
        if "error" in r:
            lines.append(f"| {r['n_atoms']} | {r['mode']} | failed: {' '.join(r['error'])} | | | | | |")
            continue
        lines.append(
            f"| {r['n_atoms']} | {r['mode']} | {r['time_s_forward']:.4g} | {r['cpu_s_forward']:.4g} | "
            f"{r['time_s_forward_backward']:.4g} | {r['cpu_s_forward_backward']:.4g} | "
            f"{r['peak_mb_forward']:.1f} | {r['peak_mb_forward_backward']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="seconds-long smoke run in one process")
    p.add_argument("--sizes", default=None, help="comma-separated N (default 256..16384, quick: 64,128)")
    p.add_argument("--f", type=int, default=64, help="scalar channels F")
    p.add_argument("--c", type=int, default=16, help="vector channels C")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: the 2 cores are shared)")
    p.add_argument("--budget", type=float, default=3.0, help="seconds of repeats per measurement")
    p.add_argument(
        "--max-gb", type=float, default=8.0, help="skip a mode once its predicted peak exceeds this"
    )
    p.add_argument(
        "--max-seconds", type=float, default=120.0, help="skip a mode once one call is predicted slower"
    )
    p.add_argument("--out", type=Path, default=RESULTS / "global_block.json")
    p.add_argument("--figure", type=Path, default=FIGURES / "global_block_scaling.png")
    p.add_argument(
        "--replot", type=Path, default=None, help="only redraw the figure and table from this JSON"
    )
    p.add_argument(
        "--cli-allocator",
        action="store_true",
        help="glibc thresholds as the hyenamd CLI sets them, every block",
    )
    p.add_argument(
        "--interleave",
        type=int,
        default=0,
        metavar="K",
        help="timing only: K alternating rounds, one process",
    )
    p.add_argument("--child", nargs=2, metavar=("MODE", "N"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(
            json.dumps(
                measure(
                    args.child[0],
                    int(args.child[1]),
                    args.f,
                    args.c,
                    args.threads,
                    args.budget,
                    cli_allocator=args.cli_allocator,
                )
            )
        )
        return 0
    if args.interleave:
        args.sizes = args.sizes or "16384"
        data = interleaved(args)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(data, indent=2) + "\n")
        print(json.dumps(data["summary"], indent=2))
        return 0
    if args.replot is not None:
        data = json.loads(args.replot.read_text())
        plot(data, args.figure)
        print(table(data))
        return 0
    if args.sizes is None:
        args.sizes = "64,128" if args.quick else ",".join(str(256 * 2**k) for k in range(7))
    if args.quick:
        args.f, args.c, args.budget = min(args.f, 16), min(args.c, 4), min(args.budget, 0.05)
    data = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=2) + "\n")
    plot(data, args.figure)
    print(table(data))
    print(json.dumps(data["summary"], indent=2))
    print(json.dumps(data["stopped"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
