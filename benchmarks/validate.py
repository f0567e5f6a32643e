"""Cost of the validation metrics: RDF time/memory per frame at 10⁴–10⁶ atoms, and a whole pass.

1. RDF of one frame (liquid-like, 0.1 atoms/Å³, one species, r_max 6 Å, 120 bins) through
   :func:`hyenamd.validate.structure.rdf_counts`, unchunked and slab-chunked (100 000 atoms per
   slab): best-of wall time and peak numpy memory (tracemalloc) of the call.
2. Optionally (``--stores REF SUR``) the time of a whole ``validate`` pass on two stores
   (every metric, no model, no report), in analysed frames per second.

    python benchmarks/validate.py                                  # RDF at 1e4, 1e5, 1e6 atoms
    python benchmarks/validate.py --stores ref.h5 sur.h5           # + a whole validation pass
    python benchmarks/validate.py --quick                          # seconds, for the test suite
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time
import tracemalloc

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import numpy as np
from common import header, write_json

from hyenamd.validate.structure import rdf_counts
from hyenamd.workflows.demo import liquid_like_system


def rdf_cost(n_atoms: int, r_max: float, chunk_atoms: int, repeats: int) -> dict[str, float]:
    s = liquid_like_system(n_atoms, 0.1, seed=0)
    x, cell = s.positions.double().numpy(), s.cell.double().numpy()
    pbc, types = np.ones(3, bool), np.zeros(n_atoms, np.int64)
    best = float("inf")
    for _ in range(repeats):
        tracemalloc.start()
        t = time.perf_counter()
        counts = rdf_counts(x, cell, pbc, types, 1, r_max, 120, chunk_atoms=chunk_atoms)
        best = min(best, time.perf_counter() - t)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return {
        "n_atoms": n_atoms,
        "chunk_atoms": chunk_atoms,
        "seconds": best,
        "peak_numpy_MiB": peak / 2**20,
        "n_pairs": int(counts.sum()),
        "pairs_per_second": counts.sum() / best,
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes (for tests)")
    p.add_argument("--sizes", type=int, nargs="*", default=None)
    p.add_argument("--r-max", type=float, default=6.0)
    p.add_argument("--stores", nargs=2, default=None, metavar=("REF", "SUR"))
    p.add_argument("--config", default=None, help="validate config for --stores")
    p.add_argument("--out", type=pathlib.Path, default=None, help="directory for the JSON result")
    a = p.parse_args(argv)
    sizes = a.sizes or ([2000] if a.quick else [10_000, 100_000, 1_000_000])
    chunk = 1000 if a.quick else 100_000
    rows = []
    for n in sizes:
        for c in sorted({max(n, chunk), chunk}, reverse=True):  # unchunked first, then slabs
            if n > 300_000 and c >= n:
                continue  # unchunked 10⁶ atoms would need several GB: that is what chunking avoids
            row = rdf_cost(n, a.r_max, c, 1 if n >= 100_000 else 3)
            rows.append(row)
            print(
                f"RDF {n:>9,} atoms chunk {c:>9,}: {row['seconds']:8.3f} s  "
                f"peak {row['peak_numpy_MiB']:8.1f} MiB  {row['pairs_per_second'] / 1e6:6.1f} M pairs/s"
            )
    out: dict = {**header(" ".join(["python benchmarks/validate.py", *(argv or sys.argv[1:])])), "rdf": rows}
    if a.stores:
        from hyenamd.config import load_config
        from hyenamd.validate import ValidateConfig, validate

        cfg = load_config(a.config, ValidateConfig, ["progress=false"])
        t = time.perf_counter()
        res = validate(a.stores[0], a.stores[1], cfg, echo=lambda *x: None)
        dt = time.perf_counter() - t
        frames = res.reference.n_frames + res.surrogate.n_frames
        out["validate"] = {
            "reference": a.stores[0],
            "surrogate": a.stores[1],
            "n_atoms": res.reference.n_atoms,
            "frames_analysed": frames,
            "seconds": dt,
            "frames_per_second": frames / dt,
            "passed": res.passed,
            "metrics": {m.name: m.value for m in res.metrics},
        }
        print(
            f"validate: {frames} frames of {res.reference.n_atoms} atoms in {dt:.1f} s ({frames / dt:.1f} frames/s)"
        )
    path = write_json("validate_quick" if a.quick else "validate", out, a.out)
    print(f"wrote {path}")
    return out


if __name__ == "__main__":
    main()
