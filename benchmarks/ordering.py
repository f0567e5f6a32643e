"""How much a G-Hyena depends on its sequence order: random vs trained models, argon and water.

For each system (LJ argon, flexible TIP3P water; reference data from OpenMM Langevin MD):

1. train a small Hilbert-ordered G-Hyena force field on reference frames (short, CPU-bounded),
   with the default order augmentation and (``--ablation``) without it;
2. force sensitivity: ``rms(F(order a) − F(order b)) / rms(F_ref)`` over held-out frames, for
   two valid orders (the canonical one vs ``order_samples`` variant 1, and vs a random valid
   order), for the trained models and a randomly initialised one (goal ≤ 2 %);
3. refresh jump: the order is fixed at t = 0 of a reference trajectory; at t = 1 ps and 10 ps
   the energy under the kept order is compared with the energy under a fresh order (exactly
   what ``Simulation(order_refresh_steps=M)`` does), ``|ΔE| / N`` against 0.1 × the model's
   energy MAE per atom on held-out frames (the goal). For argon the same is also measured on
   the surrogate's own NVE trajectory (``Integrator.refresh_order``).

    OMP_NUM_THREADS=1 python benchmarks/ordering.py [--quick] [--ablation]

Writes ``benchmarks/results/ordering.json``. CPU time (``time.process_time``) is reported per
training; wall-clock numbers are not (the machine is shared).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from common import header, write_json

from hyenamd import System
from hyenamd.surrogate import GHyena, GHyenaConfig
from hyenamd.surrogate.forces import compute_forces
from hyenamd.surrogate.ordering import canonical_order, order_samples, random_order
from hyenamd.surrogate.training import Sample, Trainer, TrainSettings, split_by_segment
from hyenamd.units import EV_PER_ANGSTROM_TO_KJ_PER_MOL_NM, EV_TO_KJ_PER_MOL, NM_TO_ANGSTROM


def reference_frames(name: str, n_frames: int, every_fs: float, seed: int = 0):
    """OpenMM Langevin frames (positions Å, energy eV, forces eV/Å) and the template System."""
    import openmm
    import openmm.unit as u

    from hyenamd.engine.reference_systems import argon_box, water_box

    if name == "argon":
        ref, dt_fs, temp = argon_box(n_cells=3, cutoff=8.0, switch_on=7.0, rattle=0.05, seed=seed), 5.0, 120.0
    else:
        ref, dt_fs, temp = water_box(1.4, cutoff_nm=0.6, nonbonded="CutoffPeriodic"), 0.5, 300.0
    integ = openmm.LangevinMiddleIntegrator(temp * u.kelvin, 1 / u.picosecond, dt_fs * u.femtoseconds)
    integ.setRandomNumberSeed(seed + 1)
    ctx = openmm.Context(ref.system, integ, openmm.Platform.getPlatformByName("CPU"), {"Threads": "1"})
    ctx.setPositions(ref.positions * u.nanometer)
    openmm.LocalEnergyMinimizer.minimize(ctx, 1.0, 200)
    ctx.setVelocitiesToTemperature(temp * u.kelvin, seed + 2)
    integ.step(int(2000 / dt_fs))  # 2 ps equilibration
    stride = max(1, round(every_fs / dt_fs))
    frames = []
    for _ in range(n_frames):
        integ.step(stride)
        st = ctx.getState(getPositions=True, getEnergy=True, getForces=True)
        x = st.getPositions(asNumpy=True).value_in_unit(u.nanometer) * NM_TO_ANGSTROM
        e = st.getPotentialEnergy().value_in_unit(u.kilojoule_per_mole) / EV_TO_KJ_PER_MOL
        f = st.getForces(asNumpy=True).value_in_unit(u.kilojoule_per_mole / u.nanometer)
        frames.append((np.asarray(x), e, np.asarray(f) / EV_PER_ANGSTROM_TO_KJ_PER_MOL_NM))
    return ref.to_hyenamd(), frames, dt_fs


def model_config(species, seed=0) -> GHyenaConfig:
    return GHyenaConfig(
        species=tuple(species), cutoff=4.5, n_scalar=32, n_vector=8, n_rbf=8, avg_neighbors=20.0,
        pattern=("local", "global", "local", "global"), dtype="float64", seed=seed, ordering="hilbert",
    )  # fmt: skip


def perturbed(model: GHyena, std: float = 0.1, seed: int = 0) -> GHyena:
    """A 'random model': the initial weights plus N(0, std²) on every parameter (the zero-initialised
    residual branches and heads of a fresh model would make it order-independent trivially)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(std * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model


def train(template: System, frames, *, augment: bool, epochs: int, out_dir: str) -> tuple[GHyena, dict]:
    samples = [
        Sample(template.replace(positions=torch.tensor(x)), e, torch.tensor(f), segment=k // 10)
        for k, (x, e, f) in enumerate(frames)
    ]
    tr, va = split_by_segment(samples, 0.2, seed=0)
    model = GHyena(model_config(sorted(set(template.species.tolist()))))
    settings = TrainSettings(
        epochs=epochs, batch_size=2, lr=3e-3, warmup_steps=10, patience=0, progress=False,
        order_augment=augment, seed=0,
    )  # fmt: skip
    t0 = time.process_time()
    res = Trainer(model, tr, va, settings, out_dir=out_dir, echo=lambda *_: None).fit()
    from hyenamd.surrogate import load_model

    best = load_model(res.best_path)
    return best, {"cpu_s": time.process_time() - t0, "epochs": res.epochs_run, "valid": va, "train": tr}


def evaluate(model, system: System, order: torch.Tensor) -> tuple[float, torch.Tensor]:
    from hyenamd import Batch

    out = compute_forces(model, Batch.from_system(system.replace(order=order)))
    return float(out["energy"][0]), out["forces"].detach()


def force_sensitivity(model, systems, f_ref_rms: float) -> dict:
    """RMS force change between two valid orders, relative to the reference force RMS (``*_rel_rms``)
    and to the model's own force RMS (``*_rel_model_rms``; the meaningful scale for a random model)."""
    g = torch.Generator().manual_seed(0)
    d_var, d_rand, own = [], [], []
    for s in systems:
        rows = order_samples(s, "hilbert", 2)
        _, f0 = evaluate(model, s, rows[0])
        _, f1 = evaluate(model, s, rows[1])
        _, f2 = evaluate(model, s, random_order(s, "hilbert", g))
        d_var.append((f1 - f0).pow(2).mean())
        d_rand.append((f2 - f0).pow(2).mean())
        own.append(f0.pow(2).mean())
    rms = {
        k: float(torch.stack(v).mean().sqrt()) for k, v in (("var", d_var), ("rand", d_rand), ("own", own))
    }
    return {
        "variant_rel_rms": rms["var"] / f_ref_rms,
        "random_frame_rel_rms": rms["rand"] / f_ref_rms,
        "variant_rel_model_rms": rms["var"] / rms["own"],
        "random_frame_rel_model_rms": rms["rand"] / rms["own"],
    }


def energy_mae_per_atom(model, samples) -> float:
    errs = []
    for x in samples:
        e, _ = evaluate(model, x.system, canonical_order(x.system, "hilbert"))
        errs.append(abs(e - x.energy) / x.system.n_atoms)
    return float(np.mean(errs))


def refresh_jumps(model, template: System, traj, dt_fs: float, times_ps=(1.0, 10.0)) -> dict:
    """|E(kept order) − E(fresh order)| / N at each time of a trajectory started at traj[0]."""
    x0 = torch.tensor(traj[0])
    order0 = canonical_order(template.replace(positions=x0), "hilbert")
    out = {}
    for t in times_ps:
        k = round(t * 1000 / dt_fs)
        if k >= len(traj):
            continue
        s = template.replace(positions=torch.tensor(traj[k]))
        e_old, _ = evaluate(model, s, order0)
        e_new, _ = evaluate(model, s, canonical_order(s, "hilbert"))
        out[f"{t:g}ps"] = abs(e_new - e_old) / s.n_atoms
    return out


def reference_trajectory(name: str, total_ps: float, every_fs: float, seed: int = 5):
    tmpl, frames, _ = reference_frames(name, int(total_ps * 1000 / every_fs) + 1, every_fs, seed=seed)
    return tmpl, [f[0] for f in frames]


def surrogate_md_jumps(model, template: System, frame, dt_fs=5.0, times_ps=(1.0, 10.0)) -> dict:
    """NVE with the trained model from a reference frame; refresh_order at each time (on a copy)."""
    from hyenamd.engine import VelocityVerlet
    from hyenamd.testing import maxwell_boltzmann

    vv = VelocityVerlet(model, dt_fs)
    state = vv.init(maxwell_boltzmann(template.replace(positions=torch.tensor(frame)), 120.0, seed=3))
    out, done = {}, 0
    for t in times_ps:
        k = round(t * 1000 / dt_fs)
        state = vv.run(state, k - done)
        done = k
        _, jump = vv.refresh_order(state)
        out[f"{t:g}ps"] = abs(float(jump[0])) / template.n_atoms
        out[f"temperature_{t:g}ps_k"] = float(state.temperature()[0])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few frames/epochs (a smoke run)")
    ap.add_argument("--ablation", action="store_true", help="also train without order augmentation")
    ap.add_argument("--systems", default="argon,water")
    ap.add_argument("--name", default="ordering", help="results file benchmarks/results/<name>.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    n_frames, epochs = (20, 1) if args.quick else (80, 10)
    result = {**header("OMP_NUM_THREADS=1 python benchmarks/ordering.py " + " ".join(sys.argv[1:]))}
    result["load_before"] = os.getloadavg()
    result["settings"] = {
        "n_frames": n_frames,
        "epochs": epochs,
        "model": "F=32, C=8, L G L G, r_c 4.5 Å, conv and norms: GHyenaConfig defaults",
        "random_model": "initial weights + N(0, 0.1²) on every parameter",
    }
    for name in args.systems.split(","):
        every = 50.0 if name == "argon" else 10.0
        t0 = time.process_time()
        template, frames, _dt_fs = reference_frames(name, n_frames, every)
        traj_tmpl, traj = reference_trajectory(
            name, 1.0 if args.quick else 10.0, 50.0 if name == "argon" else 25.0
        )
        entry: dict = {"n_atoms": template.n_atoms, "reference_cpu_s": time.process_time() - t0}
        f_rms = float(np.sqrt(np.mean([np.mean(f[2] ** 2) for f in frames])))
        entry["force_rms_ev_per_a"] = f_rms
        valid_sys = [template.replace(positions=torch.tensor(x)) for x, _, _ in frames[-6:]]
        random_model = perturbed(GHyena(model_config(sorted(set(template.species.tolist())), seed=1)))
        entry["random_model"] = force_sensitivity(random_model, valid_sys, f_rms)
        variants = [("augmented", True)] + ([("not_augmented", False)] if args.ablation else [])
        for label, augment in variants:
            with tempfile.TemporaryDirectory() as d:
                model, info = train(template, frames, augment=augment, epochs=epochs, out_dir=d)
            vs = [x.system for x in info["valid"]]
            mae = energy_mae_per_atom(model, info["valid"])
            res = {
                "train_cpu_s": info["cpu_s"],
                "epochs": info["epochs"],
                "energy_mae_ev_per_atom": mae,
                "force_sensitivity": force_sensitivity(model, vs, f_rms),
                "refresh_jump_ev_per_atom_reference_md": refresh_jumps(
                    model, traj_tmpl, traj, 50.0 if name == "argon" else 25.0
                ),
            }
            if name == "argon":
                res["refresh_jump_ev_per_atom_surrogate_nve"] = surrogate_md_jumps(
                    model, template, frames[-1][0], times_ps=(1.0,) if args.quick else (1.0, 10.0)
                )
            res["goal_jump_ev_per_atom"] = 0.1 * mae
            entry[label] = res
            print(name, label, {k: v for k, v in res.items() if k != "valid"}, flush=True)
        result[name] = entry
    result["load_after"] = os.getloadavg()
    path = write_json(args.name, result)
    print("wrote", path)


if __name__ == "__main__":
    main()
