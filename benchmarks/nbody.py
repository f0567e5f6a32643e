"""N-body (5 charged particles in 3D), SE(3)-Hyena Table 1: predict positions 1000 simulator steps ahead.

Data: :mod:`nbody_sim` (frame 30 → frame 40, 100 steps per frame). Inputs per particle (token):
invariant ``[q, |v|]``, vectors ``[x - x̄, v]`` (x̄ = centroid, so the models are translation
equivariant); prediction ``x + Δ`` with Δ the model's one output vector channel per token.
Models: an equivariant linear baseline (``x + a v + b (x - x̄)``, least squares on the training
set) and the :class:`paper_models.SequenceModel` stacks (2 operator blocks + gated equivariant
output MLP; hidden 8 invariant / 16 equivariant; the gate width is the 8 invariant channels).
Loss MSE over all coordinates (as EGNN); test MSE at the end of training.

Usage::

    python benchmarks/nbody.py                  # the recorded run (see BENCHMARKS.md for the cuts)
    python benchmarks/nbody.py --quick          # seconds: smoke run for CI (tests/test_paper_experiments.py)

Writes ``benchmarks/results/nbody.json`` (partial results after every run) and
``docs/figures/nbody.png``.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from common import FIGURES, RESULTS, header, save_figure, write_json
from nbody_sim import generate_dataset
from paper_models import SequenceModel, count_parameters, train_model, uniform_ptr

PAPER = {"linear": 0.0322, "transformer": 0.0163, "hyena": 0.0150, "eqattn": 0.0019, "ghyena": 0.0018}
LABELS = {
    "linear": "Linear (equivariant)",
    "transformer": "Transformer",
    "hyena": "Hyena",
    "eqattn": "Equivariant transformer",
    "ghyena": "G-Hyena",
}


def load_data(n_total: int, seed: int, cache_dir: pathlib.Path | None) -> dict[str, np.ndarray]:
    """Generate (or read back from ``cache_dir``) ``n_total`` samples with data seed ``seed``."""
    path = cache_dir / f"nbody_{n_total}_{seed}.npz" if cache_dir else None
    if path is not None and path.exists():
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    data = generate_dataset(n_total, seed=seed, progress=True)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **data)
    return data


def to_tokens(d: dict[str, np.ndarray], dtype=torch.float32) -> dict[str, torch.Tensor]:
    """Samples → token tensors: s0 ``[S·P, 2]``, v0 ``[S·P, 2, 3]``, x, target ``[S·P, 3]``."""
    x, v, q, y = (torch.as_tensor(d[k], dtype=dtype) for k in ("x", "v", "q", "target"))
    centred = x - x.mean(1, keepdim=True)
    s0 = torch.stack([q, v.norm(dim=-1)], dim=-1).flatten(0, 1)
    v0 = torch.stack([centred, v], dim=2).flatten(0, 1)
    return {"s0": s0, "v0": v0, "x": x.flatten(0, 1), "y": y.flatten(0, 1), "p": x.shape[1], "n": x.shape[0]}


def subset(t: dict, lo: int, hi: int) -> dict:
    p = t["p"]
    out = {k: t[k][lo * p : hi * p] for k in ("s0", "v0", "x", "y")}
    return {**out, "p": p, "n": hi - lo}


def fit_linear(train: dict) -> tuple[float, float]:
    """Least squares ``y - x ≈ a v + b (x - x̄)`` (equivariant linear baseline)."""
    a = torch.stack([train["v0"][:, 1].flatten(), train["v0"][:, 0].flatten()], dim=1).double()
    rhs = (train["y"] - train["x"]).flatten().double()
    coef = torch.linalg.lstsq(a, rhs.unsqueeze(1)).solution.squeeze(1)
    return float(coef[0]), float(coef[1])


def predict(model: SequenceModel, t: dict, batch: int = 500) -> torch.Tensor:
    outs = []
    model.eval()
    with torch.no_grad():
        for lo in range(0, t["n"], batch):
            sub = subset(t, lo, min(lo + batch, t["n"]))
            outs.append(sub["x"] + model(sub["s0"], sub["v0"], uniform_ptr(sub["n"], sub["p"])))
    return torch.cat(outs)


def run_one(kind: str, seed: int, train: dict, val: dict, test: dict, args) -> dict[str, object]:
    if kind == "linear":
        t0 = time.perf_counter()
        a, b = fit_linear(train)

        def lin(t):
            return t["x"] + a * t["v0"][:, 1] + b * t["v0"][:, 0]

        return {
            "val_mse": float((lin(val) - val["y"]).pow(2).mean()),
            "test_mse": float((lin(test) - test["y"]).pow(2).mean()),
            "coefficients": [a, b],
            "n_params": 2,
            "train_seconds": time.perf_counter() - t0,
        }
    torch.manual_seed(seed)
    model = SequenceModel(
        kind,
        s_in=2,
        v_in=2,
        n_scalar=args.n_scalar,
        n_vector=args.n_vector,
        n_blocks=2,
        wide=1,
        readout="token",
        filter_kw={"w_min": 1.0, "w_init": 4.0, "w_cap": 16.0},
    )
    gen = torch.Generator().manual_seed(1000 + seed)
    n_batches = max(train["n"] // args.batch, 1)
    perm = [torch.randperm(train["n"], generator=gen)]

    def loss_fn(step: int) -> torch.Tensor:
        k = step % n_batches
        if k == 0 and step > 0:
            perm[0] = torch.randperm(train["n"], generator=gen)
        idx = perm[0][k * args.batch : (k + 1) * args.batch]
        tok = (idx.unsqueeze(1) * train["p"] + torch.arange(train["p"])).flatten()
        pred = train["x"][tok] + model(
            train["s0"][tok], train["v0"][tok], uniform_ptr(idx.numel(), train["p"])
        )
        return (pred - train["y"][tok]).pow(2).mean()

    n_steps = args.epochs * n_batches
    log = train_model(
        model, loss_fn, n_steps=n_steps, lr=args.lr, weight_decay=args.wd, desc=f"nbody {kind} s{seed}"
    )
    losses = log["losses"]
    return {
        "val_mse": float((predict(model, val) - val["y"]).pow(2).mean()),
        "test_mse": float((predict(model, test) - test["y"]).pow(2).mean()),
        "n_params": count_parameters(model),
        "n_steps": n_steps,
        "train_seconds": log["train_seconds"],
        "loss_curve": [float(np.mean(losses[i : i + n_batches])) for i in range(0, len(losses), n_batches)],
    }


def summarise(runs: dict[str, list[dict]]) -> dict[str, dict]:
    out = {}
    for kind, rs in runs.items():
        test = np.array([r["test_mse"] for r in rs])
        out[kind] = {
            "test_mse_mean": float(test.mean()),
            "test_mse_std": float(test.std(ddof=1)) if len(test) > 1 else 0.0,
            "n_seeds": len(rs),
            "paper": PAPER.get(kind),
        }
    return out


def plot(payload: dict, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summ = payload["summary"]
    kinds = list(summ)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    means = [summ[k]["test_mse_mean"] for k in kinds]
    stds = [summ[k]["test_mse_std"] for k in kinds]
    ax1.bar(range(len(kinds)), means, yerr=stds, capsize=4, color="tab:blue", label="hyenamd (this run)")
    paper = [summ[k]["paper"] or np.nan for k in kinds]
    ax1.scatter(
        range(len(kinds)), paper, color="tab:red", marker="_", s=400, label="paper (Table 1)", zorder=3
    )
    ax1.set_xticks(range(len(kinds)), [LABELS[k] for k in kinds], rotation=20, ha="right")
    ax1.set_yscale("log")
    ax1.set_ylabel("test MSE")
    ax1.legend()
    for kind, rs in payload["runs"].items():
        curves = [r["loss_curve"] for r in rs if "loss_curve" in r]
        if curves:
            m = np.mean(np.array(curves), axis=0)
            ax2.plot(np.arange(1, len(m) + 1), m, label=LABELS[kind])
    ax2.set_yscale("log")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("train MSE (mean over seeds)")
    ax2.legend()
    fig.suptitle(f"n-body (5 charged particles), {payload['config']['n_train']} training samples")
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny smoke run (seconds)")
    p.add_argument("--plot-only", action="store_true", help="re-draw the figure from the existing JSON")
    p.add_argument("--models", nargs="+", default=["linear", "ghyena", "eqattn", "hyena", "transformer"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--n-train", type=int, default=1000)
    p.add_argument("--n-val", type=int, default=500)
    p.add_argument("--n-test", type=int, default=2000)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--wd", type=float, default=1e-5)
    p.add_argument("--n-scalar", type=int, default=8)
    p.add_argument("--n-vector", type=int, default=16)
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out-dir", type=pathlib.Path, default=RESULTS)
    p.add_argument("--fig-dir", type=pathlib.Path, default=FIGURES)
    p.add_argument(
        "--cache-dir", type=pathlib.Path, default=pathlib.Path(tempfile.gettempdir()) / "hyenamd-bench-cache"
    )
    args = p.parse_args(argv)
    if args.quick:
        args.models, args.seeds = ["linear", "ghyena", "eqattn"], [0]
        args.n_train, args.n_val, args.n_test, args.epochs, args.batch = 40, 20, 20, 2, 20
        args.cache_dir = None
    if args.plot_only:
        import json

        plot(json.loads((args.out_dir / "nbody.json").read_text()), args.fig_dir / "nbody.png")
        return 0
    torch.set_num_threads(args.threads)
    name = "nbody_quick" if args.quick else "nbody"
    n_total = args.n_train + args.n_val + args.n_test
    if args.quick:
        from nbody_sim import generate_dataset as gen

        data = gen(n_total, seed=args.data_seed, t_in=3, t_out=4, sample_every=10)
    else:
        data = load_data(n_total, args.data_seed, args.cache_dir)
    tok = to_tokens(data)
    train = subset(tok, 0, args.n_train)
    val = subset(tok, args.n_train, args.n_train + args.n_val)
    test = subset(tok, args.n_train + args.n_val, n_total)
    cfg = {k: (str(v) if isinstance(v, pathlib.Path) else v) for k, v in vars(args).items()}
    payload: dict[str, object] = {
        **header("python benchmarks/nbody.py " + " ".join(argv if argv is not None else sys.argv[1:])),
        "config": cfg,
        "copy_input_test_mse": float((test["x"] - test["y"]).pow(2).mean()),
        "runs": {},
        "summary": {},
    }
    # seed-major order: an interrupted run still has every model at the first seeds
    jobs = [(k, s) for s in args.seeds for k in args.models if k != "linear" or s == args.seeds[0]]
    for kind, seed in jobs:
        r = run_one(kind, seed, train, val, test, args)
        payload["runs"].setdefault(kind, []).append({"seed": seed, **r})
        payload["summary"] = summarise(payload["runs"])
        write_json(name, payload, args.out_dir)
        print(f"{kind} seed {seed}: test MSE {r['test_mse']:.5f} ({r['train_seconds']:.0f} s)", flush=True)
    plot(payload, args.fig_dir / f"{name}.png")
    write_json(name, payload, args.out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
