"""Neighbour-list time at 10⁴, 10⁵, 10⁶ atoms: vesin through hyenamd vs ASE's neighbor_list.

Dense liquid-like density (0.1 atoms/Å³, like liquid water's atoms), cutoff 5 Å, periodic
cubic box, half lists for hyenamd (what the model uses is the full list: both are timed).
ASE is timed at 10⁴ and 10⁵ only. All measurements come from one run of this script, so
their ratios are comparable even on a noisy machine.

    python benchmarks/neighbors.py            # full run (~1 min on 2 cores)
    python benchmarks/neighbors.py --quick    # seconds, for the test suite
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from common import header, write_json

from hyenamd.geometry import VerletList, neighbor_list
from hyenamd.workflows.demo import liquid_like_system


def best_of(fn, repeats: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes (for tests)")
    p.add_argument("--out", type=pathlib.Path, default=None, help="directory for the JSON result")
    p.add_argument("--cutoff", type=float, default=5.0)
    p.add_argument("--density", type=float, default=0.1)
    args = p.parse_args(argv)

    sizes = [1_000, 3_000] if args.quick else [10_000, 100_000, 1_000_000]
    ase_max = 3_000 if args.quick else 100_000
    rows = []
    for n in sizes:
        system = liquid_like_system(n, args.density, seed=0, dtype=__import__("torch").float64)
        repeats = 3 if n <= 100_000 else 2
        t_half, nb = best_of(
            lambda s=system: neighbor_list(s.positions, s.cell, s.pbc, args.cutoff, full=False), repeats
        )
        t_full, _ = best_of(
            lambda s=system: neighbor_list(s.positions, s.cell, s.pbc, args.cutoff, full=True), repeats
        )
        vl = VerletList(args.cutoff, skin=1.0, full=False)
        vl(system.positions, system.cell, system.pbc)
        t_reuse, _ = best_of(lambda s=system, v=vl: v(s.positions, s.cell, s.pbc), repeats)
        vl_fast = VerletList(args.cutoff, skin=1.0, full=False, exact=False)
        vl_fast(system.positions, system.cell, system.pbc)
        t_reuse_fast, _ = best_of(lambda s=system, v=vl_fast: v(s.positions, s.cell, s.pbc), repeats)
        row = {
            "n_atoms": n,
            "pairs_half": len(nb),
            "hyenamd_vesin_half_s": t_half,
            "hyenamd_vesin_full_s": t_full,
            "verlet_reuse_exact_half_s": t_reuse,
            "verlet_reuse_superset_half_s": t_reuse_fast,
        }
        if n <= ase_max:
            from ase.neighborlist import neighbor_list as ase_nl

            atoms = system.to_ase()
            t_ase, (i, _j, _s) = best_of(
                lambda a=atoms: ase_nl("ijS", a, args.cutoff), 1 if n > 10_000 else repeats
            )
            row["ase_full_s"] = t_ase
            row["ase_over_hyenamd_full"] = t_ase / t_full
            assert len(i) == 2 * len(nb), "ASE and vesin disagree on the pair count"
        rows.append(row)
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)

    cmd = "python benchmarks/neighbors.py" + (" --quick" if args.quick else "")
    payload = {**header(cmd), "cutoff_A": args.cutoff, "density_per_A3": args.density, "rows": rows}
    path = write_json("neighbors", payload, args.out)
    print(f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
