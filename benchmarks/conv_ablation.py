"""Ablation of the global blocks' convolution mode (issue #12 item 4): circular vs linear.

For argon (LJ, 256 atoms, 90 K liquid) and flexible TIP3P water (1.5 nm box, ~330 atoms, 300 K), one short
OpenMM reference trajectory each (``hyenamd reference``, reduced ``n_steps``), then per mode the
same small G-Hyena (``local, global, local, global``, F=32, C=8) trained for the same number of
epochs (same seed, same data split), then:

* accuracy: validation energy/force errors (``TrainResult.best_metrics``, EMA weights);
* NVE drift: velocity Verlet with the trained model from a validation frame (its reference
  velocities), ``--nve-steps`` steps; drift = slope of a linear fit of the total energy, in
  meV/atom/ps, and the RMS of its fluctuation.

Bounded: every stage is small (a few CPU minutes per mode on one thread). Writes
``benchmarks/results/conv_ablation.json``; the decision goes to docs/model.md.

    python benchmarks/conv_ablation.py [--quick] [--epochs 8] [--nve-steps 400]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import header, write_json

SYSTEMS = {
    # name: (reference yaml, overrides, model species, cutoff Å, avg_neighbors, dt_fs for NVE)
    "argon": ("configs/reference/argon.yaml", ["n_steps=2000", "report_interval=10"], (18,), 6.0, 25.0, 4.0),
    "water": (
        "configs/reference/water.yaml",
        [
            "n_steps=2000",
            "report_interval=10",
            "equilibration_steps=500",
            "water_box_nm=1.5",
            "cutoff_nm=0.7",
        ],
        (1, 8),
        4.5,
        30.0,
        0.5,
    ),
}


def make_reference(name: str, out: pathlib.Path) -> pathlib.Path:
    from hyenamd.config import load_config
    from hyenamd.engine.reference import ReferenceConfig, reference_md

    yaml, overrides, *_ = SYSTEMS[name]
    cfg = load_config(pathlib.Path(yaml), ReferenceConfig, [*overrides, f"output={out / (name + '.h5')}"])
    return reference_md(cfg)


def train_one(name: str, store: pathlib.Path, conv: str, epochs: int, out: pathlib.Path):
    from hyenamd.surrogate import GHyenaConfig
    from hyenamd.surrogate.train_data import TrainSettings
    from hyenamd.workflows.train import DataConfig, TrainConfig, train

    _, _, species, cutoff, nu, _ = SYSTEMS[name]
    model = GHyenaConfig(
        species=species,
        cutoff=cutoff,
        n_scalar=32,
        n_vector=8,
        avg_neighbors=nu,
        pattern=("local", "global", "local", "global"),
        filter_w_init=64.0,
        conv=conv,
        dtype="float32",
        seed=0,
    )
    cfg = TrainConfig(
        task="force_field",
        output_dir=str(out / f"{name}_{conv}"),
        data=DataConfig(stores=[str(store)], n_segments=5, valid_fraction=0.2),
        model=model,
        training=TrainSettings(
            epochs=epochs, batch_size=4, lr=3e-3, warmup_steps=20, patience=0, progress=False
        ),
    )
    t0 = time.process_time()
    result = train(cfg, echo=lambda *_: None)
    return result, time.process_time() - t0


def nve_drift(name: str, ckpt: pathlib.Path, store: pathlib.Path, n_steps: int) -> dict:
    from hyenamd.engine.integrators import VelocityVerlet
    from hyenamd.io import open_store
    from hyenamd.surrogate import load_model

    model = load_model(ckpt, dtype=torch.float64)
    for p in model.parameters():
        p.requires_grad_(False)
    with open_store(store) as st:
        system = st[len(st) - 1].to(dtype=torch.float64)
    dt = SYSTEMS[name][5]
    vv = VelocityVerlet(model, dt, skin=1.0)
    state = vv.init(system)
    energies = []
    for _ in range(n_steps):
        state = vv.step(state)
        energies.append(float(state.energy.sum() + state.kinetic_energy().sum()))
    e = np.asarray(energies)
    t_ps = np.arange(len(e)) * dt / 1000.0
    slope = np.polyfit(t_ps, e, 1)[0]
    n = system.n_atoms
    fluct = e - np.polyval(np.polyfit(t_ps, e, 1), t_ps)
    return {
        "nve_steps": n_steps,
        "dt_fs": dt,
        "drift_mev_per_atom_per_ps": float(1000.0 * slope / n),
        "fluct_rms_mev_per_atom": 1000.0 * float(np.sqrt((fluct**2).mean())) / n,
        "finite": bool(np.isfinite(e).all()),
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--nve-steps", type=int, default=400)
    ap.add_argument("--systems", nargs="+", default=list(SYSTEMS))
    ap.add_argument("--quick", action="store_true", help="1 epoch, 20 NVE steps (smoke test)")
    args = ap.parse_args(argv)
    if args.quick:
        args.epochs, args.nve_steps = 1, 20
    torch.set_num_threads(1)
    payload = header("python benchmarks/conv_ablation.py " + " ".join(argv or sys.argv[1:]))
    payload["load_avg_start"] = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        for name in args.systems:
            store = make_reference(name, tmp)
            for conv in ("circular", "linear"):
                result, cpu_s = train_one(name, store, conv, args.epochs, tmp)
                row = {"system": name, "conv": conv, "epochs": result.epochs_run, "train_cpu_s": cpu_s}
                row.update({f"valid_{k}": float(v) for k, v in result.best_metrics.items()})
                row["best_valid_loss"] = float(result.best_valid_loss)
                row.update(nve_drift(name, result.best_path, store, args.nve_steps))
                rows.append(row)
                print({k: (round(v, 5) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    payload["rows"] = rows
    payload["load_avg_end"] = os.getloadavg()
    payload["settings"] = dataclasses.asdict(args) if dataclasses.is_dataclass(args) else vars(args)
    write_json("conv_ablation" + ("_quick" if args.quick else ""), payload)
    return payload


if __name__ == "__main__":
    main()
