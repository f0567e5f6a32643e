"""Engine overhead: per-step cost of hyenamd's Simulation vs ase.md.VelocityVerlet, and the time split.

Part A, zero-cost model (E = 0, F = 0, no neighbour list) at 10⁵ and 10⁶ atoms: what one
MD step costs beyond the model, for hyenamd's ``Simulation(VelocityVerlet(ZeroPotential()))``
(float32 and float64, with the default blow-up guard every 10 steps) and for
``ase.md.VelocityVerlet`` with a zero calculator, timed in the same run (goal: hyenamd ≤ 1/5 of
ASE). ASE is also timed with :class:`HyenaCalculator` around the zero potential, which adds
the adapter's conversions and state checks.

Part B, a real (randomly initialised) G-Hyena under ``LangevinBAOAB`` with a state-data and a
trajectory reporter, ``profile=True``: seconds per step in the model, the neighbour list, the
integrator itself and the reporting.

    python benchmarks/engine_overhead.py            # full run (minutes on 2 cores)
    python benchmarks/engine_overhead.py --quick    # seconds, for the test suite
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import numpy as np
import torch
from common import FIGURES, header, write_json

from hyenamd.engine import HyenaCalculator, LangevinBAOAB, Simulation, StateDataReporter, TrajectoryReporter
from hyenamd.engine import VelocityVerlet as HyenaVV
from hyenamd.engine.potentials import ZeroPotential
from hyenamd.workflows.demo import liquid_like_system


def _zero_calculator():
    from ase.calculators.calculator import Calculator, all_changes

    class ZeroCalculator(Calculator):
        implemented_properties = ("energy", "forces")

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            self.results = {"energy": 0.0, "forces": np.zeros((len(self.atoms), 3))}

    return ZeroCalculator()


def per_step_hyenamd(system, n_steps: int, windows: int) -> float:
    """Fastest window of ``n_steps`` steps, per step (the minimum over windows filters out the
    other processes of a shared machine; ASE is measured the same way)."""
    sim = Simulation(HyenaVV(ZeroPotential(), 1.0), system, temperature_k=300.0)
    sim.run(2)  # warm-up
    best = float("inf")
    for _ in range(windows):
        t = time.perf_counter()
        sim.run(n_steps)
        best = min(best, (time.perf_counter() - t) / n_steps)
    return best


def per_step_ase(system, n_steps: int, windows: int, calc_factory) -> float:
    from ase import units
    from ase.md.velocitydistribution import thermalize_momenta
    from ase.md.verlet import VelocityVerlet

    atoms = system.to_ase()
    atoms.calc = calc_factory()
    thermalize_momenta(atoms, 300.0, rng=np.random.default_rng(0))
    dyn = VelocityVerlet(atoms, timestep=1.0 * units.fs)
    dyn.run(2)
    best = float("inf")
    for _ in range(windows):
        t = time.perf_counter()
        dyn.run(n_steps)
        best = min(best, (time.perf_counter() - t) / n_steps)
    return best


def zero_cost_rows(sizes, steps, windows) -> list[dict]:
    rows = []
    for n in sizes:
        s64 = liquid_like_system(n, 0.1, seed=0, dtype=torch.float64)
        s32 = s64.to(dtype=torch.float32)
        k = steps[n]
        row = {
            "n_atoms": n,
            "steps": k,
            "windows": windows,
            "hyenamd_float32_s": per_step_hyenamd(s32, k, windows),
            "hyenamd_float64_s": per_step_hyenamd(s64, k, windows),
            "ase_zero_calculator_s": per_step_ase(s64, k, windows, _zero_calculator),
            "ase_hyena_calculator_s": per_step_ase(
                s64, k, windows, lambda: HyenaCalculator(ZeroPotential(), dtype=torch.float64, stress=False)
            ),
        }
        row["ratio_float64_vs_ase"] = row["hyenamd_float64_s"] / row["ase_zero_calculator_s"]
        row["ratio_float32_vs_ase"] = row["hyenamd_float32_s"] / row["ase_zero_calculator_s"]
        print(
            f"  {n:>9,} atoms: hyenamd f32 {row['hyenamd_float32_s'] * 1e3:8.2f} ms  f64 "
            f"{row['hyenamd_float64_s'] * 1e3:8.2f} ms | ASE {row['ase_zero_calculator_s'] * 1e3:8.2f} ms "
            f"(+HyenaCalculator {row['ase_hyena_calculator_s'] * 1e3:8.2f} ms) | ratio f64 "
            f"{row['ratio_float64_vs_ase']:.3f}",
            flush=True,
        )
        rows.append(row)
    return rows


def surrogate_split_rows(sizes, steps) -> list[dict]:
    from hyenamd.surrogate import GHyena, GHyenaConfig

    cfg = GHyenaConfig(
        species=(1, 8), cutoff=5.0, n_scalar=32, n_vector=8, n_rbf=8,
        pattern=("local", "global", "local", "global"), dtype="float32",
    )  # fmt: skip
    model = GHyena(cfg).eval()
    rows = []
    for n in sizes:
        s = liquid_like_system(n, 0.1, seed=0, dtype=torch.float32, species=8)
        sp = s.species.clone()
        sp[0::3] = 1
        sp[1::3] = 1
        s = s.replace(species=sp, masses=None)
        with tempfile.TemporaryDirectory() as tmp:
            reps = [
                StateDataReporter(pathlib.Path(tmp) / "md.csv", 2, progress=False),
                TrajectoryReporter(pathlib.Path(tmp) / "traj.h5", 2),
            ]
            sim = Simulation(LangevinBAOAB(model, 0.5, 300.0, 0.01), s, reps, profile=True)
            sim.run(steps)
            sim.close()
        t = sim.timing_summary()
        row = {"n_atoms": n, "steps": steps, "model_parameters": sum(p.numel() for p in model.parameters())}
        for key in ("model", "neighbors", "integrator_only", "reporting", "guard", "total"):
            row[f"{key}_s_per_step"] = t[key] / steps
        print(
            f"  {n:>9,} atoms: model {row['model_s_per_step']:.3f} s, neighbours {row['neighbors_s_per_step']:.4f} s, "
            f"integrator {row['integrator_only_s_per_step']:.4f} s, reporting {row['reporting_s_per_step']:.4f} s "
            f"per step",
            flush=True,
        )
        rows.append(row)
    return rows


def plot(payload: dict, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    rows = payload["zero_cost"]
    x = np.arange(len(rows))
    w = 0.25
    for k, (key, label) in enumerate(
        [
            ("hyenamd_float32_s", "hyenamd f32"),
            ("hyenamd_float64_s", "hyenamd f64"),
            ("ase_zero_calculator_s", "ASE"),
        ]
    ):
        axes[0].bar(x + (k - 1) * w, [r[key] * 1e3 for r in rows], w, label=label)
    axes[0].set_xticks(x, [f"{r['n_atoms']:,}" for r in rows])
    axes[0].set_yscale("log")
    axes[0].set_ylabel("ms per MD step (zero-cost model)")
    axes[0].set_xlabel("atoms")
    axes[0].legend()
    split = payload["surrogate_split"]
    bottom = np.zeros(len(split))
    totals = np.array(
        [
            sum(r[f"{k}_s_per_step"] for k in ("model", "neighbors", "integrator_only", "reporting", "guard"))
            for r in split
        ]
    )
    for key in ("model", "neighbors", "integrator_only", "reporting", "guard"):
        vals = 100.0 * np.array([r[f"{key}_s_per_step"] for r in split]) / totals
        axes[1].bar([f"{r['n_atoms']:,}" for r in split], vals, bottom=bottom, label=key)
        bottom += vals
    for k in range(len(split)):
        axes[1].text(k, 101, f"{totals[k]:.3g} s/step", ha="center", va="bottom", fontsize=8)
    axes[1].set_ylim(0, 112)
    axes[1].set_ylabel("% of step time (G-Hyena, CPU)")
    axes[1].set_xlabel("atoms")
    axes[1].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes (for tests)")
    p.add_argument("--out", type=pathlib.Path, default=None, help="directory for the JSON result")
    p.add_argument("--figure", type=pathlib.Path, default=None, help="PNG path (default: docs/figures/)")
    p.add_argument(
        "--threads", type=int, default=1, help="torch threads (default 1: numpy's ASE loop is serial too)"
    )
    args = p.parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _run(args)
    finally:
        torch.set_num_threads(threads)


def _run(args) -> dict:
    if args.quick:
        sizes, steps, windows = [1_000, 10_000], {1_000: 5, 10_000: 5}, 2
        split_sizes, split_steps = [300], 4
    else:
        sizes, steps, windows = [100_000, 1_000_000], {100_000: 10, 1_000_000: 5}, 6
        split_sizes, split_steps = [1_000, 10_000], 6
    cmd = (
        "python benchmarks/engine_overhead.py"
        + (" --quick" if args.quick else "")
        + f" --threads {args.threads}"
    )
    print("zero-cost model: per-step engine overhead", flush=True)
    zero = zero_cost_rows(sizes, steps, windows)
    print("G-Hyena time split", flush=True)
    split = surrogate_split_rows(split_sizes, split_steps)
    payload = {**header(cmd), "zero_cost": zero, "surrogate_split": split}
    name = "engine_overhead_quick" if args.quick else "engine_overhead"
    path = write_json(name, payload, args.out)
    fig = args.figure or (
        (args.out or FIGURES) / ("engine_overhead_quick.png" if args.quick else "engine_overhead.png")
    )
    plot(payload, fig)
    print(f"wrote {path} and {fig}")
    return payload


if __name__ == "__main__":
    main()
