"""Issue 13 item 2 (water): a G-Hyena force field for flexible TIP3P water, trained, run and validated.

    OMP_NUM_THREADS=1 python benchmarks/water_force_field.py --out runs/water_ff [--box-nm 1.6 --cutoff-nm 0.7]
        [--train-ps 20 --heldout-ps 10 --md-ps 10] [--md-cpu-budget S] [--model CKPT] [--set KEY=VALUE ...]
    python benchmarks/water_force_field.py --quick --out /tmp/wff     # every stage on a tiny budget (CI)

Stages (each timed in CPU seconds of this process, ``time.process_time``, and wall seconds):

1. reference: two OpenMM NVT runs of ``configs/reference/water.yaml`` (flexible TIP3P, 300 K,
   dt 0.5 fs, PME) with the box/cutoff of ``--box-nm``/``--cutoff-nm``: the *training* run
   (seed 0, ``--train-ps``, a frame every 20 fs) and an independent *held-out* run (seed 1,
   ``--heldout-ps``, a frame every ``--report-steps`` steps). Stores already in ``--out`` are reused.
2. train: ``hyenamd train configs/train/water_force_field.yaml`` on the training store (plus
   ``--set`` overrides of that config), the demo's recipe (cosine LR, EMA, per-species energy
   shifts, best checkpoint and early stopping on the validation segments' force RMSE).
   ``--model CKPT`` skips it.
3. accuracy: force RMSE / σ(F) of the best checkpoint on 50 evenly spaced held-out frames.
4. md: Langevin BAOAB NVT with the model (dt and friction of the reference, 300 K, Verlet list
   with a 1 Å skin), from the held-out run's first frame, for ``--md-ps`` ps or until
   ``--md-cpu-budget`` CPU seconds are spent (what was reached is recorded).
5. validate: :func:`hyenamd.validate.validate` of the MD against the held-out run with
   ``configs/validate/water.yaml`` (O–O RDF MAE, ⟨T⟩, kinetic-energy KS test, D(O), blow-up);
   the training run is the baseline (what an exact run of another seed scores).

Writes ``benchmarks/results/<name>.json`` (machine, date, commit, command, load averages, CPU
seconds per stage, the numbers, the goals met or missed) and ``docs/figures/<name>.png`` (O–O
RDF model vs reference; temperature traces).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import pathlib
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import FIGURES, header, save_figure, write_json

ROOT = pathlib.Path(__file__).resolve().parents[1]
#: issue 13 item 2's goals for water
GOALS = {"force_rel_rmse": 0.10, "rdf_mae_O-O": 0.05, "stable_ps": 10.0}


class Stage:
    """Wall and CPU seconds and load averages of one stage (``with Stage(name, log): ...``)."""

    def __init__(self, name: str, log: dict) -> None:
        self.name, self.log = name, log

    def __enter__(self):
        self.t, self.c, self.load = time.perf_counter(), time.process_time(), os.getloadavg()
        print(f"[{time.strftime('%H:%M:%S')}] {self.name} ...", flush=True)
        return self

    def __exit__(self, *exc):
        self.log[self.name] = {
            "wall_s": time.perf_counter() - self.t,
            "cpu_s": time.process_time() - self.c,
            "load_average_start": self.load,
            "load_average_end": os.getloadavg(),
        }
        print(f"    {self.name}: {self.log[self.name]['cpu_s']:.0f} CPU s", flush=True)
        return False


def reference_runs(args, out: pathlib.Path) -> dict:
    """The training and held-out OpenMM runs (reused when their stores exist)."""
    from hyenamd.config import load_config
    from hyenamd.engine.reference import ReferenceConfig, reference_md

    base = load_config(
        args.reference_config,
        ReferenceConfig,
        [f"water_box_nm={args.box_nm}", f"cutoff_nm={args.cutoff_nm}", "progress=false"],
    )
    runs = {}
    for name, seed, ps, every in (
        ("train", 0, args.train_ps, 40),
        ("heldout", 1, args.heldout_ps, args.report_steps),
    ):
        n = max(every, round(ps * 1000 / base.dt_fs / every) * every)
        rc = dataclasses.replace(
            base,
            output=str(out / f"water_{name}.h5md"),
            seed=seed,
            n_steps=n,
            report_interval=every,
            equilibration_steps=args.equilibration_steps,
        )
        reused = pathlib.Path(rc.output).exists()
        if not reused:
            reference_md(rc)
        runs[name] = {"path": rc.output, "seed": seed, "steps": n, "report_interval": every, "reused": reused}
        print(f"    {name}: {rc.output} ({'reused' if reused else f'{n} steps'})", flush=True)
    runs["settings"] = {
        k: getattr(base, k) for k in ("temperature_k", "friction_per_ps", "dt_fs", "rigid_water")
    }
    runs["settings"] |= {"water_box_nm": args.box_nm, "cutoff_nm": args.cutoff_nm}
    return runs


def train_model(args, out: pathlib.Path, train_store: str):
    """``hyenamd train`` of the water config on ``train_store``; (result summary, TrainConfig)."""
    from hyenamd.config import load_config
    from hyenamd.workflows.train import TrainConfig, train

    cfg = load_config(
        args.train_config,
        TrainConfig,
        [f"output_dir={out / 'train'}", "overwrite=true", "training.progress=false", *args.overrides],
    )
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, stores=(train_store,)))
    res = train(cfg, echo=lambda m: print("    " + m, flush=True))
    summary = {
        "best_path": str(res.best_path),
        "epochs_run": res.epochs_run,
        "optimizer_steps": res.steps,
        "valid_metrics": res.best_metrics,
        "history_valid_loss": res.history.get("valid_loss"),  # ≈ (force RMSE / σ(F))² per epoch
    }
    return summary, cfg


def run_md(args, model_path: str, heldout: str, path: pathlib.Path, ref_settings: dict) -> dict:
    """Langevin NVT with the model from the held-out run's first frame, chunked under a CPU budget."""
    from hyenamd.engine import BlowUpError, LangevinBAOAB, Simulation, TrajectoryReporter
    from hyenamd.io import open_store
    from hyenamd.surrogate import load_model

    model = load_model(model_path)
    with open_store(heldout) as st:
        system = st[0].to(dtype=model.dtype)
    dt = float(ref_settings["dt_fs"])
    n = max(args.report_steps, round(args.md_ps * 1000 / dt / args.report_steps) * args.report_steps)
    integ = LangevinBAOAB(
        model,
        dt,
        float(ref_settings["temperature_k"]),
        friction_per_fs=float(ref_settings["friction_per_ps"]) / 1000.0,
        seed=args.seed,
        skin=args.skin,
    )
    rep = TrajectoryReporter(path, args.report_steps, forces=False, overwrite=True)
    chunk = max(args.report_steps, (n // 50) // args.report_steps * args.report_steps)
    c0, blowup, stopped = time.process_time(), None, None
    with Simulation(integ, system, [rep]) as sim:
        try:
            while sim.state.step < n:
                if args.md_cpu_budget and time.process_time() - c0 > args.md_cpu_budget:
                    stopped = f"CPU budget of {args.md_cpu_budget:g} s spent"
                    break
                sim.run(min(chunk, n - sim.state.step))
                print(f"    md: {sim.state.step * dt / 1000:.2f} ps", flush=True)
        except BlowUpError as e:
            blowup = str(e)
        steps = sim.state.step
    cpu = time.process_time() - c0
    return {
        "path": str(path),
        "steps_requested": n,
        "steps": steps,
        "ps": steps * dt / 1000,
        "dt_fs": dt,
        "skin_A": args.skin,
        "report_interval": args.report_steps,
        "blowup": blowup,
        "stopped": stopped,
        "cpu_s_per_step": cpu / max(steps, 1),
    }


def plot(res, md: dict, path: pathlib.Path) -> None:
    """O–O RDF (model vs held-out reference, and the baseline run) and the temperature traces."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    r = res.reference.rdf_r
    for st, label, style in (
        (res.reference, "OpenMM held-out", "k-"),
        (res.baseline, "OpenMM training run", "k:"),
        (res.surrogate, "G-Hyena force field", "C0-"),
    ):
        if st is not None and "O-O" in st.rdf:
            a.plot(r, st.rdf["O-O"], style, label=label, lw=1.2)
    a.set(xlabel="r (Å)", ylabel="g_OO(r)", title="O–O radial distribution")
    a.legend(fontsize=8)
    for st, label, style in ((res.reference, "OpenMM held-out", "k-"), (res.surrogate, "G-Hyena", "C0-")):
        if st.temperature is not None:
            b.plot(st.times / 1000, st.temperature, style, label=label, lw=0.8)
    b.axhline(float(res.config.temperature_k or 300.0), color="grey", ls="--", lw=0.8)
    b.set(xlabel="t (ps)", ylabel="T (K)", title=f"NVT, dt {md['dt_fs']:g} fs ({md['ps']:.2f} ps)")
    b.legend(fontsize=8)
    save_figure(fig, path)


def _finite(x) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else float(x)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/water_force_field_bench", help="stores, training, MD, report")
    p.add_argument("--name", default="water_force_field", help="JSON/figure name")
    p.add_argument("--reference-config", default=str(ROOT / "configs" / "reference" / "water.yaml"))
    p.add_argument("--train-config", default=str(ROOT / "configs" / "train" / "water_force_field.yaml"))
    p.add_argument("--validate-config", default=str(ROOT / "configs" / "validate" / "water.yaml"))
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], help="override of the train config"
    )
    p.add_argument("--box-nm", type=float, default=1.6, help="water box edge, nm (the reference config: 2.0)")
    p.add_argument("--cutoff-nm", type=float, default=0.7, help="OpenMM nonbonded (PME) cutoff, nm")
    p.add_argument("--train-ps", type=float, default=20.0)
    p.add_argument("--heldout-ps", type=float, default=10.0)
    p.add_argument("--equilibration-steps", type=int, default=4000)
    p.add_argument("--md-ps", type=float, default=10.0)
    p.add_argument(
        "--md-cpu-budget", type=float, default=0.0, help="stop the MD after this many CPU s (0: none)"
    )
    p.add_argument(
        "--report-steps", type=int, default=20, help="MD steps per stored frame (held-out and model)"
    )
    p.add_argument("--skin", type=float, default=1.0, help="Verlet-list skin, Å")
    p.add_argument("--seed", type=int, default=0, help="the model MD's Langevin seed")
    p.add_argument("--model", default=None, help="a trained checkpoint: skip the training stage")
    p.add_argument("--quick", action="store_true", help="tiny budgets for CI (numbers mean nothing)")
    args = p.parse_args(argv)
    if args.quick:
        args.box_nm, args.cutoff_nm, args.train_ps, args.heldout_ps = 1.2, 0.5, 0.5, 0.2
        args.equilibration_steps, args.md_ps, args.report_steps = 100, 0.05, 10
        args.overrides = ["data.stride=1", "training.epochs=1", "training.warmup_steps=1", *args.overrides]
    if args.model is not None and not pathlib.Path(args.model).is_file():
        p.error(f"--model {args.model} does not exist")
    if min(args.train_ps, args.heldout_ps, args.md_ps) <= 0:
        p.error("--train-ps, --heldout-ps and --md-ps must be positive")
    torch.set_num_threads(1)
    from hyenamd.config import load_config
    from hyenamd.surrogate import load_model
    from hyenamd.validate import ValidateConfig, validate
    from hyenamd.validate.accuracy import evaluate_model, evenly_spaced
    from hyenamd.validate.runner import as_trajectory

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stages: dict = {}
    load0, c0 = os.getloadavg(), time.process_time()
    with Stage("reference", stages):
        runs = reference_runs(args, out)
    train_summary, train_cfg = None, None
    model_path = args.model
    if model_path is None:
        with Stage("train", stages):
            train_summary, train_cfg = train_model(args, out, runs["train"]["path"])
        model_path = train_summary["best_path"]
    model = load_model(model_path)
    with Stage("accuracy", stages):
        held = as_trajectory(runs["heldout"]["path"])
        acc = evaluate_model(model, held, evenly_spaced(len(held), 50))
    print(f"    held-out force RMSE/σ(F) {acc.force_rel_rmse:.4f} on {acc.n_frames} frames", flush=True)
    with Stage("md", stages):
        md = run_md(args, model_path, runs["heldout"]["path"], out / "model_md.h5md", runs["settings"])
    vcfg = load_config(
        args.validate_config,
        ValidateConfig,
        ["ensemble=nvt", f"temperature_k={runs['settings']['temperature_k']}", "progress=false"],
    )
    with Stage("validate", stages):
        res = validate(
            runs["heldout"]["path"],
            md["path"],
            vcfg,
            baseline=runs["train"]["path"],
            out_dir=out / "report",
            echo=lambda m: print("    " + m, flush=True),
        )
    print(res.table())
    values = {m.name: _finite(m.value) for m in res.metrics}
    rdf_mae = values.get("rdf_mae[O-O]")
    # stable: no blow-up over the whole requested length, no broken O–H bond, no detached H
    stable_ps = md["ps"] if md["blowup"] is None else res.surrogate.blowup_time / 1000
    intact = values.get("broken_bond_fraction") == 0 and values.get("detached_h") == 0
    goals = {
        "force_rel_rmse": {"value": acc.force_rel_rmse, "goal": GOALS["force_rel_rmse"]},
        "rdf_mae_O-O": {"value": rdf_mae, "goal": GOALS["rdf_mae_O-O"]},
        "stable_ps": {
            "value": stable_ps,
            "goal": GOALS["stable_ps"],
            "blowup": md["blowup"],
            "stopped": md["stopped"],
            "broken_bond_fraction": values.get("broken_bond_fraction"),
            "detached_h": values.get("detached_h"),
        },
    }
    goals["force_rel_rmse"]["met"] = acc.force_rel_rmse <= GOALS["force_rel_rmse"]
    goals["rdf_mae_O-O"]["met"] = rdf_mae is not None and rdf_mae <= GOALS["rdf_mae_O-O"]
    goals["stable_ps"]["met"] = md["blowup"] is None and intact and stable_ps >= GOALS["stable_ps"] - 1e-9
    fig = FIGURES / f"{args.name}.png"
    plot(res, md, fig)
    tc = None if train_cfg is None else dataclasses.asdict(train_cfg)
    payload = {
        **header(
            "python benchmarks/water_force_field.py " + " ".join(sys.argv[1:] if argv is None else argv)
        ),
        "quick": args.quick,
        "load_average_start": load0,
        "load_average_end": os.getloadavg(),
        "stages": stages,
        "total_cpu_s": time.process_time() - c0,
        "reference": runs,
        "train_config": tc,
        "training": train_summary,
        "model": model_path,
        "model_parameters": sum(p.numel() for p in model.parameters()),
        "heldout_accuracy": {
            "frames": acc.n_frames,
            "force_rel_rmse": acc.force_rel_rmse,
            "force_rmse_eV_per_A": acc.force_rmse,
            "energy_mae_meV_per_atom": acc.energy_mae,
        },
        "md": md,
        "validation": {
            "passed": res.passed,
            "metrics": {
                m.name: {"value": _finite(m.value), "limit": m.limit, "passed": m.passed, "spread": m.spread}
                for m in res.metrics
            },
        },
        "goals": goals,
        "figure": str(fig),
    }
    path = write_json(args.name, payload)
    verdict = ", ".join(f"{k} {v['value']} ({'met' if v['met'] else 'MISSED'})" for k, v in goals.items())
    print(f"{args.name}: {verdict} → {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
