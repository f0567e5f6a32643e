"""Shared helpers of the benchmark scripts: machine description, git commit, JSON and BENCHMARKS.md output."""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import platform
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[1]
#: where JSON results and figures go: the repository's benchmarks/results and docs/figures when a
#: script runs directly (the authors' numbers); `hyenamd bench --out DIR` sets both to DIR (default
#: ./results), so a user's run never writes into the installed source tree
RESULTS = pathlib.Path(os.environ.get("HYENAMD_BENCH_RESULTS") or ROOT / "benchmarks" / "results")
FIGURES = pathlib.Path(os.environ.get("HYENAMD_BENCH_FIGURES") or ROOT / "docs" / "figures")


def machine() -> dict[str, object]:
    """What the numbers were measured on."""
    import torch

    info: dict[str, object] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
        info["cpu"] = model
    except OSError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True
        ).stdout
        return out.stdout.strip() + ("+dirty" if dirty.strip() else "")
    except OSError:
        return "unknown"


def header(command: str) -> dict[str, object]:
    """Provenance block stored in every JSON result."""
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "git_commit": git_commit(),
        "command": command,
        "machine": machine(),
    }


def write_json(name: str, payload: dict, out_dir: pathlib.Path | None = None) -> pathlib.Path:
    out_dir = out_dir or RESULTS
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=float))
    tmp.replace(path)
    return path


def save_figure(fig, path: pathlib.Path) -> pathlib.Path:
    """Lay out, save (PNG, 120 dpi, parent folders created) and close a matplotlib figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def publish_merged(
    script: str, paths, payloads: list[dict], runs, summarise, table, plot, args, **extra
) -> int:
    """Write the table/JSON/figure that ``--merge`` builds from several partial runs of ``script``.

    ``runs`` are the pooled runs, ``summarise(runs)`` their summary rows, ``table(payload)`` the
    text table, ``plot(payload, path)`` the figure; ``extra`` keys are copied from the first run.
    Writes ``args.out_dir/args.name.json`` and ``args.fig_dir/args.name.png``.
    """
    merged = {
        **header(f"python benchmarks/{script} --merge " + " ".join(map(str, paths))),
        "config": payloads[0]["config"],
        # a merged input contributes its own sources too (merging a merge keeps the provenance)
        "sources": [
            src
            for pl in payloads
            for src in [
                *pl.get("sources", []),
                {k: pl[k] for k in ("date", "git_commit", "command", "config")},
            ]
        ],
        **extra,
        "runs": runs,
        "summary": summarise(runs),
    }
    merged["table"] = table(merged)
    write_json(args.name, merged, args.out_dir)
    plot(merged, args.fig_dir / f"{args.name}.png")
    print(merged["table"])
    return 0
