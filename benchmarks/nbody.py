"""N-body (5 charged particles in 3D) on the EGNN benchmark: predict positions 1000 simulator steps ahead.

Data: :mod:`nbody_sim` (EGNN's generator settings, frame 30 → frame 40), splits 3000 train /
2000 validation / 2000 test from one data seed. Inputs per particle (token): invariant
``[q, |v|]``, vectors ``[x - x̄, v]`` (x̄ = centroid: translation equivariant), positions for the
local blocks' pair distances; prediction ``x + Δ``. Loss: MSE over all coordinates (as EGNN).
Model selection: the weights with the lowest validation MSE (evaluated every ``--eval-every``
epochs) are the ones tested.

Models (:data:`VARIANTS`): EGNN's learned linear ``x + t·v`` (its one parameter t at the
least-squares optimum), our equivariant linear ``x + a v + b (x - x̄)``, and
:class:`nbody_model.NBodyNet` stacks: equivariant transformer, non-equivariant Hyena and
Transformer, G-Hyena global only, G-Hyena local+global alternation, with/without a random
particle order per sample (permutation augmentation). For augmented models the K-order
test-time average is reported as its own row (``<name>+avgK``), never as the single-model number.

Usage::

    python benchmarks/nbody.py --models ghyena_lg_aug --seeds 0 1 2 --epochs 300
    python benchmarks/nbody.py --merge results/a.json results/b.json   # one table from several runs
    python benchmarks/nbody.py --evaluate benchmarks/results/nbody_ghyena.safetensors --data-seed 7 --n-test 500
    python benchmarks/nbody.py --quick          # seconds: smoke run for CI

``--evaluate`` generates a fresh test set with ``--data-seed``, a fresh training set (seed
``data_seed + 1_000_003``, ``--n-train`` samples) on which the linear ``x + t·v`` model is fit,
and prints one JSON line last: ``{"test_mse", "linear_test_mse", "data_seed", "n_test"}``.
Training runs write ``benchmarks/results/<name>.json`` (partial results after every run) and
``docs/figures/nbody.png``; ``--save-best PATH`` writes the best single model's checkpoint.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import pathlib
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from common import FIGURES, RESULTS, header, publish_merged, save_figure, write_json
from nbody_model import NBodyNet, load_task_model, random_orders, save_task_model
from nbody_sim import generate_dataset
from paper_models import count_parameters, train_model

#: name -> (pattern, permutation augmentation). Linear models are closed-form.
VARIANTS: dict[str, tuple[str, bool]] = {
    "eqattn": ("AAAA", False),
    "hyena": ("HHHH", False),
    "transformer": ("TTTT", False),
    "ghyena_global": ("GGGG", False),
    "ghyena_global_aug": ("GGGG", True),
    "ghyena_lg": ("LGLG", False),
    "ghyena_lg_aug": ("LGLG", True),
    "local": ("LLLL", False),
    "ghyena_eg_aug": ("EGEG", True),
    "edge": ("EEEE", False),
}
LINEAR = ("linear_tv", "linear_eq")
LABELS = {
    "linear_tv": "Linear x + t·v (EGNN's)",
    "linear_eq": "Linear x + a·v + b·(x − x̄), equivariant",
    "eqattn": "Equivariant transformer (AAAA)",
    "hyena": "Hyena, non-equivariant (HHHH)",
    "transformer": "Transformer, non-equivariant (TTTT)",
    "ghyena_global": "G-Hyena global only (GGGG)",
    "ghyena_global_aug": "G-Hyena global only + perm. aug.",
    "ghyena_lg": "G-Hyena local+global (LGLG)",
    "ghyena_lg_aug": "G-Hyena local+global + perm. aug.",
    "local": "Local blocks only (LLLL), ablation",
    "ghyena_eg_aug": "G-Hyena EGNN-style local (q_i q_j) + global (EGEG) + perm. aug.",
    "edge": "EGNN-style local blocks only (EEEE), ablation",
}
#: published anchors (EGNN's data setting; SE(3)-Hyena's data differ)
PUBLISHED = {
    "EGNN (Satorras et al. 2021)": (0.0071, "published, EGNN's data"),
    "SEGNN (Brandstetter et al. 2022)": (0.0043, "published, EGNN's data"),
    "Linear (EGNN's table)": (0.0819, "published, EGNN's data"),
    "SE(3)-Hyena (Moskalev et al. 2024)": (0.0018, "published, different (easier) data setup"),
}
LINEAR_SEED_OFFSET = 1_000_003
#: training/model options whose non-default values make a merged run its own row (``name~opt=value``)
TUNED = {
    "lr": 1e-3,
    "wd": 0.0,
    "adamw": False,
    "dropout": 0.0,
    "length_scale": 16.0,
    "n_scalar": 32,
    "n_vector": 16,
}


def option_suffix(config: dict) -> str:
    """``"~dropout=0.1~wd=0.01"``: the :data:`TUNED` options of a run's config that differ from their defaults."""
    return "".join(f"~{k}={config[k]}" for k in TUNED if k in config and config[k] != TUNED[k])


def load_data(n_total: int, seed: int, cache_dir: pathlib.Path | None, **gen_kw) -> dict[str, np.ndarray]:
    """Generate (or read back from ``cache_dir``) ``n_total`` samples with data seed ``seed``."""
    path = cache_dir / f"nbody_{n_total}_{seed}.npz" if cache_dir and not gen_kw else None
    if path is not None and path.exists():
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    data = generate_dataset(n_total, seed=seed, progress=sys.stderr.isatty(), **gen_kw)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **data)
    return data


def to_tokens(d: dict[str, np.ndarray], dtype=torch.float32) -> dict:
    """Samples → token tensors: s0 ``[S·P, 2]``, v0 ``[S·P, 2, 3]``, x, y ``[S·P, 3]``; p, n."""
    x, v, q, y = (torch.as_tensor(d[k], dtype=dtype) for k in ("x", "v", "q", "target"))
    centred = x - x.mean(1, keepdim=True)
    s0 = torch.stack([q, v.norm(dim=-1)], dim=-1).flatten(0, 1)
    v0 = torch.stack([centred, v], dim=2).flatten(0, 1)
    return {"s0": s0, "v0": v0, "x": x.flatten(0, 1), "y": y.flatten(0, 1), "p": x.shape[1], "n": x.shape[0]}


def subset(t: dict, lo: int, hi: int) -> dict:
    p = t["p"]
    out = {k: t[k][lo * p : hi * p] for k in ("s0", "v0", "x", "y")}
    return {**out, "p": p, "n": hi - lo}


def fit_linear_tv(train: dict) -> float:
    """EGNN's learned linear model ``x + t·v``: t at its least-squares optimum on the training set."""
    v, dy = train["v0"][:, 1].double(), (train["y"] - train["x"]).double()
    return float((v * dy).sum() / (v * v).sum())


def fit_linear_eq(train: dict) -> tuple[float, float]:
    """Least squares ``y - x ≈ a v + b (x - x̄)`` (the equivariant linear baseline)."""
    a = torch.stack([train["v0"][:, 1].flatten(), train["v0"][:, 0].flatten()], dim=1).double()
    rhs = (train["y"] - train["x"]).flatten().double()
    coef = torch.linalg.lstsq(a, rhs.unsqueeze(1)).solution.squeeze(1)
    return float(coef[0]), float(coef[1])


def mse(pred: torch.Tensor, t: dict) -> float:
    return float((pred - t["y"]).pow(2).mean())


def predict(model: NBodyNet, t: dict, *, k_orders: int = 0, seed: int = 0, batch: int = 500) -> torch.Tensor:
    """Predicted positions ``[S·P, 3]``: one pass in the data's order (k_orders=0) or the mean over K random orders."""
    gen = torch.Generator().manual_seed(seed)
    model.eval()
    outs = []
    with torch.no_grad():
        for lo in range(0, t["n"], batch):
            sub = subset(t, lo, min(lo + batch, t["n"]))
            args = (sub["s0"], sub["v0"], sub["x"], sub["p"])
            if k_orders <= 0:
                d = model(*args)
            else:
                d = (
                    sum(model(*args, random_orders(sub["n"], sub["p"], gen)) for _ in range(k_orders))
                    / k_orders
                )
            outs.append(sub["x"] + d)
    return torch.cat(outs)


def build_model(name: str, args) -> NBodyNet:
    pattern, _ = VARIANTS[name]
    return NBodyNet(
        pattern,
        n_scalar=args.n_scalar,
        n_vector=args.n_vector,
        wide=args.wide,
        length_scale=args.length_scale,
        dropout=args.dropout,
    )


def run_linear(name: str, train: dict, val: dict, test: dict) -> dict:
    if name == "linear_tv":
        t = fit_linear_tv(train)

        def lin(d):
            return d["x"] + t * d["v0"][:, 1]

        coef = [t]
    else:
        a, b = fit_linear_eq(train)

        def lin(d):
            return d["x"] + a * d["v0"][:, 1] + b * d["v0"][:, 0]

        coef = [a, b]
    return {
        "val_mse": mse(lin(val), val),
        "test_mse": mse(lin(test), test),
        "coefficients": coef,
        "n_params": len(coef),
    }


def run_model(name: str, seed: int, train: dict, val: dict, test: dict, args) -> tuple[dict, NBodyNet]:
    """Train one variant with one seed; returns its record and the best-on-validation model."""
    _, augment = VARIANTS[name]
    torch.manual_seed(seed)
    model = build_model(name, args)
    gen = torch.Generator().manual_seed(1000 + seed)
    n_batches = max(train["n"] // args.batch, 1)
    perm = [torch.randperm(train["n"], generator=gen)]
    p = train["p"]
    every = max(args.eval_every, 1) * n_batches
    best = {"val_mse": float("inf"), "step": -1, "state": None}
    history: list[tuple[int, float]] = []

    def loss_fn(step: int) -> torch.Tensor:
        if step > 0 and step % every == 0:
            v = mse(predict(model, val), val)
            history.append((step, v))
            if v < best["val_mse"]:
                best.update(val_mse=v, step=step, state=copy.deepcopy(model.state_dict()))
            model.train()
        k = step % n_batches
        if k == 0 and step > 0:
            perm[0] = torch.randperm(train["n"], generator=gen)
        idx = perm[0][k * args.batch : (k + 1) * args.batch]
        tok = (idx.unsqueeze(1) * p + torch.arange(p)).flatten()
        order = random_orders(idx.numel(), p, gen) if augment else None
        d = model(train["s0"][tok], train["v0"][tok], train["x"][tok], p, order)
        return (train["x"][tok] + d - train["y"][tok]).pow(2).mean()

    n_steps = args.epochs * n_batches
    t0 = time.process_time()
    log = train_model(
        model,
        loss_fn,
        n_steps=n_steps,
        lr=args.lr,
        weight_decay=args.wd,
        decoupled=args.adamw,
        clip=args.clip if args.clip > 0 else None,
        desc=f"nbody {name} s{seed}",
        progress=sys.stderr.isatty(),
    )
    final_val = mse(predict(model, val), val)
    history.append((n_steps, final_val))
    if final_val < best["val_mse"]:
        best.update(val_mse=final_val, step=n_steps, state=copy.deepcopy(model.state_dict()))
    model.load_state_dict(best["state"])
    losses = log["losses"]
    rec = {
        "val_mse": best["val_mse"],
        "best_step": best["step"],
        "test_mse": mse(predict(model, test), test),
        "train_mse_last_epoch": float(np.mean(losses[-n_batches:])),
        "n_params": count_parameters(model),
        "n_steps": n_steps,
        "train_seconds": log["train_seconds"],
        "train_cpu_seconds": time.process_time() - t0,
        "val_curve": history,
        "loss_curve": [float(np.mean(losses[i : i + n_batches])) for i in range(0, len(losses), n_batches)],
    }
    if augment and args.k_orders > 0:
        rec[f"test_mse_avg{args.k_orders}"] = mse(
            predict(model, test, k_orders=args.k_orders, seed=seed), test
        )
    return rec, model


def summarise(runs: dict[str, list[dict]]) -> dict[str, dict]:
    out: dict[str, dict] = {}

    def add(key: str, vals: list[float], rs: list[dict]) -> None:
        a = np.array(vals)
        out[key] = {
            "test_mse_mean": float(a.mean()),
            "test_mse_std": float(a.std(ddof=1)) if len(a) > 1 else 0.0,
            "n_seeds": len(a),
            "val_mse_mean": float(np.mean([r["val_mse"] for r in rs])),
            "n_params": rs[0]["n_params"],
            "epochs": rs[0].get("epochs"),
        }

    for name, rs in runs.items():
        add(name, [r["test_mse"] for r in rs], rs)
        for k in sorted({k for r in rs for k in r if k.startswith("test_mse_avg")}):
            add(f"{name}+{k.removeprefix('test_mse_')}", [r[k] for r in rs if k in r], rs)
    return out


def label_of(key: str) -> str:
    """Row label of a summary key ``name[@<E>ep][~opt=value...][+avg<K>]``."""
    base, _, avg = key.partition("+")
    base, *opts = base.split("~")
    base, _, ep = base.partition("@")
    label = LABELS.get(base, base) + (f", {ep.removesuffix('ep')} epochs" if ep else "")
    label += "".join(f", {o.replace('=', ' ')}" for o in opts)
    return label + (f", {avg.removeprefix('avg')}-order test-time average" if avg else "")


def table(payload: dict) -> str:
    """The markdown table (ours, then the published anchors)."""
    lines = [
        "| model | test MSE (mean ± std) | seeds | epochs | best val MSE | params |",
        "|---|---|---|---|---|---|",
    ]
    for key, r in sorted(payload["summary"].items(), key=lambda kv: -kv[1]["test_mse_mean"]):
        lines.append(
            f"| {label_of(key)} | {r['test_mse_mean']:.4f} ± {r['test_mse_std']:.4f} | {r['n_seeds']} | "
            f"{r.get('epochs') or '–'} | {r['val_mse_mean']:.4f} | {r['n_params']} |"
        )
    for label, (val, note) in PUBLISHED.items():
        lines.append(f"| {label} ({note}) | {val} | – | – | – | – |")
    return "\n".join(lines)


def plot(payload: dict, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summ = payload["summary"]
    keys = sorted(summ, key=lambda k: -summ[k]["test_mse_mean"])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(15, 7), gridspec_kw={"width_ratios": [3, 2]})
    y = np.arange(len(keys))
    ax1.barh(y, [summ[k]["test_mse_mean"] for k in keys], xerr=[summ[k]["test_mse_std"] for k in keys])
    ax1.set_yticks(y, [label_of(k) for k in keys], fontsize=7)
    for label, (val, _) in PUBLISHED.items():
        ax1.axvline(val, ls="--", lw=1, color="grey")
        ax1.text(val, len(keys) - 0.5, label.split(" (")[0], rotation=90, fontsize=7, va="top")
    ax1.set_xscale("log")
    ax1.set_xlabel("test MSE (dashed: published)")
    colors = plt.cm.tab20(np.linspace(0, 1, max(len(payload["runs"]), 1)))
    for color, (name, rs) in zip(colors, payload["runs"].items()):
        curves = [np.array(r["val_curve"]) for r in rs if r.get("val_curve")]
        if curves:
            c = curves[0]
            ax2.plot(c[:, 0], c[:, 1], label=label_of(name), color=color)
    ax2.set_yscale("log")
    ax2.set_xlabel("training step")
    ax2.set_ylabel("validation MSE (first seed)")
    ax2.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=1)
    fig.suptitle(f"n-body (EGNN setting), {payload['config']['n_train']} training samples")
    save_figure(fig, path)


def evaluate(args) -> int:
    """``--evaluate``: fresh test set (data seed S), fresh training set for the linear model, one JSON line."""
    model, summary = load_task_model(args.evaluate)
    test = to_tokens(generate_dataset(args.n_test, seed=args.data_seed))
    train = to_tokens(generate_dataset(args.n_train, seed=args.data_seed + LINEAR_SEED_OFFSET))
    t = fit_linear_tv(train)
    out = {
        "test_mse": mse(predict(model, test), test),
        "linear_test_mse": mse(test["x"] + t * test["v0"][:, 1], test),
        "data_seed": args.data_seed,
        "n_test": args.n_test,
    }
    print(json.dumps({"checkpoint": str(args.evaluate), "model": summary.get("variant"), "linear_t": t}))
    print(json.dumps(out), flush=True)
    return 0


def merge(paths: list[pathlib.Path], args) -> int:
    """One table from several partial JSON runs (runs of the same variant are pooled over seeds)."""
    payloads = [json.loads(p.read_text()) for p in paths]
    base_epochs = payloads[0]["config"]["epochs"]
    runs: dict[str, list[dict]] = {}
    for pl in payloads:
        for name, rs in pl["runs"].items():
            # a longer/shorter training, or other options, of a variant is its own row, never pooled
            ep = pl["config"]["epochs"]
            key = name if name in LINEAR or ep == base_epochs else f"{name}@{ep}ep"
            key += "" if name in LINEAR else option_suffix(pl["config"])
            # a run's own "source" (from an earlier merge) wins over the merged file's command
            runs.setdefault(key, []).extend({"source": pl["command"], **r} for r in rs)
    return publish_merged(
        "nbody.py",
        paths,
        payloads,
        runs,
        summarise,
        table,
        plot,
        args,
        copy_input_test_mse=payloads[0]["copy_input_test_mse"],
    )


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny smoke run (seconds)")
    p.add_argument("--plot-only", action="store_true", help="re-draw the figure from the existing JSON")
    p.add_argument("--evaluate", type=pathlib.Path, help="checkpoint to evaluate on a fresh test set")
    p.add_argument("--merge", nargs="+", type=pathlib.Path, help="partial JSON files to merge into one table")
    p.add_argument("--models", nargs="+", default=[*LINEAR, *VARIANTS])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--n-train", type=int, default=3000)
    p.add_argument("--n-val", type=int, default=2000)
    p.add_argument("--n-test", type=int, default=2000)
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--eval-every", type=int, default=5, help="validation every this many epochs")
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--wd", type=float, default=0.0, help="weight decay (Adam's L2, or AdamW's with --adamw)")
    p.add_argument("--adamw", action="store_true", help="decoupled weight decay (AdamW) instead of Adam + L2")
    p.add_argument("--dropout", type=float, default=0.0, help="dropout of each block's residual increment")
    p.add_argument("--length-scale", type=float, default=16.0, help="pair features' length scale r_c")
    p.add_argument("--clip", type=float, default=1.0, help="gradient-norm clip (0: none)")
    p.add_argument("--n-scalar", type=int, default=32)
    p.add_argument("--n-vector", type=int, default=16)
    p.add_argument("--wide", type=int, default=1, help="width multiplier of the non-equivariant models")
    p.add_argument("--k-orders", type=int, default=32, help="test-time order averaging (augmented models)")
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--name", default="nbody", help="JSON/figure name (parallel runs: distinct names)")
    p.add_argument("--save-best", type=pathlib.Path, help="write the best single model (lowest val MSE) here")
    p.add_argument("--out-dir", type=pathlib.Path, default=RESULTS)
    p.add_argument("--fig-dir", type=pathlib.Path, default=FIGURES)
    p.add_argument(
        "--cache-dir", type=pathlib.Path, default=pathlib.Path(tempfile.gettempdir()) / "hyenamd-bench-cache"
    )
    args = p.parse_args(argv)
    if args.evaluate is not None and (args.n_test < 1 or args.n_train < 1):
        p.error("--evaluate needs --n-test >= 1 and --n-train >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    if args.evaluate is not None:
        return evaluate(args)
    if args.merge:
        return merge(args.merge, args)
    if args.quick:
        args.models, args.seeds = ["linear_tv", "linear_eq", "ghyena_lg_aug", "eqattn"], [0]
        args.n_train, args.n_val, args.n_test, args.epochs, args.batch = 40, 20, 20, 2, 20
        args.eval_every, args.k_orders, args.n_scalar, args.n_vector = 1, 2, 8, 4
        args.cache_dir, args.name = None, "nbody_quick"
    if args.plot_only:
        plot(json.loads((args.out_dir / f"{args.name}.json").read_text()), args.fig_dir / f"{args.name}.png")
        return 0
    unknown = [m for m in args.models if m not in VARIANTS and m not in LINEAR]
    if unknown:
        raise SystemExit(f"unknown models {unknown}; choose from {[*LINEAR, *VARIANTS]}")
    n_total = args.n_train + args.n_val + args.n_test
    gen_kw = dict(t_in=3, t_out=4, sample_every=10) if args.quick else {}
    tok = to_tokens(load_data(n_total, args.data_seed, args.cache_dir, **gen_kw))
    train = subset(tok, 0, args.n_train)
    val = subset(tok, args.n_train, args.n_train + args.n_val)
    test = subset(tok, args.n_train + args.n_val, n_total)
    cfg = {k: (str(v) if isinstance(v, pathlib.Path) else v) for k, v in vars(args).items()}
    payload: dict = {
        **header("python benchmarks/nbody.py " + " ".join(argv if argv is not None else sys.argv[1:])),
        "config": cfg,
        "load_avg_start": os.getloadavg(),
        "copy_input_test_mse": mse(test["x"], test),
        "runs": {},
        "summary": {},
    }
    best_val = float("inf")
    # seed-major order: an interrupted run still has every model at the first seeds
    jobs = [(k, s) for s in args.seeds for k in args.models if k not in LINEAR or s == args.seeds[0]]
    for name, seed in jobs:
        if name in LINEAR:
            r = run_linear(name, train, val, test)
        else:
            r, model = run_model(name, seed, train, val, test, args)
            r["epochs"] = args.epochs
            if args.save_best is not None and r["val_mse"] < best_val:
                best_val = r["val_mse"]
                save_task_model(
                    model,
                    args.save_best,
                    variant=name,
                    seed=seed,
                    val_mse=r["val_mse"],
                    test_mse=r["test_mse"],
                    epochs=args.epochs,
                    data_seed=args.data_seed,
                    n_train=args.n_train,
                    git_commit=payload["git_commit"],
                )
        payload["runs"].setdefault(name, []).append({"seed": seed, **r})
        payload["summary"] = summarise(payload["runs"])
        payload["load_avg_end"] = os.getloadavg()
        write_json(args.name, payload, args.out_dir)
        print(f"{name} seed {seed}: val {r['val_mse']:.5f} test MSE {r['test_mse']:.5f}", flush=True)
    payload["table"] = table(payload)
    plot(payload, args.fig_dir / f"{args.name}.png")
    write_json(args.name, payload, args.out_dir)
    print(payload["table"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
