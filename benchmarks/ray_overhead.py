"""Overhead of run_rollouts (Ray actors on a local 2-node cluster) over the plain worker.

    .venv/bin/python benchmarks/ray_overhead.py            # 8 rollouts of >= 10 s each
    .venv/bin/python benchmarks/ray_overhead.py --quick    # 2 short rollouts (tests)

Workload: Langevin BAOAB on an argon box of ``4 · cells³`` atoms with the classical
Lennard-Jones potential (float64, CPU, one torch thread per process); the number of steps is
calibrated so that one rollout takes about ``--seconds`` seconds when run directly.

Three runs of the same 8 specs (fresh outputs each time):

1. ``direct``: :class:`~hyenamd.cluster.RolloutWorker` in this process, one after another;
2. ``ray_serial``: :func:`~hyenamd.cluster.run_rollouts` on a ``ray.cluster_utils.Cluster``
   (head with 0 CPUs + 2 worker nodes with 1 CPU each), ``max_in_flight=1``: the same serial
   work, so ``ray_serial / direct - 1`` is Ray's overhead (actor start-up, object store,
   manifest writes, result transfer), independent of how many cores are free;
3. ``ray_parallel``: the same with ``max_in_flight=2`` (one actor per node); its speed-up over
   ``direct`` depends on the free cores of the machine.

Writes ``benchmarks/results/ray_overhead.json`` (``--out`` to change the directory).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from common import header, write_json


def make_specs(directory: pathlib.Path, initial: str, n: int, steps: int):
    from hyenamd.cluster import RolloutSpec

    return [
        RolloutSpec(
            name=f"b_{k}",
            initial=initial,
            model={"kind": "lennard_jones", "cutoff": 6.0, "switch_on": 5.0},
            integrator={"kind": "langevin_baoab", "dt_fs": 5.0, "temperature_k": 120.0, "seed": k},
            steps=steps,
            output=str(directory / f"b_{k}.h5"),
            report_interval=max(1, steps // 50),
            checkpoint_interval=max(1, steps // 5),
            seed=k,
            temperature_k=120.0,
        )
        for k in range(n)
    ]


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="2 rollouts of about 0.5 s (for tests)")
    p.add_argument("--rollouts", type=int, default=8)
    p.add_argument("--seconds", type=float, default=12.0, help="target length of one direct rollout")
    p.add_argument("--cells", type=int, default=3, help="FCC cells per side (4 cells^3 atoms)")
    p.add_argument("--out", type=pathlib.Path, default=None, help="directory for the JSON result")
    args = p.parse_args(argv)
    if args.quick:
        args.rollouts, args.seconds, args.cells = 2, 0.5, 2

    import ray
    import torch
    from ray.cluster_utils import Cluster

    from hyenamd.cluster import RolloutWorker, run_rollouts, write_initial_store
    from hyenamd.engine.reference_systems import lj_fluid_system

    torch.set_num_threads(1)
    work = pathlib.Path(tempfile.mkdtemp(prefix="hyenamd-ray-overhead-"))
    try:
        initial = write_initial_store(lj_fluid_system(args.cells, seed=0), work / "initial.h5")
        # calibrate steps per rollout
        probe = make_specs(work / "probe", initial, 1, 200)[0]
        res = RolloutWorker().run(probe)
        per_step = res.wall_s / 200
        steps = max(20, int(args.seconds / per_step))
        print(f"{per_step * 1e3:.2f} ms/step -> {steps} steps per rollout", flush=True)

        t0 = time.perf_counter()
        direct = [RolloutWorker().run(s) for s in make_specs(work / "direct", initial, args.rollouts, steps)]
        direct_s = time.perf_counter() - t0
        print(f"direct: {direct_s:.2f} s", flush=True)

        t0 = time.perf_counter()
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
        for _ in range(2):
            cluster.add_node(num_cpus=1)
        ray.init(address=cluster.address, log_to_driver=False)
        cluster.wait_for_nodes()
        startup_s = time.perf_counter() - t0
        runs = {}
        try:
            for label, in_flight in (("ray_serial", 1), ("ray_parallel", 2)):
                specs = make_specs(work / label, initial, args.rollouts, steps)
                t0 = time.perf_counter()
                results = run_rollouts(
                    specs,
                    max_in_flight=in_flight,
                    manifest=work / label / "manifest.json",
                    progress=not args.quick,
                )
                wall = time.perf_counter() - t0
                assert all(r.ok for r in results), [(r.name, r.error) for r in results]
                runs[label] = {
                    "wall_s": wall,
                    "worker_s": [r.wall_s for r in results],
                    "nodes": sorted({r.node_id for r in results}),
                }
                print(f"{label}: {wall:.2f} s", flush=True)
        finally:
            ray.shutdown()
            cluster.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    ser, par = runs["ray_serial"], runs["ray_parallel"]
    payload = {
        **header("benchmarks/ray_overhead.py" + (" --quick" if args.quick else "")),
        "workload": {
            "potential": "classical Lennard-Jones (argon), float64, CPU, 1 torch thread",
            "integrator": "Langevin BAOAB, dt 5 fs",
            "n_atoms": 4 * args.cells**3,
            "n_rollouts": args.rollouts,
            "steps_per_rollout": steps,
            "ms_per_step_probe": per_step * 1e3,
        },
        "cluster": "ray.cluster_utils.Cluster: head (0 CPUs) + 2 worker nodes (1 CPU each), one machine",
        "cluster_startup_s": startup_s,
        "direct_s": direct_s,
        "direct_rollout_s": [r.wall_s for r in direct],
        "ray_serial_s": ser["wall_s"],
        "ray_parallel_s": par["wall_s"],
        "ray_serial_worker_s": ser["worker_s"],
        "ray_parallel_worker_s": par["worker_s"],
        "nodes_used_parallel": len(par["nodes"]),
        "overhead_serial": ser["wall_s"] / direct_s - 1.0,
        "overhead_serial_outside_worker": ser["wall_s"] / sum(ser["worker_s"]) - 1.0,
        "speedup_parallel": direct_s / par["wall_s"],
        "mean_direct_rollout_s": direct_s / args.rollouts,
    }
    path = write_json(
        "ray_overhead_quick" if args.quick and args.out is None else "ray_overhead", payload, args.out
    )
    print(
        f"overhead (serial Ray vs direct): {100 * payload['overhead_serial']:.1f} %; "
        f"parallel speed-up on 2 nodes: {payload['speedup_parallel']:.2f}x -> {path}"
    )
    return payload


if __name__ == "__main__":
    main()
