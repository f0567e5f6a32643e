"""The stochastic large-step head on the demo's Langevin argon: predicted noise fraction vs replicas.

    OMP_NUM_THREADS=1 python benchmarks/stochastic_head.py --out /tmp/stoch --epochs 6

1. Reference: the demo's argon (108 atoms, 90 K, γ = 1/ps, dt 4 fs, a frame every 40 fs) as one
   continuous Langevin run (``--ps`` ps; reused when present in ``--out``).
2. Replicas (OpenMM): from ``--n-starts`` held-out frames, ``--replicas`` copies with different
   Langevin seeds run 50 steps (200 fs); the spread of v(200 fs) across the copies over the total
   velocity variance is the noise fraction no function of (x, v) can predict (the issue's 0.24).
3. Training: ``heads: [energy, stochastic_dynamics]`` with the demo's model, ``task: dynamics``
   (Gaussian NLL) on 200-fs strides (5 frames), split by trajectory segment as ``hyenamd train``.
4. Held-out evaluation (EMA weights, best epoch): the predicted noise fraction
   (mean σᵛ² / per-component variance of v*), the mean's residual fraction, the NLL against a
   homoscedastic ballistic baseline, calibration (|r|/σ within 1 and 2), the x–v residual
   correlation the head does not model, and per-atom predicted σᵛ² vs the replica variance.
5. Rollouts (``--strides``): the learned propagator sampling from the head (γ = 0: the head's σ
   is the thermostat) and on its means, each without and with the energy rescale R; U for R
   is the exact LJ of the reference cut at the dynamics model's 6 Å (a stand-in for a trained
   force field: R needs U differences only), ⟨T⟩ against 90 K.

Writes ``benchmarks/results/<name>.json`` (machine, date, commit, command, load averages, CPU
seconds) and ``docs/figures/<name>.png`` (predicted vs replica variance; T traces).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import pathlib
import sys
import time

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import FIGURES, header, save_figure, write_json

HORIZON_FRAMES = 5  # 5 frames × 40 fs = 200 fs = 50 steps of 4 fs


def reference(cfg, out: pathlib.Path, ps: float):
    """One continuous NVT (Langevin) run of the demo's argon (reused when present)."""
    from hyenamd.engine.reference import reference_md

    n_steps = round(ps * 1000 / cfg.reference.dt_fs)
    path = out / f"langevin_{ps:g}ps.h5"
    if not path.exists():
        rcfg = dataclasses.replace(
            cfg.reference, output=str(path), segments="none", n_steps=n_steps, progress=False
        )
        reference_md(rcfg)
    return path, n_steps


def replicas(cfg, store_path: pathlib.Path, frames: list[int], n_rep: int) -> dict[str, np.ndarray]:
    """v and Δx after 200 fs from each start frame, ``n_rep`` Langevin seeds: ``[n_rep, F, N, 3]``."""
    import openmm.unit as u

    from hyenamd.engine.reference import build_reference_system, make_context, state_to_internal
    from hyenamd.io import open_store
    from hyenamd.units import NM_PER_PS_TO_ANGSTROM_PER_FS, NM_TO_ANGSTROM

    rcfg = dataclasses.replace(cfg.reference, minimize=False, segments="none")
    ref = build_reference_system(rcfg)
    n_steps = HORIZON_FRAMES * rcfg.report_interval
    with open_store(store_path) as st:
        starts = [(np.asarray(st[k].positions), np.asarray(st[k].velocities)) for k in frames]
    v_out, d_out = [], []
    for r in range(n_rep):
        _, ctx, integ, _ = make_context(dataclasses.replace(rcfg, seed=1000 + r), ref)
        vs, ds = [], []
        for x, v in starts:
            ctx.setPositions(x / NM_TO_ANGSTROM * u.nanometer)
            ctx.setVelocities(v / NM_PER_PS_TO_ANGSTROM_PER_FS * u.nanometer / u.picosecond)
            integ.step(n_steps)
            s = state_to_internal(
                ctx.getState(getPositions=True, getVelocities=True, getForces=True, getEnergy=True)
            )
            vs.append(s["velocities"])
            ds.append(s["positions"] - x)  # no wrapping: OpenMM positions are unwrapped
        v_out.append(np.stack(vs))
        d_out.append(np.stack(ds))
        del ctx, integ
    return {"v": np.stack(v_out), "d": np.stack(d_out)}


@torch.no_grad()
def evaluate(model, samples) -> dict[str, np.ndarray]:
    """Per-atom means, σ and targets of held-out samples (float64 numpy)."""
    from hyenamd.surrogate.ordering import canonical_order
    from hyenamd.system import Batch

    keys = ("displacement", "velocities", "log_sigma_x", "log_sigma_v", "rho_xv")
    got = {k: [] for k in (*keys, "d_ref", "v_ref", "u")}
    for x in samples:
        sys_ = x.system.to(dtype=model.dtype)
        sys_ = sys_.replace(order=canonical_order(sys_, model.cfg.ordering))
        out = model(Batch.from_systems([sys_]))
        for k in keys:
            got[k].append(out[k].double().numpy() if k in out else np.zeros(out["log_sigma_v"].shape))
        got["d_ref"].append(x.displacement.double().numpy())
        got["v_ref"].append(x.next_velocities.double().numpy())
        got["u"].append(x.system.velocities.double().numpy())
    return {k: np.stack(v) for k, v in got.items()}


def calibration(r: np.ndarray, log_sigma: np.ndarray) -> dict[str, float]:
    """Fractions of residual components within 1σ and 2σ (Gaussian: 0.683, 0.954)."""
    z = np.abs(r) / np.exp(log_sigma)[..., None]
    return {"within_1sigma": float((z < 1).mean()), "within_2sigma": float((z < 2).mean())}


def nll(r: np.ndarray, log_sigma: np.ndarray, scale: float) -> float:
    """Mean per-component Gaussian NLL in units of ``scale`` (the training loss's normalisation)."""
    ls = log_sigma[..., None] - math.log(scale)
    return float((0.5 * (r / scale) ** 2 * np.exp(-2 * ls) + ls).mean())


def rollout(model, system, strides: int, sample: bool, seed: int, energy_model=None) -> list[float]:
    from hyenamd.engine import LearnedPropagator

    prop = LearnedPropagator(model, sample=sample, seed=seed, energy_model=energy_model)
    state = prop.init(system.to(dtype=model.dtype))
    temps = []
    for _ in range(strides):
        state = prop.step(state)
        temps.append(float(state.temperature()[0]))
        if not math.isfinite(temps[-1]) or temps[-1] > 1e4:
            break
    return temps


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="/tmp/hyenamd_stochastic_head", help="reference store and training run")
    p.add_argument("--name", default="stochastic_head")
    p.add_argument("--config", default="configs/demo.yaml")
    p.add_argument("--ps", type=float, default=80.0, help="length of the Langevin reference run, ps")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--n-starts", type=int, default=40, help="held-out start frames of the replicas")
    p.add_argument("--replicas", type=int, default=16)
    p.add_argument("--strides", type=int, default=100, help="rollout strides (200 fs each); 0: none")
    p.add_argument(
        "--init-from", default=None, help="a checkpoint to start from (e.g. a trained force field)"
    )
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    from hyenamd.config import load_config
    from hyenamd.surrogate import GHyena, load_model
    from hyenamd.surrogate.training import Trainer, TrainSettings, split_by_segment
    from hyenamd.workflows.demo import DemoConfig
    from hyenamd.workflows.train import load_samples

    cfg = load_config(args.config, DemoConfig, [f"output_dir={args.out}"])
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    load0, c0 = os.getloadavg(), time.process_time()
    store, n_steps = reference(cfg, out, args.ps)
    c_ref = time.process_time() - c0

    data = dataclasses.replace(cfg.data, stores=(str(store),), horizon_frames=HORIZON_FRAMES)
    samples, summary = load_samples(data, "dynamics")
    train_s, valid_s = split_by_segment(samples, data.valid_fraction, data.split_seed)
    horizon = summary["horizon_fs"]
    model_cfg = dataclasses.replace(
        cfg.model, heads=("energy", "stochastic_dynamics"), dynamics_horizon_fs=horizon, seed=cfg.seed
    )
    model = GHyena(model_cfg)
    if args.init_from:
        from hyenamd.workflows.train import _init_state

        src = load_model(args.init_from, dtype=model.dtype)
        model.load_state_dict(_init_state(src.state_dict(), model), strict=False)
    settings = TrainSettings(
        task="dynamics", epochs=args.epochs, batch_size=4, lr=args.lr, warmup_steps=20, ema_decay=0.99,
        patience=0, seed=cfg.seed, progress=sys.stderr.isatty(),
    )  # fmt: skip
    run_dir = out / f"run_{args.name}"
    c1 = time.process_time()
    trainer = Trainer(model, train_s, valid_s, settings, out_dir=run_dir, data_summary=summary)
    loss0, metrics0 = trainer.evaluate()
    result = trainer.fit()
    c_train = time.process_time() - c1
    print(f"trained: {result.steps} steps, {c_train:.0f} CPU-s, best valid NLL {result.best_valid_loss:.4f}")
    best = load_model(result.best_path)

    # ---------------------------------------------------------------- held-out evaluation
    # the held-out samples are the validation segments' strides; every k-th one starts a replica set
    c2 = time.process_time()
    ev = evaluate(best, valid_s)
    scale_x, scale_v = trainer.scales["position"], trainer.scales["velocity"]
    rx, rv = ev["displacement"] - ev["d_ref"], ev["velocities"] - ev["v_ref"]
    rho = ev["rho_xv"]
    # v' | Δx* (the conditional the head samples v' from, given its own Δx draw)
    z = -rx * np.exp(-ev["log_sigma_x"])[..., None]
    rv_c = rv + (rho * np.exp(ev["log_sigma_v"]))[..., None] * z
    ls_vc = ev["log_sigma_v"] + 0.5 * np.log1p(-rho * rho)
    var_v = float(((ev["v_ref"] - ev["v_ref"].mean(1, keepdims=True)) ** 2).mean())
    var_x = float(((ev["d_ref"] - ev["d_ref"].mean(1, keepdims=True)) ** 2).mean())
    base_lsx = 0.5 * np.log(((ev["d_ref"] - ev["u"] * horizon) ** 2).mean()) * np.ones(rx.shape[:2])
    base_lsv = 0.5 * np.log(((ev["v_ref"] - ev["u"]) ** 2).mean()) * np.ones(rv.shape[:2])
    rbx, rbv = ev["d_ref"] - ev["u"] * horizon, ev["v_ref"] - ev["u"]
    heldout = {
        "n_samples": len(valid_s),
        "predicted_noise_fraction_v": float(np.exp(2 * ev["log_sigma_v"]).mean() / var_v),
        "residual_fraction_v": float((rv**2).mean() / var_v),
        "predicted_noise_fraction_x": float(np.exp(2 * ev["log_sigma_x"]).mean() / var_x),
        "residual_fraction_x": float((rx**2).mean() / var_x),
        "ballistic_residual_fraction_v": float((rbv**2).mean() / var_v),
        "nll_v": nll(rv, ev["log_sigma_v"], scale_v),
        "nll_v_given_x": nll(rv_c, ls_vc, scale_v),
        "calibration_v_given_x": calibration(rv_c, ls_vc),
        "predicted_mean_rho_xv": float(rho.mean()),
        "nll_x": nll(rx, ev["log_sigma_x"], scale_x),
        "nll_v_ballistic_homoscedastic": nll(rbv, base_lsv, scale_v),
        "nll_x_ballistic_homoscedastic": nll(rbx, base_lsx, scale_x),
        "calibration_v": calibration(rv, ev["log_sigma_v"]),
        "calibration_x": calibration(rx, ev["log_sigma_x"]),
        "xv_residual_correlation": float(np.corrcoef(rx.ravel(), rv.ravel())[0, 1]),
        "sigma_v_cv_over_atoms": float(np.exp(ev["log_sigma_v"]).std() / np.exp(ev["log_sigma_v"]).mean()),
        "valid_nll_before_training": loss0,
        "valid_metrics_before_training": metrics0,
    }
    c_eval = time.process_time() - c2

    # ---------------------------------------------------------------- replicas (OpenMM)
    c3 = time.process_time()
    frame_of = dict(zip(map(id, samples), _start_frames(data, store)))
    valid_frames = [frame_of[id(x)] for x in valid_s]
    pick = np.linspace(0, len(valid_s) - 1, min(args.n_starts, len(valid_s))).round().astype(int)
    reps = replicas(cfg, store, [valid_frames[k] for k in pick], args.replicas)
    rep_var_v = reps["v"].var(axis=0, ddof=1)  # [F, N, 3]
    rep_var_x = reps["d"].var(axis=0, ddof=1)
    pred_sv2 = np.exp(2 * ev["log_sigma_v"][pick])  # [F, N]
    emp_sv2 = rep_var_v.mean(-1)  # [F, N]
    replica = {
        "n_starts": len(pick),
        "n_replicas": args.replicas,
        "noise_fraction_v": float(rep_var_v.mean() / var_v),
        "noise_fraction_x": float(rep_var_x.mean() / var_x),
        "xv_noise_correlation": float(
            np.corrcoef((reps["d"] - reps["d"].mean(0)).ravel(), (reps["v"] - reps["v"].mean(0)).ravel())[
                0, 1
            ]
        ),
        "predicted_noise_fraction_v_same_frames": float(pred_sv2.mean() / var_v),
        "per_atom_corr_pred_vs_replica_var": float(np.corrcoef(pred_sv2.ravel(), emp_sv2.ravel())[0, 1]),
        "replica_cv_over_atoms": float(emp_sv2.std() / emp_sv2.mean()),
        "replica_cv_from_sampling_alone": math.sqrt(2.0 / (3 * (args.replicas - 1))),
        "replica_mean_residual_fraction_v": float(
            ((reps["v"].mean(0) - ev["velocities"][pick]) ** 2).mean() / var_v
        ),
    }
    # a calibrated head: σᵛ² ≈ irreducible noise + its mean's squared error (against the replica mean)
    replica["predicted_minus_mean_error_fraction_v"] = (
        replica["predicted_noise_fraction_v_same_frames"] - replica["replica_mean_residual_fraction_v"]
    )
    c_rep = time.process_time() - c3

    # ---------------------------------------------------------------- rollouts
    c4 = time.process_time()
    rollouts = {}
    if args.strides:
        from hyenamd.engine.potentials import LennardJones

        a = cfg.reference.argon
        lj = LennardJones(sigma=a.sigma, epsilon=a.epsilon, cutoff=best.cutoff, switch_on=best.cutoff - 0.5)
        start = valid_s[0].system
        variants = (("sampled", True, None), ("means", False, None), ("sampled_rescale", True, lj))
        for label, sample, energy in (*variants, ("means_rescale", False, lj)):
            temps = rollout(best, start, args.strides, sample, seed=cfg.seed, energy_model=energy)
            tail = temps[len(temps) // 5 :]
            rollouts[label] = {
                "strides": len(temps),
                "mean_temperature_k": float(np.mean(tail)) if tail else float("nan"),
                "temperature_rel_error": float(np.mean(tail) / cfg.reference.temperature_k - 1)
                if tail
                else None,
                "temperatures_k": temps,
            }
    c_roll = time.process_time() - c4

    with __import__("hyenamd.io", fromlist=["open_store"]).open_store(store) as st:
        t_ref = float(np.mean(st.observable("temperature")))
    payload = {
        **header("python benchmarks/stochastic_head.py " + " ".join(sys.argv[1:] if argv is None else argv)),
        "load_average_start": load0,
        "load_average_end": os.getloadavg(),
        "cpu_seconds": {
            "reference": c_ref,
            "training": c_train,
            "evaluation": c_eval,
            "replicas": c_rep,
            "rollouts": c_roll,
            "total": time.process_time() - c0,
        },
        "config": {
            "reference_ps": args.ps,
            "reference_steps": n_steps,
            "reference_mean_temperature_k": t_ref,
            "temperature_k": cfg.reference.temperature_k,
            "friction_per_ps": cfg.reference.friction_per_ps,
            "horizon_fs": horizon,
            "n_train": len(train_s),
            "n_valid": len(valid_s),
            "model": dataclasses.asdict(model_cfg),
            "training": dataclasses.asdict(settings),
            "init_from": args.init_from,
        },
        "training": {
            "steps": result.steps,
            "epochs": result.epochs_run,
            "best_valid_nll": result.best_valid_loss,
            "best_metrics": result.best_metrics,
            "valid_nll_per_epoch": result.history["valid_loss"],
        },
        "heldout": heldout,
        "replica": replica,
        "issue_replica_noise_fraction_v": 0.24,
        "rollouts": rollouts,
    }
    write_json(args.name, payload)
    _plot(FIGURES / f"{args.name}.png", pred_sv2, emp_sv2, var_v, rollouts, cfg.reference.temperature_k)
    print(_table(payload))
    return 0


def _start_frames(data, store) -> list[int]:
    """Stored frame of each sample's start, in :func:`load_samples`' order (one store, one continuous run)."""
    from hyenamd.io import open_store

    with open_store(store) as st:
        n = len(st)
    idx = list(range(data.skip_frames, n, data.stride))
    if data.max_frames is not None:
        idx = idx[: data.max_frames]
    seg = {k: (i * data.n_segments) // len(idx) for i, k in enumerate(idx)}
    h = data.horizon_frames * data.stride
    return [k for k in idx if k + h in seg and seg[k + h] == seg[k]]


def _plot(path, pred, emp, var_v, rollouts, t_ref) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    ax = axes[0]
    ax.scatter(emp.ravel() / var_v, pred.ravel() / var_v, s=2, alpha=0.3, label="atom × start frame")
    lim = [0, max(float(emp.max()), float(pred.max())) / var_v]
    ax.plot(lim, lim, "k--", lw=0.8, label="y = x")
    ax.axhline(pred.mean() / var_v, color="C1", lw=1, label=f"mean predicted {pred.mean() / var_v:.3f}")
    ax.axvline(emp.mean() / var_v, color="C2", lw=1, label=f"mean replica {emp.mean() / var_v:.3f}")
    ax.set_xlabel("replica variance of v(200 fs) / total variance")
    ax.set_ylabel("predicted σᵛ² / total variance")
    ax.set_title("per-atom noise: stochastic head vs 16 Langevin replicas")
    ax.legend(fontsize=7)
    ax = axes[1]
    for label, r in rollouts.items():
        ax.plot(np.arange(1, len(r["temperatures_k"]) + 1) * 0.2, r["temperatures_k"], label=label)
    ax.axhline(t_ref, color="k", ls="--", lw=0.8, label=f"{t_ref:g} K")
    ax.set_xlabel("time (ps)")
    ax.set_ylabel("T (K)")
    ax.set_title("learned 200-fs strides (γ = 0; R: energy rescale)")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    save_figure(fig, path)


def _table(pl: dict) -> str:
    h, r = pl["heldout"], pl["replica"]
    lines = [
        f"noise fraction of the 200-fs velocity variance: predicted {h['predicted_noise_fraction_v']:.3f} "
        f"(held-out, {h['n_samples']} strides), replicas {r['noise_fraction_v']:.3f} "
        f"({r['n_starts']} starts × {r['n_replicas']}), issue 0.24",
        f"mean's residual fraction {h['residual_fraction_v']:.3f} (ballistic {h['ballistic_residual_fraction_v']:.3f}; "
        f"replica mean vs head mean {r['replica_mean_residual_fraction_v']:.3f})",
        f"NLL v {h['nll_v']:.4f} (ballistic homoscedastic {h['nll_v_ballistic_homoscedastic']:.4f}), "
        f"x {h['nll_x']:.4f} ({h['nll_x_ballistic_homoscedastic']:.4f})",
        f"calibration v: {h['calibration_v']['within_1sigma']:.3f} within 1σ, "
        f"{h['calibration_v']['within_2sigma']:.3f} within 2σ (Gaussian 0.683, 0.954)",
        f"x–v residual correlation {h['xv_residual_correlation']:.3f} (replica noise {r['xv_noise_correlation']:.3f})",
        f"predicted − mean's error vs replica mean {r['predicted_minus_mean_error_fraction_v']:.3f} "
        f"(≈ the replica noise if calibrated)",
        f"per-atom corr(predicted σᵛ², replica var) {r['per_atom_corr_pred_vs_replica_var']:.3f}; replica var CV over "
        f"atoms {r['replica_cv_over_atoms']:.3f} (sampling alone {r['replica_cv_from_sampling_alone']:.3f})",
    ]
    for label, ro in pl["rollouts"].items():
        lines.append(f"rollout {label}: {ro['strides']} strides, ⟨T⟩ {ro['mean_temperature_k']:.1f} K")
    lines.insert(
        5,
        f"ρ_xv: predicted mean {h['predicted_mean_rho_xv']:.3f}; NLL v|x {h['nll_v_given_x']:.4f}, "
        f"calibration v|x {h['calibration_v_given_x']['within_1sigma']:.3f} / "
        f"{h['calibration_v_given_x']['within_2sigma']:.3f}",
    )
    lines.append("CPU s: " + ", ".join(f"{k} {v:.0f}" for k, v in pl["cpu_seconds"].items()))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
