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

Levers (issue #12 item 3), each an option; the defaults reproduce the original run:

* ``--pair-cutoff`` adds the learned two-body term (``GHyenaConfig.pair_cutoff``; ``ref`` = the
  reference potential's cutoff: argon 8 Å, water 6 Å), an order-free part of the energy;
* ``--frames`` / ``--epochs``: more reference frames / longer training;
* ``--order-samples 1,4,8,16``: inference averaged over K orders (what ``order_samples=K`` does
  in the ASE calculator, the OpenMM force and the engine). "Two valid orders" for K is then two
  valid K-order sets: set A = ``order_samples(system, K)`` (rows 0..K-1: exactly the orders the
  adapters average over), set B = rows K..2K-1 of ``order_samples(system, 2K)`` (K further
  deterministic variants: permuted/reflected/offset canonical axes, disjoint from A), set C = K
  orders drawn with ``random_order`` (random frames/offsets, the training augmentation's
  distribution; generator seeded 0). Force difference = ``rms(F̄_A − F̄_B)`` ("variant") and
  ``rms(F̄_A − F̄_C)`` ("random frame"), F̄ = mean over the set. K = 1 is the single-order
  comparison (canonical vs variant 1, canonical vs one random order). The refresh jump for K
  is ``|mean_A E(x_t; A(x_0)) − mean_A E(x_t; A(x_t))| / N`` (the K orders fixed at t = 0 vs
  recomputed at t), what ``Integrator.refresh_order`` reports with ``order_samples=K``; for the
  argon NVE trajectory (run with K = 1) the same is evaluated on its frames at 1 ps / 10 ps;
* ``--jump-origins M``: the reference trajectory is M − 1 ps longer and the jumps are also
  measured from M starts 1 ps apart (RMS and largest over starts): one start is one sample.

    OMP_NUM_THREADS=1 python benchmarks/ordering.py [--quick] [--ablation] [--pair-cutoff ref]
        [--frames 80] [--epochs 10] [--order-samples 1,4,8,16] [--jump-origins 1]
        [--save-models DIR] [--name ordering]

Writes ``benchmarks/results/<name>.json`` (default ``ordering``). CPU time
(``time.process_time``) is reported per training; wall-clock numbers are not (the machine is
shared).
"""

from __future__ import annotations

import argparse
import json
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


REFERENCE_CUTOFF = {"argon": 8.0, "water": 6.0}  # Å, the OpenMM reference's nonbonded cutoff


def model_config(species, seed=0, pair_cutoff: float | None = None) -> GHyenaConfig:
    return GHyenaConfig(
        species=tuple(species), cutoff=4.5, n_scalar=32, n_vector=8, n_rbf=8, avg_neighbors=20.0,
        pattern=("local", "global", "local", "global"), dtype="float64", seed=seed, ordering="hilbert",
        pair_cutoff=pair_cutoff,
    )  # fmt: skip


def perturbed(model: GHyena, std: float = 0.1, seed: int = 0) -> GHyena:
    """A 'random model': the initial weights plus N(0, std²) on every parameter (the zero-initialised
    residual branches and heads of a fresh model would make it order-independent trivially)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(std * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model


def train_split(template: System, frames) -> dict:
    """The training/held-out split of :func:`train` (segments of 10 frames, 20 % held out, seed 0)."""
    samples = [
        Sample(template.replace(positions=torch.tensor(x)), e, torch.tensor(f), segment=k // 10)
        for k, (x, e, f) in enumerate(frames)
    ]
    tr, va = split_by_segment(samples, 0.2, seed=0)
    return {"train": tr, "valid": va}


def train(
    template: System, frames, *, augment: bool, epochs: int, out_dir: str, pair_cutoff: float | None = None
) -> tuple[GHyena, dict]:
    split = train_split(template, frames)
    tr, va = split["train"], split["valid"]
    model = GHyena(model_config(sorted(set(template.species.tolist())), pair_cutoff=pair_cutoff))
    settings = TrainSettings(
        epochs=epochs, batch_size=2, lr=3e-3, warmup_steps=10, patience=0, progress=False,
        order_augment=augment, seed=0,
    )  # fmt: skip
    t0 = time.process_time()
    res = Trainer(model, tr, va, settings, out_dir=out_dir, echo=lambda *_: None).fit()
    from hyenamd.surrogate import load_model

    best = load_model(res.best_path)
    return best, {"cpu_s": time.process_time() - t0, "epochs": res.epochs_run, "valid": va, "train": tr}


def evaluate_orders(model, system: System, orders: torch.Tensor, chunk: int = 8):
    """Energies ``[K]`` eV and forces ``[K, N, 3]`` eV/Å of ``system`` under each order ``orders[k]``
    (copies batched ``chunk`` at a time; every copy is an independent system of the batch)."""
    from hyenamd import Batch

    es, fs = [], []
    for a in range(0, orders.shape[0], chunk):
        rows = orders[a : a + chunk]
        out = compute_forces(model, Batch.from_systems([system.replace(order=o) for o in rows]))
        es.append(out["energy"].detach())
        fs.append(out["forces"].detach().reshape(rows.shape[0], system.n_atoms, 3))
    return torch.cat(es), torch.cat(fs)


def evaluate(model, system: System, order: torch.Tensor) -> tuple[float, torch.Tensor]:
    e, f = evaluate_orders(model, system, order.unsqueeze(0))
    return float(e[0]), f[0]


def force_sensitivity(model, systems, f_ref_rms: float, ks=(1,), samples=None) -> dict:
    """RMS force change between two valid K-order sets (module docstring), relative to the reference
    force RMS (``*_rel_rms``) and to the model's own force RMS (``*_rel_model_rms``; the meaningful
    scale for a random model); ``*_energy_ev_per_atom``: RMS over frames of the energy change per
    atom between the two sets (to compare with the refresh jump, which also contains staleness).
    With reference ``samples`` (same frames as ``systems``): the accuracy of the K-averaged model
    (set A): ``energy_mae_ev_per_atom`` and ``force_rmse_rel`` (RMSE / reference force RMS).
    The K = 1 numbers are at the top level, every K under ``by_k``."""
    g = torch.Generator().manual_seed(0)
    k_max = max(ks)
    d = {k: {x: [] for x in ("var", "rand", "e_var", "e_rand", "e_err", "f_err")} for k in ks}
    own = []
    for i, s in enumerate(systems):
        e_det, f_det = evaluate_orders(model, s, order_samples(s, "hilbert", 2 * k_max))
        rand = torch.stack([random_order(s, "hilbert", g) for _ in range(k_max)])
        e_rand, f_rand = evaluate_orders(model, s, rand)
        own.append(f_det[0].pow(2).mean())
        for k in ks:
            fa, ea = f_det[:k].mean(0), e_det[:k].mean()
            d[k]["var"].append((f_det[k : 2 * k].mean(0) - fa).pow(2).mean())
            d[k]["rand"].append((f_rand[:k].mean(0) - fa).pow(2).mean())
            d[k]["e_var"].append(((e_det[k : 2 * k].mean() - ea) / s.n_atoms) ** 2)
            d[k]["e_rand"].append(((e_rand[:k].mean() - ea) / s.n_atoms) ** 2)
            if samples is not None:
                d[k]["e_err"].append(abs(float(ea) - samples[i].energy) / s.n_atoms)
                d[k]["f_err"].append(float((fa - samples[i].forces).pow(2).mean()))
    own_rms = float(torch.stack(own).mean().sqrt())
    by_k = {}
    for k in ks:
        var, rnd, e_var, e_rnd = (
            float(torch.stack(d[k][x]).mean().sqrt()) for x in ("var", "rand", "e_var", "e_rand")
        )
        by_k[str(k)] = {
            "variant_rel_rms": var / f_ref_rms,
            "random_frame_rel_rms": rnd / f_ref_rms,
            "variant_rel_model_rms": var / own_rms,
            "random_frame_rel_model_rms": rnd / own_rms,
            "variant_energy_ev_per_atom": e_var,
            "random_frame_energy_ev_per_atom": e_rnd,
        }
        if samples is not None:
            by_k[str(k)]["energy_mae_ev_per_atom"] = float(np.mean(d[k]["e_err"]))
            by_k[str(k)]["force_rmse_rel"] = float(np.sqrt(np.mean(d[k]["f_err"]))) / f_ref_rms
    return {**by_k[str(min(ks))], "by_k": by_k} if len(ks) > 1 else by_k[str(ks[0])]


def energy_mae_per_atom(model, samples) -> float:
    errs = []
    for x in samples:
        e, _ = evaluate(model, x.system, canonical_order(x.system, "hilbert"))
        errs.append(abs(e - x.energy) / x.system.n_atoms)
    return float(np.mean(errs))


def refresh_jumps(model, template: System, frames: dict, ks=(1,)) -> dict:
    """``|mean_K E(kept orders) − mean_K E(fresh orders)| / N`` at each time of a trajectory.

    ``frames``: ``{"0ps": x_0, "1ps": x_1, ...}`` positions (Å); the K orders are those of x_0
    (``order_samples(·, K)``), kept, against the K orders recomputed at each later frame. K = 1
    is the plain refresh jump (top level); every K under ``by_k``.
    """
    k_max = max(ks)
    kept = order_samples(template.replace(positions=torch.tensor(frames["0ps"])), "hilbert", k_max)
    by_k: dict = {str(k): {} for k in ks}
    for t, x in frames.items():
        if t == "0ps":
            continue
        s = template.replace(positions=torch.tensor(x))
        e_old, _ = evaluate_orders(model, s, kept)
        e_new, _ = evaluate_orders(model, s, order_samples(s, "hilbert", k_max))
        for k in ks:
            by_k[str(k)][t] = abs(float(e_new[:k].mean() - e_old[:k].mean())) / s.n_atoms
    return {**by_k[str(min(ks))], "by_k": by_k} if len(ks) > 1 else by_k[str(ks[0])]


def reference_trajectory(name: str, total_ps: float, every_fs: float, seed: int = 5):
    tmpl, frames, _ = reference_frames(name, int(total_ps * 1000 / every_fs) + 1, every_fs, seed=seed)
    return tmpl, [f[0] for f in frames]


def trajectory_frames(traj, dt_fs: float, times_ps=(1.0, 10.0)) -> dict:
    """``{"0ps": traj[0], "1ps": ..., "10ps": ...}`` (times beyond the trajectory are left out)."""
    out = {"0ps": traj[0]}
    for t in times_ps:
        k = round(t * 1000 / dt_fs)
        if k < len(traj):
            out[f"{t:g}ps"] = traj[k]
    return out


def jumps_over_origins(model, template: System, traj, dt_fs: float, n_origins: int, ks=(1,)) -> dict:
    """Refresh jumps from ``n_origins`` starts 1 ps apart (t₀ = 0, 1, ... ps) of one trajectory:
    per K and lag, the RMS and the largest ``|ΔE| / N`` over origins and every value. One origin
    is one sample of a random quantity; several give its typical size."""
    per: dict = {str(k): {} for k in ks}
    step = round(1000 / dt_fs)
    for m in range(n_origins):
        res = refresh_jumps(model, template, trajectory_frames(traj[m * step :], dt_fs), ks)
        by_k = res.get("by_k") or {str(ks[0]): res}
        for k, lags in by_k.items():
            for lag, v in lags.items():
                per[k].setdefault(lag, []).append(v)
    return {
        k: {
            lag: {"rms": float(np.sqrt(np.mean(np.square(v)))), "max": max(v), "values": v}
            for lag, v in lags.items()
        }
        for k, lags in per.items()
    }


def surrogate_nve_frames(model, template: System, frame, dt_fs=5.0, times_ps=(1.0, 10.0)):
    """NVE (K = 1, velocity Verlet) with the trained model from a reference frame: positions at 0
    and at each time, and the temperatures there."""
    from hyenamd.engine import VelocityVerlet
    from hyenamd.testing import maxwell_boltzmann

    vv = VelocityVerlet(model, dt_fs)
    state = vv.init(maxwell_boltzmann(template.replace(positions=torch.tensor(frame)), 120.0, seed=3))
    out, temps, done = {"0ps": state.positions.detach().numpy().copy()}, {}, 0
    for t in times_ps:
        k = round(t * 1000 / dt_fs)
        state = vv.run(state, k - done)
        done = k
        out[f"{t:g}ps"] = state.positions.detach().numpy().copy()
        temps[f"temperature_{t:g}ps_k"] = float(state.temperature()[0])
    return out, temps


def pair_cutoff_for(name: str, arg: str) -> float | None:
    if arg == "none":
        return None
    return REFERENCE_CUTOFF[name] if arg == "ref" else float(arg)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few frames/epochs (a smoke run)")
    ap.add_argument("--ablation", action="store_true", help="also train without order augmentation")
    ap.add_argument("--systems", default="argon,water")
    ap.add_argument("--frames", type=int, default=None, help="reference frames (default 80; --quick 20)")
    ap.add_argument("--epochs", type=int, default=None, help="training epochs (default 10; --quick 1)")
    ap.add_argument(
        "--pair-cutoff", default="none",
        help="learned two-body term: 'none' (default), 'ref' (the reference cutoff: argon 8, water 6 Å) or Å",
    )  # fmt: skip
    ap.add_argument("--order-samples", default="1", help="comma list of K (inference over K orders)")
    ap.add_argument(
        "--jump-origins", type=int, default=1,
        help="refresh jumps from this many trajectory starts 1 ps apart (RMS/max reported; default 1)",
    )  # fmt: skip
    ap.add_argument(
        "--load-models", default=None,
        help="PREFIX: evaluate PREFIX_<system>_<label>.safetensors (saved by --save-models) instead of training",
    )  # fmt: skip
    ap.add_argument(
        "--sens-frames", type=int, default=None,
        help="at most this many held-out frames (evenly spaced) for the order-set measures (default all)",
    )  # fmt: skip
    ap.add_argument("--save-models", default=None, help="keep the trained checkpoints in this folder")
    ap.add_argument("--name", default="ordering", help="results file benchmarks/results/<name>.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    n_frames = args.frames or (20 if args.quick else 80)
    epochs = args.epochs or (1 if args.quick else 10)
    ks = tuple(sorted({int(k) for k in args.order_samples.split(",")}))
    if ks[0] < 1:
        raise SystemExit(f"--order-samples: every K must be >= 1, got {ks}")
    result = {**header("OMP_NUM_THREADS=1 python benchmarks/ordering.py " + " ".join(sys.argv[1:]))}
    result["load_before"] = os.getloadavg()
    result["settings"] = {
        "n_frames": n_frames,
        "epochs": epochs,
        "pair_cutoff": args.pair_cutoff,
        "order_samples": list(ks),
        "jump_origins": args.jump_origins,
        "load_models": args.load_models,
        "sens_frames": args.sens_frames,
        "model": "F=32, C=8, L G L G, r_c 4.5 Å, conv and norms: GHyenaConfig defaults",
        "random_model": "initial weights + N(0, 0.1²) on every parameter",
    }
    cpu0 = time.process_time()
    for name in args.systems.split(","):
        every = 50.0 if name == "argon" else 10.0
        traj_every = 50.0 if name == "argon" else 25.0
        pair_cutoff = pair_cutoff_for(name, args.pair_cutoff)
        t0 = time.process_time()
        template, frames, _dt_fs = reference_frames(name, n_frames, every)
        traj_tmpl, traj = reference_trajectory(
            name, (1.0 if args.quick else 10.0) + args.jump_origins - 1, traj_every
        )
        entry: dict = {"n_atoms": template.n_atoms, "reference_cpu_s": time.process_time() - t0}
        entry["pair_cutoff"] = pair_cutoff
        f_rms = float(np.sqrt(np.mean([np.mean(f[2] ** 2) for f in frames])))
        entry["force_rms_ev_per_a"] = f_rms
        valid_sys = [template.replace(positions=torch.tensor(x)) for x, _, _ in frames[-6:]]
        species = sorted(set(template.species.tolist()))
        random_model = perturbed(GHyena(model_config(species, seed=1, pair_cutoff=pair_cutoff)))
        entry["random_model"] = force_sensitivity(random_model, valid_sys, f_rms)
        variants = [("augmented", True)] + ([("not_augmented", False)] if args.ablation else [])
        for label, augment in variants:
            if args.load_models:  # evaluate a model trained by an earlier run (same data, split, settings)
                from hyenamd.surrogate import load_model

                path = f"{args.load_models}_{name}_{label}.safetensors"
                model, info = load_model(path), train_split(template, frames)
                info.update(cpu_s=None, epochs=None, loaded_from=path)
            else:
                with tempfile.TemporaryDirectory() as d:
                    model, info = train(
                        template, frames, augment=augment, epochs=epochs, out_dir=d, pair_cutoff=pair_cutoff
                    )
            if args.save_models:
                from hyenamd.surrogate import save_model

                os.makedirs(args.save_models, exist_ok=True)
                save_model(model, os.path.join(args.save_models, f"{args.name}_{name}_{label}.safetensors"))
            valid = (
                info["valid"][:: max(1, -(-len(info["valid"]) // args.sens_frames))]
                if args.sens_frames
                else info["valid"]
            )
            vs = [x.system for x in valid]
            mae = energy_mae_per_atom(model, info["valid"])
            t_eval = time.process_time()
            res = {
                **({"loaded_from": info["loaded_from"]} if "loaded_from" in info else {}),
                "train_cpu_s": info["cpu_s"],
                "epochs": info["epochs"],
                "n_train_frames": len(info["train"]),
                "n_valid_frames": len(info["valid"]),
                "energy_mae_ev_per_atom": mae,
                "force_sensitivity": force_sensitivity(model, vs, f_rms, ks, samples=valid),
                "n_sensitivity_frames": len(vs),
                "refresh_jump_ev_per_atom_reference_md": refresh_jumps(
                    model, traj_tmpl, trajectory_frames(traj, traj_every, (1.0, 10.0)), ks
                ),
            }
            if args.jump_origins > 1:
                res["refresh_jump_ev_per_atom_reference_md_origins"] = jumps_over_origins(
                    model, traj_tmpl, traj, traj_every, args.jump_origins, ks
                )
            if name == "argon":
                nve, temps = surrogate_nve_frames(
                    model, template, frames[-1][0], times_ps=(1.0,) if args.quick else (1.0, 10.0)
                )
                res["refresh_jump_ev_per_atom_surrogate_nve"] = {
                    **refresh_jumps(model, template, nve, ks),
                    **temps,
                }
            res["eval_cpu_s"] = time.process_time() - t_eval
            res["goal_jump_ev_per_atom"] = 0.1 * mae
            entry[label] = res
            print(name, label, json.dumps(res), flush=True)
        result[name] = entry
    result["cpu_s_total"] = time.process_time() - cpu0
    result["load_after"] = os.getloadavg()
    path = write_json(args.name, result)
    print("wrote", path)


if __name__ == "__main__":
    main()
