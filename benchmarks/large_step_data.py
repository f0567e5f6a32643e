"""What the learned large step (Φ in O–Φ–O) needs: the demo's stages 3–5 under data/training variants.

    OMP_NUM_THREADS=1 python benchmarks/large_step_data.py --ff FF.safetensors \\
        --variant base: --variant data10:reference.n_steps=40000 ...

Each variant is ``name:key=value,key=value`` with :class:`~hyenamd.workflows.demo.DemoConfig`
overrides (as ``hyenamd demo --set``). Every variant runs the default demo with the given force
field (``force_field_checkpoint``: stage 2 skipped, so the comparison isolates Φ): its own
reference data (OpenMM, regenerated when the overrides change it), the dynamics training, the
force-field and large-step rollouts from the held-out run's first frame, and validation against
the held-out OpenMM run. Recorded per variant: Φ's held-out one-stride errors (position RMSE Å,
the unexplained fraction of the velocity variance), training steps and CPU seconds, and the
large-step validation metrics (⟨T⟩, KS p, RDF MAE, diffusion and VACF errors).

Writes ``benchmarks/results/<name>.json`` (machine, date, commit, command, load averages).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import header, write_json

KEYS = (
    "mean_temperature",
    "temperature_rel_error",
    "kinetic_ks_p",
    "rdf_mae[Ar-Ar]",
    "diffusion_rel_error[all]",
    "vacf_mae",
    "stable_time",
)


def parse_variant(text: str) -> tuple[str, list[str]]:
    """``"name:a=1,b=2"`` → ``("name", ["a=1", "b=2"])``."""
    name, _, rest = text.partition(":")
    if not name:
        raise SystemExit(f"variant needs a name before ':': {text!r}")
    return name, [kv for kv in rest.split(",") if kv]


def _reuse_force_field_md(run_dir: pathlib.Path):
    """A stand-in for the demo's stage 4a that copies the force-field MD of an earlier variant.

    The force field is fixed across variants and its MD is seeded, so its trajectory is the same
    for every variant that does not change ``reference``/``rollout.md_steps``; this saves the
    25-ps run (2-4 CPU-min) per variant. The copied summary entry is marked ``reused_from``.
    """
    import json
    import shutil

    entry = json.loads((run_dir / "summary.json").read_text())["rollout_force_field"]

    def stage(cfg, model_path, heldout, path, echo=print):
        for suffix in ("", ".provenance.json"):
            src = pathlib.Path(str(run_dir / "surrogate_md.h5") + suffix)
            if src.exists():
                shutil.copyfile(src, str(path) + suffix)
        echo(f"      force-field MD reused from {run_dir} (same force field, same seed)")
        return {**entry, "path": str(path), "reused_from": str(run_dir)}

    return stage


def run_variant(
    name: str,
    overrides: list[str],
    ff: pathlib.Path,
    out: pathlib.Path,
    reuse_ff_md: pathlib.Path | None = None,
) -> dict:
    from hyenamd.config import load_config
    from hyenamd.workflows import demo_stages
    from hyenamd.workflows.demo import DemoConfig, run_demo

    sets = [f"output_dir={out / name}", f"force_field_checkpoint={ff}", "foundation.n_atoms=0", *overrides]
    cfg = load_config(None, DemoConfig, sets)
    c0 = time.process_time()
    original = demo_stages.rollout_force_field
    if reuse_ff_md is not None:
        demo_stages.rollout_force_field = _reuse_force_field_md(reuse_ff_md)
    try:
        summary = run_demo(cfg, echo=lambda *a: print(f"[{name}]", *a, flush=True))
    finally:
        demo_stages.rollout_force_field = original
    ls = summary["validation"]["large_step"]["metrics"]
    ffmd = summary["validation"]["force_field_md"]["metrics"]
    row = {
        "overrides": overrides,
        "dynamics_valid": summary["dynamics"]["valid_metrics"],
        "dynamics_steps": summary["dynamics"]["steps"],
        "dynamics_epochs": summary["dynamics"]["epochs"],
        "train_dynamics_cpu_s": summary["stages_cpu_s"]["train_dynamics"],
        "large_step": {k: ls.get(k) for k in KEYS},
        "large_step_passed": summary["validation"]["large_step"].get("passed"),
        "force_field_md_diffusion_rel_error": ffmd.get("diffusion_rel_error[all]"),
        "rescale_guarded_strides": summary["rollout_dynamics"]["rescale_guarded_strides"],
        "dynamics_settings": summary["config"]["dynamics"],
        "large_step_wall_s": summary["rollout_dynamics"]["wall_s"],
        "strides": summary["rollout_dynamics"]["steps"],
        "cpu_s": time.process_time() - c0,
        "load_avg_end": os.getloadavg(),
    }
    return row


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ff", type=pathlib.Path, required=True, help="trained force field (demo architecture)")
    ap.add_argument("--variant", action="append", required=True, help="name:key=value,key=value")
    ap.add_argument("--out", type=pathlib.Path, default=pathlib.Path("/tmp/large_step_data"))
    ap.add_argument("--name", default="large_step_data")
    ap.add_argument(
        "--reuse-ff-md",
        type=pathlib.Path,
        default=None,
        help="an earlier variant's output dir: copy its force-field MD instead of re-running it",
    )
    args = ap.parse_args(argv)
    payload = header(
        "python benchmarks/large_step_data.py " + " ".join(argv if argv is not None else sys.argv[1:])
    )
    payload.update({"force_field": str(args.ff), "load_avg_start": os.getloadavg(), "variants": {}})
    for text in args.variant:
        name, overrides = parse_variant(text)
        payload["variants"][name] = run_variant(name, overrides, args.ff, args.out, args.reuse_ff_md)
        write_json(args.name, payload)  # after every variant: partial results survive
        r = payload["variants"][name]
        print(
            f"{name}: Φ position RMSE {r['dynamics_valid'].get('position_rmse'):.4f} Å, "
            f"velocity {r['dynamics_valid'].get('velocity'):.3f}; large step {r['large_step']}",
            flush=True,
        )
    return payload


if __name__ == "__main__":
    main()
