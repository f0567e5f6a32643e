"""Force-field recipe on the demo's argon: held-out force RMSE / σ(F) against training steps.

    python benchmarks/force_field_recipe.py --out /tmp/ffr --set force_field.epochs=20 --name ffr_20

Runs the demo's reference stage (reused when present in ``--out``) and its force-field training
with the demo config plus ``--set`` overrides, then evaluates the best checkpoint on 50 evenly
spaced frames of the held-out NVT run (:func:`hyenamd.validate.accuracy.evaluate_model`).
Writes ``benchmarks/results/<name>.json`` (machine, date, commit, command, load average, CPU
seconds of this process).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import header, write_json


def _patch_init(post) -> None:
    """Run ``post(model)`` after every ``GHyena.__init__`` of this process (training and reload)."""
    from hyenamd.surrogate.model import GHyena

    init = GHyena.__init__

    def patched(self, *a, **kw):
        init(self, *a, **kw)
        post(self)

    GHyena.__init__ = patched


def _random_zero_layers() -> None:
    """Residual branches and vector gates start random (PyTorch's default init), not at zero."""

    def post(model):
        for m in model.modules():
            if isinstance(m, torch.nn.Linear) and not m.weight.is_meta and not bool(m.weight.detach().any()):
                m.reset_parameters()

    _patch_init(post)


def _absolute_floors() -> None:
    """Norm floors ε = 1 (absolute, frozen) and global pre-norm ε = 1, as before issue 12."""
    from hyenamd.surrogate.equivariant import SmoothNorm

    def post(model):
        for m in model.modules():
            if isinstance(m, SmoothNorm):
                m.log_eps.data.zero_()
                m.log_eps.requires_grad_(False)
            if hasattr(m, "prenorm_eps"):
                m.prenorm_eps = 1.0

    _patch_init(post)


def _frozen_floors() -> None:
    """Norm floors kept at their initial 1e-3 (not learned)."""
    from hyenamd.surrogate.equivariant import SmoothNorm

    def post(model):
        for m in model.modules():
            if isinstance(m, SmoothNorm):
                m.log_eps.requires_grad_(False)

    _patch_init(post)


#: Diagnostic ablations of the issue-12 model changes (applied by patching construction).
ABLATIONS = {
    "random_zero_layers": _random_zero_layers,
    "absolute_floors": _absolute_floors,
    "frozen_floors": _frozen_floors,
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="demo_output/recipe")
    p.add_argument("--name", default="force_field_recipe")
    p.add_argument("--config", default="configs/demo.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument(
        "--ablate",
        action="append",
        default=[],
        choices=sorted(ABLATIONS),
        help="undo one issue-12 model change after construction (diagnostic; see ABLATIONS)",
    )
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    for name in args.ablate:
        ABLATIONS[name]()
    from hyenamd.config import load_config
    from hyenamd.validate.accuracy import evaluate_model, evenly_spaced
    from hyenamd.validate.runner import as_trajectory
    from hyenamd.workflows.demo import DemoConfig
    from hyenamd.workflows.demo_stages import reference_stage
    from hyenamd.workflows.train import TrainConfig, train

    cfg = load_config(args.config, DemoConfig, [f"output_dir={args.out}", *args.overrides])
    out = pathlib.Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    load0 = os.getloadavg()
    train_store, heldout = reference_stage(cfg, out)
    t, c = time.perf_counter(), time.process_time()
    ff_cfg = TrainConfig(
        task="force_field",
        output_dir=str(out / f"ff_{args.name}"),
        data=dataclasses.replace(cfg.data, stores=(str(train_store),)),
        model=dataclasses.replace(cfg.model, seed=cfg.seed),
        training=dataclasses.replace(cfg.force_field, task="force_field", seed=cfg.seed, progress=False),
    )
    res = train(ff_cfg, echo=lambda m: print(m, flush=True))
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    from hyenamd.surrogate import load_model

    model = load_model(res.best_path)
    traj = as_trajectory(heldout)
    acc = evaluate_model(model, traj, evenly_spaced(len(traj), 50))
    payload = {
        **header("python benchmarks/force_field_recipe.py " + " ".join(sys.argv[1:])),
        "load_average_start": load0,
        "load_average_end": os.getloadavg(),
        "ablations": args.ablate,
        "training": dataclasses.asdict(ff_cfg.training),
        "model": dataclasses.asdict(ff_cfg.model),
        "epochs_run": res.epochs_run,
        "optimizer_steps": res.steps,
        "train_wall_s": wall,
        "train_cpu_s": cpu,
        "valid_metrics": res.best_metrics,
        "heldout_force_rel_rmse": acc.force_rel_rmse,
        "heldout_force_rmse_eV_per_A": acc.force_rmse,
        "heldout_energy_mae_meV_per_atom": acc.energy_mae,
        "heldout_frames": acc.n_frames,
        "history_valid_loss": res.history.get("valid_loss"),
    }
    path = write_json(args.name, payload)
    print(
        f"{args.name}: steps {res.steps}, held-out force RMSE/σ(F) {acc.force_rel_rmse:.4f}, "
        f"energy MAE {acc.energy_mae:.3f} meV/atom, train {wall:.0f} s wall / {cpu:.0f} s CPU → {path}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
