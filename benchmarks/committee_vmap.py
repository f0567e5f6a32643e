"""Committee of K G-Hyenas: the loop over members vs one ``torch.func.vmap`` pass (CPU time).

``Committee.statistics`` (energies, forces, variances) for K = 4 members on small float64
systems, both paths on the same batch and neighbour list, interleaved, median of the
repetitions of ``time.process_time`` (CPU seconds of this process: less sensitive to other
work on a shared machine than wall time). Also records the largest difference between the two
paths (they must agree to float64 rounding).

    python benchmarks/committee_vmap.py [--reps 9] [--out DIR]     # ~1 min on 2 cores
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import torch
import yaml
from common import ROOT, header, write_json

from hyenamd import Batch
from hyenamd.engine.committee import Committee
from hyenamd.engine.integrators import canonical_order
from hyenamd.surrogate import GHyena, GHyenaConfig
from hyenamd.surrogate.model import batch_neighbor_list
from hyenamd.workflows.demo import liquid_like_system

K = 4


def _configs() -> dict[str, dict]:
    tiny = dict(
        species=(8,), cutoff=4.0, n_scalar=16, n_vector=4, n_rbf=6, pattern=("local", "global"),
        energy_scale=10.0,
    )  # fmt: skip
    preset = yaml.safe_load((ROOT / "configs" / "surrogate" / "S.yaml").read_text())
    return {"tiny (tests' model)": tiny, "preset S": preset}


def measure(name: str, cfg_kw: dict, n_atoms: int, reps: int) -> dict:
    members = [GHyena(GHyenaConfig(**{**cfg_kw, "dtype": "float64", "seed": k})) for k in range(K)]
    committee = Committee(members)
    sp = 8 if 8 in members[0].cfg.species else members[0].cfg.species[0]
    s = liquid_like_system(n_atoms, density=0.08, species=sp, seed=0, dtype=torch.float64)
    batch = Batch.from_system(s)
    batch = batch.replace(order=canonical_order(members[0], batch))
    nbrs = batch_neighbor_list(batch.positions, batch.cell, batch.pbc, batch.ptr, committee.cutoff)
    runs = {"loop": False, "vmap": True}
    out = {k: committee.statistics(batch, nbrs, vectorize=v) for k, v in runs.items()}  # warm-up
    diff = {
        key: float((out["loop"][key] - out["vmap"][key]).abs().max())
        for key in ("energy_comm", "forces_comm", "energy_var", "forces_var")
    }
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(reps):
        for k, v in runs.items():
            t0 = time.process_time()
            committee.statistics(batch, nbrs, vectorize=v)
            times[k].append(time.process_time() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "model": name,
        "pattern": list(members[0].cfg.pattern),
        "n_scalar": members[0].cfg.n_scalar,
        "n_vector": members[0].cfg.n_vector,
        "n_atoms": n_atoms,
        "n_pairs": int(nbrs.i.shape[0]),
        "members": K,
        "cpu_s_loop": med["loop"],
        "cpu_s_vmap": med["vmap"],
        "speedup": med["loop"] / med["vmap"],
        "cpu_s_all": times,
        "max_abs_diff_loop_vs_vmap": diff,
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=9, help="timed repetitions per path (median reported)")
    p.add_argument("--out", type=pathlib.Path, default=None, help="directory for the JSON result")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    cases = [(name, kw, n) for name, kw in _configs().items() for n in (27, 216)]
    rows = []
    for name, kw, n in cases:
        row = measure(name, kw, n, args.reps)
        print(
            f"{name:20s} N={n:4d} pairs={row['n_pairs']:6d}  loop {row['cpu_s_loop'] * 1e3:7.1f} ms  "
            f"vmap {row['cpu_s_vmap'] * 1e3:7.1f} ms  x{row['speedup']:.2f}  "
            f"max|dF| {row['max_abs_diff_loop_vs_vmap']['forces_comm']:.1e}"
        )
        rows.append(row)
    payload = header("python benchmarks/committee_vmap.py") | {
        "load_avg": os.getloadavg(),
        "metric": "median time.process_time of Committee.statistics (energy+forces, float64), K members",
        "rows": rows,
    }
    path = write_json("committee_vmap", payload, args.out)
    print(f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
