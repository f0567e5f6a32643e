"""PNG figures of a validation: RDF overlays, MSD/VACF, energy drift, RMSF, torsion maps, Rg, bonds.

Each ``plot_*`` function takes a :class:`~hyenamd.validate.runner.ValidationResult` and a folder,
writes one PNG when it has data to show, and returns its path (or None). matplotlib runs
with the non-interactive Agg backend. Reference: solid black; surrogate: orange dashed;
baseline (second reference): grey dotted.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

__all__ = ["make_plots"]

STYLE = {
    "reference": {"color": "black", "ls": "-"},
    "surrogate": {"color": "tab:orange", "ls": "--"},
    "baseline": {"color": "0.55", "ls": ":"},
}


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _runs(result):
    return [
        (k, st)
        for k, st in (
            ("reference", result.reference),
            ("surrogate", result.surrogate),
            ("baseline", result.baseline),
        )
        if st is not None
    ]


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path


def plot_rdf(result, out: Path) -> Path | None:
    if not result.reference.rdf or not result.surrogate.rdf:
        return None
    pairs = list(result.reference.rdf)
    ncol = min(3, len(pairs))
    nrow = math.ceil(len(pairs) / ncol)
    plt = _plt()
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.2 * nrow), squeeze=False)
    for ax, pair in zip(axes.flat, pairs):
        for name, st in _runs(result):
            if pair in st.rdf:
                ax.plot(st.rdf_r, st.rdf[pair], label=name, lw=1.4, **STYLE[name])
        ax.axhline(1.0, color="0.8", lw=0.8)
        ax.set(title=f"g(r) {pair}", xlabel="r (Å)", ylabel="g(r)")
    for ax in list(axes.flat)[len(pairs) :]:
        ax.axis("off")
    axes.flat[0].legend(frameon=False)
    return _save(fig, out / "rdf.png")


def plot_dynamics(result, out: Path) -> Path | None:
    ref, sur = result.reference, result.surrogate
    if not ref.msd or not sur.msd:
        return None
    has_vacf = bool(ref.vacf and sur.vacf)
    plt = _plt()
    fig, axes = plt.subplots(1, 2 if has_vacf else 1, figsize=(10 if has_vacf else 5.5, 3.8), squeeze=False)
    ax = axes[0, 0]
    for name, st in _runs(result):
        if "all" in st.msd:
            d = st.diffusion.get("all")
            lab = name if d is None else f"{name} (D = {d:.3g} Å²/ps)"
            ax.plot(st.lag_times / 1000, st.msd["all"], label=lab, **STYLE[name])
    ax.set(title="mean-squared displacement (all atoms)", xlabel="lag (ps)", ylabel="MSD (Å²)")
    ax.legend(frameon=False, fontsize=8)
    if has_vacf:
        ax = axes[0, 1]
        for name, st in _runs(result):
            if "all" in st.vacf and st.vacf["all"][0] > 0:
                ax.plot(
                    st.lag_times[: len(st.vacf["all"])] / 1000,
                    st.vacf["all"] / st.vacf["all"][0],
                    label=name,
                    **STYLE[name],
                )
        ax.axhline(0, color="0.8", lw=0.8)
        ax.set(title="velocity autocorrelation", xlabel="lag (ps)", ylabel="C(t) / C(0)")
        ax.legend(frameon=False)
    return _save(fig, out / "dynamics.png")


def plot_energy(result, out: Path) -> Path | None:
    runs = [
        (n, st) for n, st in _runs(result) if st.potential_energy is not None or st.temperature is not None
    ]
    if not runs:
        return None
    plt = _plt()
    t_target = result.config.temperature_k
    if t_target is None and result.reference.temperature is not None:
        t_target = float(np.nanmean(result.reference.temperature))
    ke_runs = [(n, st) for n, st in runs if st.kinetic_energy is not None and st.n_frames >= 2]
    histogram = bool(ke_runs) and t_target is not None and t_target > 0
    fig, axes = plt.subplots(1, 3 if histogram else 2, figsize=(15 if histogram else 10, 3.8))
    if histogram:
        _kinetic_histogram(axes[2], ke_runs, float(t_target))
    for name, st in runs:
        t = st.times / 1000
        if st.potential_energy is not None and st.kinetic_energy is not None:
            e = (st.potential_energy + st.kinetic_energy) / st.n_atoms * 1e3
            e0 = e[0]
            axes[0].plot(t, e - e0, lw=1, label=name, **STYLE[name])
            if st.drift is not None:
                line = (st.drift.slope * st.times + st.drift.intercept) / st.n_atoms * 1e3 - e0
                axes[0].plot(
                    t,
                    line,
                    lw=0.8,
                    color=STYLE[name]["color"],
                    alpha=0.6,
                    label=f"{name} fit: {st.drift.drift:.3g} meV/atom/ps",
                )
        if st.temperature is not None:
            axes[1].plot(t, st.temperature, lw=1, label=name, **STYLE[name])
    axes[0].set(title="total energy drift", xlabel="time (ps)", ylabel="E − E(0) (meV/atom)")
    axes[1].set(title="temperature", xlabel="time (ps)", ylabel="T (K)")
    for ax in axes[:2]:
        if ax.lines:
            ax.legend(frameon=False, fontsize=8)
    return _save(fig, out / "energy.png")


def _kinetic_histogram(ax, runs, temperature_k: float) -> None:
    """Histograms of the kinetic energy per frame (eV) against the canonical Gamma(3N/2, k_B T) density."""
    from hyenamd.units import BOLTZMANN_EV_PER_K

    lo, hi = np.inf, -np.inf
    for name, st in runs:
        ke = np.asarray(st.kinetic_energy, dtype=np.float64)
        ke = ke[np.isfinite(ke)]
        lo, hi = min(lo, ke.min()), max(hi, ke.max())
        ax.hist(ke, bins=40, density=True, histtype="step", lw=1.2, label=name, color=STYLE[name]["color"])
    shape, scale = 1.5 * runs[-1][1].n_atoms, BOLTZMANN_EV_PER_K * temperature_k
    x = np.linspace(lo, hi, 200)
    logpdf = (shape - 1) * np.log(x / scale) - x / scale - math.lgamma(shape) - np.log(scale)
    ax.plot(x, np.exp(logpdf), color="0.3", lw=1, ls=":", label=f"Gamma(3N/2, k_B·{temperature_k:.4g} K)")
    ax.set(title="kinetic energy distribution", xlabel="K (eV)", ylabel="density (1/eV)")
    ax.legend(frameon=False, fontsize=8)


def plot_rmsf(result, out: Path) -> Path | None:
    ref, sur = result.reference, result.surrogate
    if ref.rmsf is None or sur.rmsf is None:
        return None
    by_res = ref.rmsf_residues is not None and sur.rmsf_residues is not None and len(ref.rmsf_residues[0]) > 1
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [2, 1]})
    for name, st in _runs(result):
        if st.rmsf is None:
            continue
        if by_res:
            axes[0].plot(st.rmsf_residues[0], st.rmsf_residues[1], marker=".", label=name, **STYLE[name])
        else:
            axes[0].plot(np.arange(len(st.rmsf)), st.rmsf, label=name, **STYLE[name])
    axes[0].set(title="RMSF", xlabel="residue" if by_res else "atom (selection)", ylabel="RMSF (Å)")
    axes[0].legend(frameon=False)
    axes[1].scatter(ref.rmsf, sur.rmsf, s=6, color="tab:orange")
    hi = float(max(ref.rmsf.max(), sur.rmsf.max(), 1e-3))
    axes[1].plot([0, hi], [0, hi], color="0.6", lw=0.8)
    axes[1].set(title="per-atom RMSF", xlabel="reference (Å)", ylabel="surrogate (Å)")
    return _save(fig, out / "rmsf.png")


def plot_torsions(result, out: Path) -> Path | None:
    runs = [(n, st) for n, st in _runs(result) if st.torsions is not None]
    if len(runs) < 2:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(runs), figsize=(4.2 * len(runs), 4), squeeze=False)
    for ax, (name, st) in zip(axes.flat, runs):
        tor = st.torsions
        h = tor["rama"] / max(tor["rama"].sum(), 1)
        e = tor["edges"]
        ax.pcolormesh(
            e, e, np.log10(h.T + 1e-5), cmap="viridis", vmin=-5, vmax=float(np.log10(h.max() + 1e-5))
        )
        ax.set(
            title=f"{name}: φ/ψ ({tor['n_residues']} residue(s), {tor['n_frames']} frames)",
            xlabel="φ (°)",
            ylabel="ψ (°)",
            xlim=(-180, 180),
            ylim=(-180, 180),
            aspect="equal",
        )
    return _save(fig, out / "torsions.png")


def plot_rg(result, out: Path) -> Path | None:
    runs = [(n, st) for n, st in _runs(result) if st.rg is not None]
    if not runs:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, st in runs:
        ax.plot(st.times / 1000, st.rg, label=f"{name} (mean {st.rg.mean():.2f} Å)", **STYLE[name])
    ax.set(title="radius of gyration (solute)", xlabel="time (ps)", ylabel="Rg (Å)")
    ax.legend(frameon=False)
    return _save(fig, out / "rg.png")


def plot_bonds(result, out: Path) -> Path | None:
    runs = [(n, st) for n, st in _runs(result) if st.bonds is not None and st.bonds["n_bonds"]]
    if not runs:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, st in runs:
        b = st.bonds
        ax.plot(
            b["times"] / 1000, b["excursions"], label=f"{name}: bonds off > excursion limit", **STYLE[name]
        )
        if b["n_hydrogens"]:
            ax.plot(
                b["times"] / 1000,
                b["detached"],
                lw=0.8,
                alpha=0.7,
                label=f"{name}: detached H",
                color=STYLE[name]["color"],
            )
    ax.set(title="bond excursions and H detachment", xlabel="time (ps)", ylabel="count per frame")
    ax.legend(frameon=False, fontsize=8)
    return _save(fig, out / "stability.png")


def make_plots(result, out_dir: Path) -> dict[str, Path]:
    """Write every figure that has data; returns ``{title: path}`` in report order."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = {
        "Stability: bond excursions and H detachment": plot_bonds,
        "Energy drift and temperature": plot_energy,
        "Radial distribution functions": plot_rdf,
        "Radius of gyration": plot_rg,
        "RMSF": plot_rmsf,
        "Backbone torsions (Ramachandran)": plot_torsions,
        "MSD and velocity autocorrelation": plot_dynamics,
    }
    paths = {}
    for title, fn in figures.items():
        p = fn(result, out_dir)
        if p is not None:
            paths[title] = p
    return paths
