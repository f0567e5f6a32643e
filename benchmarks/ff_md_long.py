"""Long force-field MD on the demo's argon against OpenMM, with the reference's own spread.

    python benchmarks/ff_md_long.py --model demo_output/force_field/best.safetensors --ps 100

Runs, all from the demo config (``--config``, ``--set``):

1. two independent OpenMM NVT runs of ``--ps`` picoseconds (the demo's reference settings,
   melt stage included; seeds ``--seed`` and ``--seed + 1``): the *reference* and the *baseline*;
2. Langevin NVT with the force field for the same length, from the reference's first frame
   (:func:`hyenamd.workflows.demo_stages.rollout_force_field`, in-process);
3. :func:`hyenamd.validate.validate` of the force-field run against the reference, with the
   baseline as the spread column (what an exact run of the same length scores).

Writes ``benchmarks/results/<name>.json`` (machine, date, commit, command, load, CPU seconds,
metrics of both runs, speeds) and the validation report with its plots under ``--out``; the
temperature/RDF/MSD/kinetic-energy plots are copied to ``docs/figures/<name>_*.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import shutil
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import header, write_json

ROOT = pathlib.Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="force-field checkpoint (.safetensors)")
    p.add_argument("--ps", type=float, default=100.0, help="length of every run, ps")
    p.add_argument("--out", default="demo_output/ff_md_long")
    p.add_argument("--name", default="ff_md_long")
    p.add_argument("--seed", type=int, default=100, help="OpenMM seed of the reference (baseline: +1)")
    p.add_argument("--config", default=str(ROOT / "configs" / "demo.yaml"))
    p.add_argument("--set", dest="overrides", action="append", default=[])
    args = p.parse_args(argv)
    model_path = pathlib.Path(args.model)
    if not model_path.is_file():
        p.error(f"--model {model_path} does not exist")
    if not args.ps > 0:
        p.error("--ps must be positive")
    torch.set_num_threads(1)
    from hyenamd.config import load_config
    from hyenamd.engine.reference import reference_md
    from hyenamd.validate import validate
    from hyenamd.workflows.demo import DemoConfig
    from hyenamd.workflows.demo_stages import openmm_speed, rollout_force_field

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = load_config(args.config, DemoConfig, [f"output_dir={out}", *args.overrides])
    n_steps = round(args.ps * 1000 / cfg.reference.dt_fs)
    n_steps -= n_steps % cfg.rollout.report_interval
    load0, c0, t0 = os.getloadavg(), time.process_time(), time.perf_counter()
    runs = {}
    for name, seed in (("reference", args.seed), ("baseline", args.seed + 1)):
        rc = dataclasses.replace(
            cfg.reference,
            output=str(out / f"{name}.h5"),
            overwrite=True,
            seed=seed,
            n_steps=n_steps,
            segments="none",
            report_interval=cfg.rollout.report_interval,
            progress=False,
        )
        t = time.perf_counter()
        reference_md(rc)
        runs[name] = {"path": rc.output, "wall_s": time.perf_counter() - t}
        print(f"{name}: OpenMM {n_steps} steps in {runs[name]['wall_s']:.1f} s", flush=True)
    md_cfg = dataclasses.replace(
        cfg,
        rollout=dataclasses.replace(cfg.rollout, md_steps=n_steps, use_ray=False),
        reference=dataclasses.replace(cfg.reference, progress=sys.stderr.isatty()),
    )
    c1 = time.process_time()
    md = rollout_force_field(md_cfg, model_path, out / "reference.h5", out / "force_field_md.h5")
    md["cpu_s"] = time.process_time() - c1
    vcfg = dataclasses.replace(cfg.validate, temperature_k=cfg.reference.temperature_k, progress=False)
    from hyenamd.surrogate import load_model

    res = validate(
        out / "reference.h5",
        out / "force_field_md.h5",
        vcfg,
        model=load_model(model_path),
        baseline=out / "baseline.h5",
        out_dir=out / "report",
        echo=lambda m: print("  " + m, flush=True),
    )
    print(res.table())
    base = validate(
        out / "reference.h5", out / "baseline.h5", vcfg, out_dir=None, echo=lambda m: None
    )  # the exact run judged by the same thresholds
    figs = ROOT / "docs" / "figures"
    copied = []
    for png in sorted((out / "report").glob("*.png")):
        dest = figs / f"{args.name}_{png.name}"
        shutil.copyfile(png, dest)
        copied.append(str(dest.relative_to(ROOT)))
    payload = {
        **header("python benchmarks/ff_md_long.py " + " ".join(sys.argv[1:] if argv is None else argv)),
        "load_average_start": load0,
        "load_average_end": os.getloadavg(),
        "model": str(model_path),
        "ps": n_steps * cfg.reference.dt_fs / 1000,
        "steps": n_steps,
        "openmm_runs": runs,
        "openmm_speed": openmm_speed(cfg),
        "force_field_md": md,
        "passed": res.passed,
        "metrics": {
            m.name: {"value": m.value, "limit": m.limit, "passed": m.passed, "spread": m.spread}
            for m in res.metrics
        },
        "exact_run_metrics": {m.name: {"value": m.value, "passed": m.passed} for m in base.metrics},
        "exact_run_passed": base.passed,
        "total_cpu_s": time.process_time() - c0,
        "total_wall_s": time.perf_counter() - t0,
        "figures": copied,
    }
    path = write_json(args.name, payload)
    print(
        f"{args.name}: force-field MD {'PASSED' if res.passed else 'FAILED'}; exact run "
        f"{'PASSED' if base.passed else 'FAILED'} → {path}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
