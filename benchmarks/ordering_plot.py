"""Figure of ``benchmarks/ordering.py`` results: order sensitivity against K (``order_samples``).

Top row: force RMS difference between two valid K-order sets ("variant": the adapters' K orders
vs K further deterministic variants), % of the reference force RMS, per system, one line per run,
with the 2 % goal and a ``1/sqrt(K)`` guide through each run's K = 1 point. Bottom row: the
refresh jump after 10 ps of reference MD (RMS over trajectory starts where the run has
``--jump-origins``, else the one start) divided by the goal (0.1 × energy MAE per atom; ≤ 1
meets it).

    python benchmarks/ordering_plot.py ordering:baseline ordering_pair:"pair term" \\
        --out docs/figures/ordering_vs_k.png

Each argument is ``<results name>[:<label>]`` (``benchmarks/results/<name>.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from common import FIGURES, RESULTS, save_figure


def series(entry: dict, key: str, sub: str) -> tuple[list[int], list[float]]:
    """(K, value) pairs of one trained model's ``force_sensitivity`` / refresh-jump ``by_k``."""
    by_k = entry[key].get("by_k") or {"1": entry[key]}
    ks = sorted(int(k) for k in by_k)
    return ks, [by_k[str(k)].get(sub, float("nan")) for k in ks]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="<results name>[:<label>]")
    ap.add_argument("--systems", default="argon,water")
    ap.add_argument("--out", default=str(FIGURES / "ordering_vs_k.png"))
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    systems = args.systems.split(",")
    fig, axes = plt.subplots(2, len(systems), figsize=(5.2 * len(systems), 7.0), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, spec in enumerate(args.runs):
        color = colors[i % len(colors)]
        name, _, label = spec.partition(":")
        data = json.loads((RESULTS / f"{name}.json").read_text())
        for col, system in enumerate(systems):
            if system not in data:
                continue
            res = data[system]["augmented"]
            ks, var = series(res, "force_sensitivity", "variant_rel_rms")
            axes[0, col].plot(ks, [100 * v for v in var], "o-", color=color, label=label or name)
            axes[0, col].plot(ks, [100 * var[0] / k**0.5 for k in ks], ":", color=color, lw=1)
            origins = res.get("refresh_jump_ev_per_atom_reference_md_origins")
            if origins:  # RMS over trajectory starts (one start is one sample)
                ks_j = sorted(int(k) for k in origins)
                jump = [origins[str(k)]["10ps"]["rms"] for k in ks_j]
            else:
                ks_j, jump = series(res, "refresh_jump_ev_per_atom_reference_md", "10ps")
            goal = res["goal_jump_ev_per_atom"]
            axes[1, col].plot(ks_j, [j / goal for j in jump], "o-", color=color, label=label or name)
    for col, system in enumerate(systems):
        ax = axes[0, col]
        ax.axhline(2.0, color="k", ls="--", lw=1, label="goal 2 %")
        ax.set(
            xscale="log", yscale="log", xlabel="K (order_samples)", ylabel="force difference, % of ref. RMS"
        )
        ax.set_title(f"{system}: two valid K-order sets (dotted: 1/√K)")
        ax.legend(fontsize=8)
        ax = axes[1, col]
        ax.axhline(1.0, color="k", ls="--", lw=1, label="goal")
        ax.set(xscale="log", yscale="log", xlabel="K (order_samples)", ylabel="10 ps refresh jump / goal")
        ax.set_title(f"{system}: energy jump after 10 ps (reference MD)")
        ax.legend(fontsize=8)
    for ax in axes.flat:
        ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xticks([1, 4, 16, 64], labels=["1", "4", "16", "64"])
    print("wrote", save_figure(fig, __import__("pathlib").Path(args.out)))


if __name__ == "__main__":
    main()
