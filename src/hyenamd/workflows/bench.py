"""``hyenamd bench NAME [ARGS...]``: run ``benchmarks/NAME.py`` from the source tree.

The benchmark scripts live in the repository's ``benchmarks/`` folder (not in the installed
package). This command finds that folder next to the source tree, runs the script with the
current Python interpreter and passes every further argument through, e.g.::

    hyenamd bench nbody --quick                  # JSON and figures under ./results
    hyenamd bench --out /tmp/b scaling --max-log2 16
    hyenamd bench --list

Results go where told: ``--out DIR`` (before or after the name; default ``results/`` under the
working directory), JSON in ``DIR`` and figures in ``DIR/figures``, through the
``HYENAMD_BENCH_RESULTS``/``HYENAMD_BENCH_FIGURES`` variables ``benchmarks/common.py`` reads. A
script run directly (``python benchmarks/ear.py``) writes the repository's
``benchmarks/results/`` and ``docs/figures/`` (the numbers of BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys

__all__ = ["available", "benchmarks_dir"]

#: helper modules in benchmarks/ that are not runnable benchmarks
_NOT_BENCHMARKS = {"common", "paper_models", "nbody_sim", "nbody_model", "nbody_edge_block", "ear_data"}


def benchmarks_dir() -> pathlib.Path:
    """The ``benchmarks/`` folder of the source tree (``HYENAMD_BENCHMARKS`` overrides)."""
    env = os.environ.get("HYENAMD_BENCHMARKS")
    if env:
        return pathlib.Path(env)
    return pathlib.Path(__file__).resolve().parents[3] / "benchmarks"


def available() -> list[str]:
    """Names of the runnable benchmark scripts."""
    d = benchmarks_dir()
    if not d.is_dir():
        return []
    return sorted(
        p.stem for p in d.glob("*.py") if p.stem not in _NOT_BENCHMARKS and not p.stem.startswith("_")
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", help="benchmark name (benchmarks/NAME.py); --list shows them")
    p.add_argument("--list", action="store_true", help="list the available benchmarks and exit")
    p.add_argument(
        "--out",
        type=pathlib.Path,
        default=None,
        help="folder for the JSON results (figures in OUT/figures); default: ./results",
    )
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed to the script (e.g. --quick)")


def run(args: argparse.Namespace) -> int:
    names = available()
    if args.list or not args.name:
        if not names:
            print(f"no benchmarks found (looked in {benchmarks_dir()}; run from a source checkout)")
            return 1 if not args.list else 0
        print("\n".join(names))
        return 0 if args.list else 2
    if args.name not in names:
        print(
            f"hyenamd bench: unknown benchmark {args.name!r}; available: {', '.join(names) or 'none'}",
            file=sys.stderr,
        )
        return 2
    script = benchmarks_dir() / f"{args.name}.py"
    rest, out = _take_out(list(args.args), args.out)
    out = (out or pathlib.Path("results")).absolute()
    src = str(pathlib.Path(__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")])))
    env.update(HYENAMD_BENCH_RESULTS=str(out), HYENAMD_BENCH_FIGURES=str(out / "figures"))
    print(f"hyenamd bench {args.name}: results in {out}", file=sys.stderr)
    return subprocess.run([sys.executable, str(script), *rest], env=env, check=False).returncode


def _take_out(rest: list[str], out: pathlib.Path | None) -> tuple[list[str], pathlib.Path | None]:
    """``--out DIR`` / ``--out=DIR`` given after the benchmark name belongs to this command."""
    keep = []
    it = iter(rest)
    for a in it:
        if a == "--out":
            out = pathlib.Path(next(it, "results"))
        elif a.startswith("--out="):
            out = pathlib.Path(a.split("=", 1)[1])
        else:
            keep.append(a)
    return keep, out
