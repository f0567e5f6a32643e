"""Run ``hyenamd demo`` (or collect a finished run) and record its numbers and figures.

    python benchmarks/demo.py --config configs/demo.yaml --out demo_output          # run, then collect
    python benchmarks/demo.py --collect demo_output                                 # collect only

Writes ``benchmarks/results/demo.json`` (summary: stage wall/CPU times, training metrics, OpenMM
and large-step speed, every validation metric, machine, date, git commit) and copies the loss
curves and RDF overlays to ``docs/figures/demo_*.png``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import FIGURES, RESULTS  # noqa: E402


def _commit() -> str:
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True).strip()
    except Exception:  # not a git checkout
        return "unknown"


def collect(out: pathlib.Path, tag: str) -> pathlib.Path:
    summary = json.loads((out / "summary.json").read_text())
    record = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "load_avg_1min_at_collect": os.getloadavg()[0],
        },
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "git_commit": _commit(),
        "summary": summary,
    }
    res = RESULTS / f"demo{tag}.json"
    res.parent.mkdir(parents=True, exist_ok=True)
    res.write_text(json.dumps(record, indent=2, default=str))
    figs = FIGURES
    figs.mkdir(parents=True, exist_ok=True)
    for src, name in (
        (out / "force_field" / "loss_curve.png", "loss_force_field"),
        (out / "dynamics" / "loss_curve.png", "loss_dynamics"),
    ):
        if src.exists():
            shutil.copy(src, figs / f"demo{tag}_{name}.png")
    for run in ("force_field_md", "large_step"):
        for png in sorted((out / "report" / run).glob("*rdf*.png")):
            shutil.copy(png, figs / f"demo{tag}_{run}_{png.name}")
    print(f"wrote {res}")
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(ROOT / "configs" / "demo.yaml"))
    p.add_argument("--out", default="demo_output")
    p.add_argument("--collect", default=None, help="only collect a finished demo output folder")
    p.add_argument("--tag", default="", help="suffix of the result/figure names")
    args = p.parse_args()
    if args.collect:
        collect(pathlib.Path(args.collect), args.tag)
        return
    from hyenamd.config import load_config
    from hyenamd.workflows.demo import DemoConfig, run_demo

    cfg = load_config(args.config, DemoConfig, [f"output_dir={args.out}"])
    run_demo(cfg)
    collect(pathlib.Path(args.out), args.tag)


if __name__ == "__main__":
    main()
