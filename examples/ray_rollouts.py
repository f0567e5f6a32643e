"""Run an ensemble of MD rollouts with Ray, then relabel one trajectory with sharded inference.

    .venv/bin/python examples/ray_rollouts.py                  # embedded Ray (a local instance)
    .venv/bin/python examples/ray_rollouts.py --address auto   # join a cluster (ray start --head ...)

Four Langevin rollouts of a 32-atom argon box with the classical Lennard-Jones potential (no
trained model needed; swap ``MODEL`` for ``{"kind": "checkpoint", "path": "model.safetensors"}``
to run the G-Hyena surrogate). Interrupt it and run it again: finished rollouts are skipped
and the others resume from their checkpoints (see ``runs/example_rollouts/manifest.json``).
"""

from __future__ import annotations

import argparse
import os
import pathlib

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

MODEL = {"kind": "lennard_jones", "cutoff": 5.0, "switch_on": 4.0}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--address", default=None, help="Ray cluster address ('auto', 'ray://host:10001')")
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("runs/example_rollouts"))
    p.add_argument("--steps", type=int, default=400)
    args = p.parse_args(argv)

    from hyenamd.cluster import RolloutSpec, run_rollouts, sharded_inference, write_initial_store
    from hyenamd.cluster.backend import ensure_ray
    from hyenamd.engine.reference_systems import lj_fluid_system
    from hyenamd.io import open_store

    initial = args.out / "initial.h5md"
    if not initial.exists():
        write_initial_store(lj_fluid_system(2, seed=0), initial)
    specs = [
        RolloutSpec(
            name=f"argon_{k}",
            initial=str(initial),
            model=MODEL,
            integrator={"kind": "langevin_baoab", "dt_fs": 5.0, "temperature_k": 120.0, "seed": k},
            steps=args.steps,
            output=str(args.out / f"argon_{k}.h5md"),
            report_interval=10,
            checkpoint_interval=100,
            seed=k,
            temperature_k=120.0,
        )
        for k in range(4)
    ]
    ensure_ray(args.address, num_cpus=2)  # one Ray session for both steps below
    results = run_rollouts(specs, manifest=args.out / "manifest.json", shutdown=False)
    for r in results:
        print(
            f"{r.name}: {r.status}, {r.frames} frames, step {r.step}, node {r.node_id[:8]}, {r.wall_s:.1f} s"
        )

    # relabel the first trajectory with another potential, frames split across Ray tasks
    labels = sharded_inference(
        specs[0].output,
        dict(MODEL, sigma=3.3),
        args.out / "argon_0.labels.zarr",
        frames_per_task=8,
        shutdown=True,
    )
    with open_store(labels) as st:
        print(f"{labels}: {len(st)} frames, energy[0] = {st.observable('energy')[0]:.6f} eV")


if __name__ == "__main__":
    main()
