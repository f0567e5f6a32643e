"""The ``hyenamd`` command line: parses arguments and YAML configs, then calls the library.

Each subcommand is ``(add_arguments, run)``; heavy imports happen inside ``run`` so that
``hyenamd --help`` stays fast. Configs are read by :func:`hyenamd.config.load_config`
(YAML → frozen dataclass) and accept ``--set key.sub=value`` overrides.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from hyenamd import __version__
from hyenamd.config import ConfigError, add_config_args, check_config_args
from hyenamd.errors import HyenaError, one_line

__all__ = ["add_config_args", "main"]


#: name -> (help, "module:add_arguments", "module:run"). Modules are imported only when the
#: subcommand runs (or --help is built), so `hyenamd --help` stays fast. Each subpackage keeps
#: its command functions next to its code and adds one line here.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "inspect": (
        "summarise a store (.h5md/.zarr, or any H5MD file) or a checkpoint (.safetensors)",
        "hyenamd.io.inspect:add_arguments",
        "hyenamd.io.inspect:run",
    ),
    "demo": (
        "run the end-to-end demo (configs/demo.yaml)",
        "hyenamd.workflows.demo:add_arguments",
        "hyenamd.workflows.demo:run",
    ),
    "bench": (
        "run a benchmark script benchmarks/NAME.py (hyenamd bench --list)",
        "hyenamd.workflows.bench:add_arguments",
        "hyenamd.workflows.bench:run",
    ),
    "train": (
        "train a surrogate: force_field, dynamics or property (configs/train/*.yaml)",
        "hyenamd.workflows.train:add_arguments",
        "hyenamd.workflows.train:run",
    ),
    "validate": (
        "compare a surrogate trajectory with reference MD (configs/validate/*.yaml)",
        "hyenamd.validate.cli:add_arguments",
        "hyenamd.validate.cli:run",
    ),
    "reference": (
        "OpenMM reference MD into a store (configs/reference/*.yaml)",
        "hyenamd.engine.reference:add_arguments",
        "hyenamd.engine.reference:run",
    ),
    "rollout": (
        "Ray rollout ensemble from a YAML config (configs/cluster/*.yaml; --address to join a cluster)",
        "hyenamd.cluster.cli:add_arguments",
        "hyenamd.cluster.cli:run",
    ),
}


def _resolve(ref: str) -> Callable:
    import importlib

    mod, _, name = ref.partition(":")
    return getattr(importlib.import_module(mod), name)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hyenamd",
        description="Large-system molecular simulation with a Geometric Hyena surrogate.",
    )
    parser.add_argument("--version", action="version", version=f"hyenamd {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback of an error (default: one line)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_, add_args, run) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        _resolve(add_args)(p)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        p.set_defaults(_run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; every user-facing error is one line on stderr and exit code 2.

    User-facing errors are :class:`hyenamd.errors.HyenaError` (bad configs, systems, stores,
    checkpoints, refused overwrites ...) and the operating system's file errors (missing file,
    permission denied, a directory given for a file). ``--debug`` re-raises them with the
    traceback. Anything else is a bug and keeps its traceback.
    """
    from hyenamd.allocator import tune_malloc

    tune_malloc()  # large tensors back to the OS when freed (see hyenamd/allocator.py)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    check_config_args(args, parser)
    try:
        return int(_resolve(args._run)(args) or 0)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"hyenamd {args.command}: interrupted", file=sys.stderr)
        return 130
    except (HyenaError, OSError) as e:
        if args.debug:
            raise
        print(f"hyenamd {args.command}: {_describe(e)}", file=sys.stderr)
        return 2


def _describe(e: BaseException) -> str:
    """One line: the kind of problem, the message, and the file for OS errors."""
    if isinstance(e, ConfigError):
        return f"configuration error: {one_line(e)}"
    if isinstance(e, HyenaError):
        return f"error: {one_line(e)}"
    assert isinstance(e, OSError)
    what = {
        FileNotFoundError: "no such file or directory",
        PermissionError: "permission denied",
        IsADirectoryError: "is a directory (expected a file)",
        NotADirectoryError: "not a directory",
        FileExistsError: "already exists",
    }.get(type(e), e.strerror or type(e).__name__)
    files = " -> ".join(str(f) for f in (e.filename, e.filename2) if f is not None)
    return f"error: {what}: {files}" if files else f"error: {one_line(e)}"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
