"""The ASE calculator's own cost per MD step, without the model: what ``HyenaCalculator`` adds.

Same system and calculator as ``benchmarks/ase_compile.py`` (108 argon atoms at 0.021
atoms/Å³, 90 K momenta, preset S float32 randomly initialised, calculator defaults: 0.5 Å
skin, stress on; ASE ``VelocityVerlet`` at 4 fs; one torch thread), but after one real call
the model call (``calc.runner.evaluate``: ``compute_forces`` and the results as numpy) is
replaced by one that returns zeros of the right shapes, so a step costs only ASE, the
calculator's glue (arrays → tensors, the Batch, the Verlet list, the sequence order,
``check_state``, copies) and nothing of the model. With zero forces the atoms fly freely at
90 K: the Verlet list is rebuilt about every 13 steps (the real 108-atom run: every 12).

Recorded per ``--windows`` window of ``--steps`` steps: CPU µs per step (``time.process_time``)
of the whole step and of ``calculate``, and over all windows where the step goes (µs per
step): ``calculate``, the Verlet list split into reuse and rebuild calls, ``check_state``
(ASE calls it twice per step, ``calculate`` once more). Written to
``benchmarks/results/ase_glue.json`` (``--name``). The script runs on older trees too (it only
wraps public attributes), so before/after comparisons can run interleaved:

    python benchmarks/ase_glue.py --name ase_glue_after
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from common import ROOT, header, write_json


class _TimedList:
    """Wraps a Verlet list: CPU seconds of its calls, split into rebuilds and reuses."""

    def __init__(self, nl, acc: dict[str, float]) -> None:
        self.nl, self.acc = nl, acc

    def __getattr__(self, name):
        return getattr(self.nl, name)

    def __call__(self, *a, **k):
        c0, builds = time.process_time(), self.nl.n_builds
        try:
            return self.nl(*a, **k)
        finally:
            key = "verlet_build" if self.nl.n_builds > builds else "verlet_reuse"
            self.acc[key] += time.process_time() - c0


def _timed_method(obj, name: str, acc: dict[str, float], key: str) -> None:
    f = getattr(obj, name)

    def timed(*a, **k):
        c0 = time.process_time()
        try:
            return f(*a, **k)
        finally:
            acc[key] += time.process_time() - c0

    setattr(obj, name, timed)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--atoms", type=int, default=108)
    ap.add_argument("--steps", type=int, default=1000, help="MD steps per window")
    ap.add_argument("--windows", type=int, default=5)
    ap.add_argument("--name", default="ase_glue")
    ap.add_argument("--out", default=None, help="directory of the JSON (default benchmarks/results)")
    args = ap.parse_args(argv)
    import numpy as np
    import torch
    from ase import units
    from ase.md.velocitydistribution import thermalize_momenta
    from ase.md.verlet import VelocityVerlet

    from hyenamd.config import load_config
    from hyenamd.engine import HyenaCalculator
    from hyenamd.surrogate import GHyena, GHyenaConfig
    from hyenamd.workflows.demo import liquid_like_system

    torch.set_num_threads(1)
    payload = header("python benchmarks/ase_glue.py " + " ".join(argv if argv is not None else sys.argv[1:]))
    payload["load_avg_start"] = os.getloadavg()
    cfg = load_config(
        ROOT / "configs" / "surrogate" / "S.yaml", GHyenaConfig, ["species=[18]", "dtype=float32"]
    )
    atoms = liquid_like_system(args.atoms, 0.021, seed=0).to_ase()
    thermalize_momenta(atoms, temperature_K=90.0, rng=np.random.default_rng(0))
    calc = HyenaCalculator(GHyena(cfg))
    atoms.calc = calc
    atoms.get_forces()  # one real call: the order is written, the list built
    n = len(atoms)
    zeros = {"energy": 0.0, "energies": np.zeros(n), "forces": np.zeros((n, 3)), "stress": np.zeros((3, 3))}

    def no_model(batch, nbrs, *, stress: bool = False) -> dict:
        return {
            k: (v.copy() if isinstance(v, np.ndarray) else v)
            for k, v in zeros.items()
            if stress or k != "stress"
        }

    calc.runner.evaluate = no_model
    dyn = VelocityVerlet(atoms, 4.0 * units.fs)
    dyn.run(50)  # warm-up
    acc = {"calculate": 0.0, "verlet_build": 0.0, "verlet_reuse": 0.0, "check_state": 0.0}
    _timed_method(calc, "calculate", acc, "calculate")
    _timed_method(calc, "check_state", acc, "check_state")
    calc.runner.neighbor_list = _TimedList(calc.runner.neighbor_list, acc)
    builds0 = calc.runner.neighbor_list.n_builds
    step_us, calc_us = [], []
    for _ in range(args.windows):
        c0, k0 = time.process_time(), acc["calculate"]
        dyn.run(args.steps)
        step_us.append(1e6 * (time.process_time() - c0) / args.steps)
        calc_us.append(1e6 * (acc["calculate"] - k0) / args.steps)
    total = args.windows * args.steps
    payload.update(
        {
            "atoms": n,
            "preset": "S",
            "dtype": "float32",
            "md": "ase.md.verlet.VelocityVerlet, 4 fs, 90 K start, zero forces (model call replaced)",
            "steps_per_window": args.steps,
            "windows": args.windows,
            "step_us": {"min": min(step_us), "median": sorted(step_us)[len(step_us) // 2], "all": step_us},
            "calculate_us": {
                "min": min(calc_us),
                "median": sorted(calc_us)[len(calc_us) // 2],
                "all": calc_us,
            },
            "parts_us_per_step": {k: 1e6 * v / total for k, v in acc.items()},
            "list_builds": calc.runner.neighbor_list.n_builds - builds0,
            "steps": total,
            "load_avg_end": os.getloadavg(),
        }
    )
    print(
        f"{n} atoms, no model: step {payload['step_us']['median']:.0f} us (median of {args.windows}), "
        f"calculate {payload['calculate_us']['median']:.0f} us; parts "
        + ", ".join(f"{k} {v:.0f}" for k, v in payload["parts_us_per_step"].items())
        + f" us/step; {payload['list_builds']} list builds in {total} steps",
        flush=True,
    )
    write_json(args.name, payload, None if args.out is None else pathlib.Path(args.out))
    return payload


if __name__ == "__main__":
    main()
