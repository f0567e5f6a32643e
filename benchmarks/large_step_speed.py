"""Simulated time per wall second: the learned large step against OpenMM CPU, at 108 and 864 argon atoms.

    OMP_NUM_THREADS=1 python benchmarks/large_step_speed.py --run-dir demo_output --cells 3 6

``--run-dir``: a demo output (its ``summary.json`` — reference settings, force field — and
``dynamics/best.safetensors``, the map Φ). For each ``n_cells`` (4·n³ atoms, the demo's density):
OpenMM's speed as the demo measures it (:func:`~hyenamd.workflows.demo_stages.openmm_speed`: the
fastest of 3 × 1000 LangevinMiddle steps of 4 fs, CPU platform, the reference's threads) and the
large step's (:class:`~hyenamd.engine.LearnedPropagator` as the demo runs it: O–Φ–O strides with
the demo's sub-strides and rescale, float32, one torch thread; the fastest of ``--repeats``
timings of ``--strides`` strides after two warm-up strides) from an OpenMM-equilibrated state
(1,000 steps at 2 T, then 1,000 at T). The model trained on 108 atoms runs unchanged on 864
(G-Hyena's convolutions and local blocks take any N); only speed is measured here.

Writes ``benchmarks/results/<name>.json`` (machine, date, commit, command, load averages).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import header, write_json


def equilibrated_system(rc, dtype: torch.dtype):
    """An argon liquid of ``rc`` (OpenMM: 1000 steps at 2 T, 1000 at T) as a hyenamd System."""
    import openmm.unit as u

    from hyenamd.engine.reference import _get_state, make_context, state_to_internal

    ref, ctx, integ, _ = make_context(rc)
    integ.setTemperature(2 * rc.temperature_k * u.kelvin)
    integ.step(1000)
    integ.setTemperature(rc.temperature_k * u.kelvin)
    integ.step(1000)
    s = state_to_internal(_get_state(ctx))
    system = ref.to_hyenamd(dtype=torch.float64).replace(
        positions=torch.as_tensor(s["positions"]),
        velocities=torch.as_tensor(s["velocities"]),
        cell=torch.as_tensor(s["cell"]),
    )
    return system.to(dtype=dtype)


def large_step_speed(run_dir: pathlib.Path, summary: dict, system, strides: int, repeats: int) -> dict:
    from hyenamd.engine import LearnedPropagator, Simulation
    from hyenamd.surrogate import load_model

    cfg = summary["config"]
    ff_path = cfg["force_field_checkpoint"] or str(run_dir / "force_field" / "best.safetensors")
    model = load_model(run_dir / "dynamics" / "best.safetensors")
    prop = LearnedPropagator(
        model,
        cfg["reference"]["temperature_k"],
        cfg["reference"]["friction_per_ps"] / 1000.0,
        energy_model=load_model(ff_path, dtype=model.dtype),
        seed=0,
        substeps=cfg["rollout"].get("large_step_substeps", 1),
        rescale_every=cfg["rollout"].get("large_step_rescale_every", "substep"),
        skin=cfg["rollout"]["skin"],
    )
    walls = []
    with Simulation(prop, system) as sim:
        sim.run(2)
        for _ in range(repeats):
            t = time.perf_counter()
            sim.run(strides)
            walls.append(time.perf_counter() - t)
        temperature = float(sim.state.temperature().mean())
    wall = min(walls)
    return {
        "strides": strides,
        "repeats": repeats,
        "stride_fs": prop.dt_fs,
        "substeps": prop.substeps,
        "wall_s": wall,
        "simulated_fs_per_wall_s": strides * prop.dt_fs / wall,
        "temperature_end_k": temperature,
    }


def main(argv: list[str] | None = None) -> dict:
    from hyenamd.config import from_dict
    from hyenamd.workflows.demo import DemoConfig
    from hyenamd.workflows.demo_stages import openmm_speed

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", type=pathlib.Path, required=True)
    ap.add_argument("--cells", nargs="+", type=int, default=[3, 6])
    ap.add_argument("--strides", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--name", default="large_step_speed")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    payload = header(
        "python benchmarks/large_step_speed.py " + " ".join(argv if argv is not None else sys.argv[1:])
    )
    payload.update({"run_dir": str(args.run_dir), "load_avg_start": os.getloadavg(), "rows": []})
    summary = json.loads((args.run_dir / "summary.json").read_text())
    base = from_dict(DemoConfig, {"reference": summary["config"]["reference"]})
    for n in args.cells:
        argon = dataclasses.replace(base.reference.argon, n_cells=n)
        rc = dataclasses.replace(base.reference, argon=argon, minimize=True, segments="none")
        cfg = dataclasses.replace(base, reference=rc)
        omm = openmm_speed(cfg)
        system = equilibrated_system(dataclasses.replace(rc, minimize=True), torch.float32)
        ls = large_step_speed(args.run_dir, summary, system, args.strides, args.repeats)
        row = {
            "n_cells": n,
            "n_atoms": int(system.n_atoms),
            "openmm": omm,
            "large_step": ls,
            "ratio": ls["simulated_fs_per_wall_s"] / omm["simulated_fs_per_wall_s"],
            "load_avg": os.getloadavg(),
        }
        payload["rows"].append(row)
        print(
            f"{row['n_atoms']} atoms: OpenMM {omm['simulated_fs_per_wall_s']:,.0f} fs/s, large step "
            f"{ls['simulated_fs_per_wall_s']:,.0f} fs/s ({row['ratio']:.3f}×)",
            flush=True,
        )
        write_json(args.name, payload)
    return payload


if __name__ == "__main__":
    main()
