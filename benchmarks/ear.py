"""Equivariant associative recall (EAR), SE(3)-Hyena Fig. 4: test MSE against sequence length.

Data: :mod:`ear_data` (fixed and random vocabulary variants). Model inputs per token: the token
vector (one vector channel) and a 16-dim sinusoidal position encoding (invariant); 3 operator
blocks → mean pooling → gated equivariant MLP → one vector (:class:`paper_models.SequenceModel`,
``readout="pool"``). Non-equivariant Hyena / Transformer are 3× wider. Adam, cosine decay,
weight decay 1e-5, MSE on the answer vector.

Usage::

    python benchmarks/ear.py                 # the recorded run (cuts in BENCHMARKS.md / docs/paper.md)
    python benchmarks/ear.py --quick         # seconds: smoke run for CI

Writes ``benchmarks/results/ear.json`` (partial results after every run) and ``docs/figures/ear.png``.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from common import FIGURES, RESULTS, header, save_figure, write_json
from ear_data import ear_dataset
from paper_models import (
    SequenceModel,
    count_parameters,
    sinusoidal_encoding,
    train_model,
    uniform_ptr,
)

LABELS = {
    "ghyena": "G-Hyena",
    "eqattn": "Equivariant transformer",
    "hyena": "Hyena (3× wider)",
    "transformer": "Transformer (3× wider)",
}


def tensors(d: dict[str, np.ndarray], dtype=torch.float32) -> dict[str, torch.Tensor]:
    return {k: torch.as_tensor(v, dtype=dtype) for k, v in d.items()}


def run_one(kind: str, variant: str, n_context: int, seed: int, args) -> dict[str, object]:
    """Train one model on one (variant, length) with one seed; returns test MSE and the loss curve."""
    base = 100_000 * seed + 10 * n_context + (0 if variant == "fixed" else 1)
    train = tensors(ear_dataset(args.n_train, n_context, variant=variant, seed=base))
    test = tensors(ear_dataset(args.n_test, n_context, variant=variant, seed=base + 7))
    length = n_context + 1
    pos = sinusoidal_encoding(length, 16)
    torch.manual_seed(seed)
    model = SequenceModel(
        kind,
        s_in=16,
        v_in=1,
        n_scalar=args.n_scalar,
        n_vector=args.n_vector,
        n_blocks=3,
        wide=3,
        readout="pool",
        attn_mode="naive",
        filter_kw={"w_min": 1.0, "w_init": float(length), "w_cap": float(4 * length)},
    )
    gen = torch.Generator().manual_seed(2000 + seed)

    def forward(tok: torch.Tensor) -> torch.Tensor:
        b = tok.shape[0]
        return model(pos.repeat(b, 1), tok.reshape(b * length, 1, 3), uniform_ptr(b, length))

    def loss_fn(step: int) -> torch.Tensor:
        idx = torch.randint(args.n_train, (args.batch,), generator=gen)
        return (forward(train["tokens"][idx]) - train["target"][idx]).pow(2).mean()

    log = train_model(
        model,
        loss_fn,
        n_steps=args.steps,
        lr=args.lr,
        weight_decay=args.wd,
        desc=f"ear {variant} N={n_context} {kind} s{seed}",
    )
    model.eval()
    with torch.no_grad():
        pred = torch.cat([forward(test["tokens"][i : i + 100]) for i in range(0, args.n_test, 100)])
    losses = np.array(log["losses"])
    k = max(len(losses) // 20, 1)
    return {
        "test_mse": float((pred - test["target"]).pow(2).mean()),
        "zero_predictor_test_mse": float(test["target"].pow(2).mean()),
        "n_params": count_parameters(model),
        "train_seconds": log["train_seconds"],
        "loss_curve": [float(losses[i : i + k].mean()) for i in range(0, len(losses), k)],
    }


def summarise(runs: list[dict]) -> list[dict]:
    groups: dict[tuple, list[float]] = {}
    for r in runs:
        groups.setdefault((r["variant"], r["n_context"], r["model"]), []).append(r["test_mse"])
    return [
        {
            "variant": v,
            "n_context": n,
            "model": m,
            "test_mse_mean": float(np.mean(x)),
            "test_mse_std": float(np.std(x, ddof=1)) if len(x) > 1 else 0.0,
            "n_seeds": len(x),
        }
        for (v, n, m), x in sorted(groups.items())
    ]


def plot(payload: dict, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, variant in zip(axes, ("fixed", "random")):
        rows = [r for r in payload["summary"] if r["variant"] == variant]
        for kind in payload["config"]["models"]:
            pts = sorted(
                (r["n_context"], r["test_mse_mean"], r["test_mse_std"]) for r in rows if r["model"] == kind
            )
            if pts:
                n, m, s = map(np.array, zip(*pts))
                ax.errorbar(n, m, yerr=s, marker="o", capsize=3, label=LABELS[kind])
        zero = [r["zero_predictor_test_mse"] for r in payload["runs"] if r["variant"] == variant]
        if zero:
            ax.axhline(float(np.mean(zero)), color="grey", ls="--", lw=1, label="predict 0")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("context length N (tokens before the query)")
        ax.set_title(f"{variant} vocabulary")
    axes[0].set_ylabel("test MSE (mean ± std over seeds)")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"EAR, {payload['config']['steps']} training steps per run (CPU cut)")
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny smoke run (seconds)")
    p.add_argument("--plot-only", action="store_true", help="re-draw the figure from the existing JSON")
    p.add_argument("--models", nargs="+", default=["ghyena", "eqattn", "hyena", "transformer"])
    p.add_argument("--variants", nargs="+", default=["fixed", "random"])
    p.add_argument("--lengths", nargs="+", type=int, default=[32, 128])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--n-train", type=int, default=2600)
    p.add_argument("--n-test", type=int, default=200)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--wd", type=float, default=1e-5)
    p.add_argument("--n-scalar", type=int, default=16)
    p.add_argument("--n-vector", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out-dir", type=pathlib.Path, default=RESULTS)
    p.add_argument("--fig-dir", type=pathlib.Path, default=FIGURES)
    args = p.parse_args(argv)
    if args.quick:
        args.lengths, args.seeds, args.n_train, args.n_test, args.steps, args.batch = [8], [0], 32, 8, 2, 4
        args.n_scalar, args.n_vector = 8, 4
    if args.plot_only:
        import json

        plot(json.loads((args.out_dir / "ear.json").read_text()), args.fig_dir / "ear.png")
        return 0
    torch.set_num_threads(args.threads)
    name = "ear_quick" if args.quick else "ear"
    cfg = {k: (str(v) if isinstance(v, pathlib.Path) else v) for k, v in vars(args).items()}
    payload: dict[str, object] = {
        **header("python benchmarks/ear.py " + " ".join(argv if argv is not None else sys.argv[1:])),
        "config": cfg,
        "runs": [],
        "summary": [],
    }
    for n_context in args.lengths:
        for variant in args.variants:
            for kind in args.models:
                for seed in args.seeds:
                    r = run_one(kind, variant, n_context, seed, args)
                    payload["runs"].append(
                        {"variant": variant, "n_context": n_context, "model": kind, "seed": seed, **r}
                    )
                    payload["summary"] = summarise(payload["runs"])
                    write_json(name, payload, args.out_dir)
                    print(
                        f"{variant} N={n_context} {kind} seed {seed}: test MSE {r['test_mse']:.4f} "
                        f"(zero predictor {r['zero_predictor_test_mse']:.3f}, {r['train_seconds']:.0f} s)",
                        flush=True,
                    )
    plot(payload, args.fig_dir / f"{name}.png")
    write_json(name, payload, args.out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
