"""The learned large step's splitting variants on one trained Φ: rescale R, sub-strides, rollout seeds.

    OMP_NUM_THREADS=1 python benchmarks/large_step_rescale.py --run-dir /tmp/lsd/a_n0 \\
        --mode R:substeps=5 --mode noR:substeps=5,rescale=false --seeds 0 1

``--run-dir``: the output directory of a demo (or a ``large_step_data.py`` variant) — its
``dynamics/best.safetensors`` (Φ), ``summary.json`` (the reference's temperature and friction,
the force field used) and ``reference_heldout.h5``. Each mode runs ``--strides`` O–Φ–O strides
from the held-out run's first frame (:class:`~hyenamd.engine.LearnedPropagator`, settings
``substeps`` and ``rescale`` — R with the force field's energy, or none) per rollout seed, and
validates them against the held-out run with the demo's settings (no baseline run, no force
accuracy). Recorded per run: ⟨T⟩, KS p, RDF MAE, diffusion and VACF errors, D itself, the mean
and spread of the last α per stride, guarded strides, wall and CPU seconds.

Writes ``benchmarks/results/<name>.json`` (machine, date, commit, command, load averages).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import sys
import tempfile
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import header, write_json
from large_step_data import KEYS


def parse_mode(text: str) -> tuple[str, dict]:
    """``"name:substeps=5,rescale=false"`` → ``("name", {"substeps": 5, "rescale": False})``."""
    name, _, rest = text.partition(":")
    opts: dict = {"substeps": 1, "rescale": True, "every": "substep"}
    for kv in filter(None, rest.split(",")):
        k, _, v = kv.partition("=")
        if k == "substeps":
            opts[k] = int(v)
        elif k == "rescale":
            opts[k] = v.lower() in ("1", "true", "yes")
        elif k == "every":
            opts[k] = v
        else:
            raise SystemExit(f"unknown mode option {k!r} (substeps, rescale, every)")
    return name, opts


def run_mode(
    run_dir: pathlib.Path,
    opts: dict,
    seed: int,
    strides: int,
    out: pathlib.Path,
    report: pathlib.Path | None = None,
) -> dict:
    from hyenamd.engine import LearnedPropagator, Simulation, TrajectoryReporter
    from hyenamd.surrogate import load_model
    from hyenamd.validate import validate
    from hyenamd.workflows.demo import DemoConfig
    from hyenamd.workflows.demo_stages import _first_frame

    summary = json.loads((run_dir / "summary.json").read_text())
    ref = summary["config"]["reference"]
    ff_path = summary["config"]["force_field_checkpoint"] or str(run_dir / "force_field" / "best.safetensors")
    heldout = run_dir / "reference_heldout.h5"
    model = load_model(run_dir / "dynamics" / "best.safetensors")
    system, _ = _first_frame(heldout, model.dtype)
    prop = LearnedPropagator(
        model,
        ref["temperature_k"],
        ref["friction_per_ps"] / 1000.0,
        energy_model=load_model(ff_path, dtype=model.dtype) if opts["rescale"] else None,
        seed=seed,
        substeps=opts["substeps"],
        rescale_every=opts["every"],
    )
    traj = out / f"traj_{seed}.h5"
    alphas = []
    t0, c0 = time.perf_counter(), time.process_time()
    with Simulation(prop, system, [TrajectoryReporter(traj, 1, forces=False, overwrite=True)]) as sim:
        for _ in range(strides):
            sim.run(1)
            alphas.append(float(sim.state.aux["alpha"][0]))
        guarded = int(sim.state.aux["rescale_guarded"].sum())
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    demo_validate = DemoConfig().validate
    vcfg = dataclasses.replace(demo_validate, temperature_k=ref["temperature_k"])  # no model: no accuracy
    res = validate(heldout, traj, vcfg, out_dir=report or out / f"report_{seed}", echo=lambda m: None)
    metrics = {m.name: m.value for m in res.metrics}
    a = torch.tensor(alphas, dtype=torch.float64)
    d_rows = [m for m in res.metrics if m.name == "diffusion_rel_error[all]"]
    return {
        **{k: metrics.get(k) for k in KEYS},
        "D_reference": d_rows[0].reference if d_rows else None,
        "D_surrogate": d_rows[0].surrogate if d_rows else None,
        "alpha_mean": float(a.mean()),
        "alpha_std": float(a.std()),
        "rescale_guarded_strides": guarded,
        "wall_s": wall,
        "cpu_s": cpu,
        "dt_fs": prop.dt_fs,
        "load_avg_end": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", type=pathlib.Path, required=True)
    ap.add_argument(
        "--mode",
        action="append",
        required=True,
        help="name:substeps=K,rescale=true|false,every=substep|stride",
    )
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--strides", type=int, default=500)
    ap.add_argument("--name", default="large_step_rescale")
    ap.add_argument(
        "--report-dir",
        type=pathlib.Path,
        default=None,
        help="keep each run's validation report (PNG plots) here",
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    payload = header(
        "python benchmarks/large_step_rescale.py " + " ".join(argv if argv is not None else sys.argv[1:])
    )
    payload.update({"run_dir": str(args.run_dir), "load_avg_start": os.getloadavg(), "modes": {}})
    with tempfile.TemporaryDirectory() as tmp:
        for text in args.mode:
            name, opts = parse_mode(text)
            rows = []
            for seed in args.seeds:
                out = pathlib.Path(tmp) / name
                out.mkdir(exist_ok=True)
                rep = None if args.report_dir is None else args.report_dir / f"{name}_seed{seed}"
                rows.append({"seed": seed, **run_mode(args.run_dir, opts, seed, args.strides, out, rep)})
                r = rows[-1]
                print(
                    f"{name} seed {seed}: T {r['mean_temperature']:.2f} K, KS p {r['kinetic_ks_p']:.3g}, "
                    f"RDF {r['rdf_mae[Ar-Ar]']:.4f}, D err {r['diffusion_rel_error[all]']:.3f} "
                    f"(D {r['D_surrogate']:.4g} vs {r['D_reference']:.4g}), VACF {r['vacf_mae']:.4f}, "
                    f"alpha {r['alpha_mean']:.4f} ± {r['alpha_std']:.4f}, {r['wall_s']:.0f} s",
                    flush=True,
                )
            payload["modes"][name] = {"options": opts, "runs": rows}
            write_json(args.name, payload)
    return payload


if __name__ == "__main__":
    main()
