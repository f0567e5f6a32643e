"""``hyenamd validate REFERENCE SURROGATE``: compare a surrogate trajectory with reference MD.

Exit status: 0 when every judged metric passes, 1 when one fails, 2 for bad input or config.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    from hyenamd.config import add_config_args
    from hyenamd.validate.config import ValidateConfig

    p.add_argument("reference", help="reference MD store (.h5/.h5md/.hdf5 or .zarr)")
    p.add_argument("surrogate", help="surrogate trajectory store of the same system")
    add_config_args(p, config_cls=ValidateConfig, example="thresholds.max_rdf_mae=0.03")
    p.add_argument("--model", default=None, help="checkpoint (.safetensors): adds energy/force accuracy")
    p.add_argument("--baseline", default=None, help="a second, independent reference run (reference spread)")
    p.add_argument("--out", default="validation", help="report folder (default: ./validation)")
    p.add_argument("--no-report", action="store_true", help="print the table only, write no files")


def run(args: argparse.Namespace) -> int:
    from hyenamd.config import load_config
    from hyenamd.validate.config import ValidateConfig
    from hyenamd.validate.runner import validate

    cfg = load_config(args.config, ValidateConfig, args.overrides)
    try:
        result = validate(
            args.reference,
            args.surrogate,
            cfg,
            model=args.model,
            baseline=args.baseline,
            out_dir=None if args.no_report else args.out,
        )
    except (FileNotFoundError, ValueError) as e:
        print(f"hyenamd validate: {e}", file=sys.stderr)
        return 2
    print(result.table())
    return 0 if result.passed else 1
