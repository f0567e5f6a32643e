"""Control for the long force-field MD: the engine's Langevin BAOAB with the exact LJ twin.

    python benchmarks/lj_twin_md.py --reference /tmp/ffmd100/reference.h5 --baseline /tmp/ffmd100/baseline.h5

Runs :class:`hyenamd.engine.LangevinBAOAB` on :class:`hyenamd.engine.potentials.LennardJones`
(the torch twin of the OpenMM argon, same switching) from the reference's first frame, as long
as the reference, at the demo's dt, temperature and friction, and validates it against the
reference with the baseline as the exact-run column (same validation settings as
``benchmarks/ff_md_long.py``). If the twin passes where a learned force field fails, the
integrator and the analysis are not the cause. Writes ``benchmarks/results/<name>.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import header, write_json

ROOT = pathlib.Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reference", required=True)
    p.add_argument("--baseline", required=True)
    p.add_argument("--out", default=None, help="twin trajectory (default: next to the reference)")
    p.add_argument("--name", default="lj_twin_md")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    for path in (args.reference, args.baseline):
        if not pathlib.Path(path).exists():
            p.error(f"{path} does not exist")
    torch.set_num_threads(1)
    from hyenamd.config import load_config
    from hyenamd.engine import LangevinBAOAB, Simulation, TrajectoryReporter
    from hyenamd.engine.potentials import LennardJones
    from hyenamd.io import open_store
    from hyenamd.validate import validate
    from hyenamd.workflows.demo import DemoConfig

    cfg = load_config(ROOT / "configs" / "demo.yaml", DemoConfig)
    ref, ar = cfg.reference, cfg.reference.argon
    with open_store(args.reference) as st:
        system = st[0].to(dtype=torch.float64)
        n_steps = round(float(st.times[-1] - st.times[0]) / ref.dt_fs)
        interval = round(float(st.times[1] - st.times[0]) / ref.dt_fs)
    out = pathlib.Path(args.out or pathlib.Path(args.reference).with_name("lj_twin.h5"))
    pot = LennardJones(sigma=ar.sigma, epsilon=ar.epsilon, cutoff=ar.cutoff, switch_on=ar.switch_on)
    integ = LangevinBAOAB(
        pot,
        ref.dt_fs,
        ref.temperature_k,
        friction_per_fs=ref.friction_per_ps / 1000,
        seed=args.seed,
        skin=1.0,
    )
    t, c = time.perf_counter(), time.process_time()
    with Simulation(integ, system, [TrajectoryReporter(out, interval, forces=False, overwrite=True)]) as sim:
        sim.run(n_steps)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    vcfg = dataclasses.replace(cfg.validate, temperature_k=ref.temperature_k, progress=False)
    res = validate(args.reference, out, vcfg, baseline=args.baseline, out_dir=None, echo=lambda m: None)
    print(res.table())
    payload = {
        **header("python benchmarks/lj_twin_md.py " + " ".join(sys.argv[1:] if argv is None else argv)),
        "load_average": os.getloadavg(),
        "steps": n_steps,
        "wall_s": wall,
        "cpu_s": cpu,
        "passed": res.passed,
        "metrics": {
            m.name: {
                "value": m.value,
                "limit": m.limit,
                "passed": m.passed,
                "spread": m.spread,
                "reference": m.reference,
                "surrogate": m.surrogate,
            }
            for m in res.metrics
        },
    }
    print("→", write_json(args.name, payload))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
