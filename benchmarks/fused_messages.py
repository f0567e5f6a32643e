"""CPU time of the local messages' forward + backward: the fused Function against the plain ops (issue #15).

One local block's message step (``local_message``'s chunk loop) at preset S widths (F = 32,
C = 8, K = 8, float32, one thread) on the pairs of a periodic liquid-like box (argon density by
default), forward and backward to the positions, the scalars and the vectors:

* ``fused``: :func:`hyenamd.surrogate.fused_messages.fused_message_add` per chunk (the fast
  regime's path since issue #15's fused messages);
* ``plain``: the plain ops with every chunk's activations kept (``_pair_messages`` + ``add_at``:
  the fast regime's path before);
* ``checkpointed``: the plain ops under activation checkpointing (the chunked regime's path).

The variants alternate, ``--reps`` rounds; ``time.process_time`` per call (load-robust on one
thread, not load-proof: the load average is recorded) and the median per variant.

    python benchmarks/fused_messages.py --atoms 100000 --reps 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import header, write_json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--atoms", type=int, default=100_000)
    ap.add_argument("--density", type=float, default=0.021)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--name", default="fused_messages")
    args = ap.parse_args()

    import torch
    from torch.utils.checkpoint import checkpoint

    from hyenamd import Batch
    from hyenamd.geometry import batch_neighbor_list
    from hyenamd.surrogate.fused_messages import fused_message_add
    from hyenamd.surrogate.local_block import DEFAULT_PAIR_CHUNK, _pair_geometry, _pair_messages, add_at
    from hyenamd.surrogate.radial import RadialEmbedding
    from hyenamd.workflows.demo import liquid_like_system

    torch.set_num_threads(1)
    torch.manual_seed(0)
    f, c, k, cutoff, chunk = 32, 8, 8, 4.5, DEFAULT_PAIR_CHUNK
    batch = Batch.from_system(liquid_like_system(args.atoms, args.density, seed=0))
    nb = batch_neighbor_list(batch.positions, batch.cell, batch.pbc, batch.ptr, cutoff)
    x0 = batch.positions
    pi, pj = nb.i.long(), nb.j.long()  # as the model's local blocks (int64 scatters are faster)
    radial = RadialEmbedding(cutoff, k)
    weight = torch.randn(f + 2 * c, k) / k**0.5
    s0 = torch.randn(args.atoms, f + 2 * c)
    v0 = torch.randn(args.atoms, c, 3)
    shift = (nb.shifts.to(x0.dtype) @ batch.cell[0]) if batch.cell is not None else 0.0

    def call(variant: str) -> float:
        x = x0.clone().requires_grad_(True)
        phi, v = s0.clone().requires_grad_(True), v0.clone().requires_grad_(True)
        t0 = time.process_time()
        vectors = x[pj] - x[pi] + shift
        acc_s, acc_v = torch.zeros(args.atoms, f), torch.zeros(args.atoms, c, 3)
        for a in range(0, len(nb), chunk):
            sl = slice(a, a + chunk)
            i, j, vec = pi[sl], pj[sl], vectors[sl]
            if variant == "fused":
                unit, rbf = _pair_geometry(vec, radial)
                acc_s, acc_v = fused_message_add(acc_s, acc_v, phi, v, rbf, unit, weight, i, j)
                continue
            pm_args = (phi, v, vec, j, weight, radial, c, None, None)
            if variant == "checkpointed":
                ds, dv = checkpoint(_pair_messages, *pm_args, use_reentrant=False)
            else:
                ds, dv = _pair_messages(*pm_args)
            acc_s, acc_v = add_at(acc_s, i, ds), add_at(acc_v, i, dv)
        loss = acc_s.sum() + acc_v.pow(2).sum()
        torch.autograd.grad(loss, [x, phi, v])
        return time.process_time() - t0

    variants = ("fused", "plain", "checkpointed")
    call("fused")  # warm-up: heap grown, kernels loaded
    times: dict[str, list[float]] = {name: [] for name in variants}
    load = [os.getloadavg()[0]]
    for _ in range(args.reps):
        for name in variants:
            times[name].append(call(name))
        load.append(os.getloadavg()[0])
    med = {name: statistics.median(t) for name, t in times.items()}
    result = {
        **header("python benchmarks/fused_messages.py " + " ".join(sys.argv[1:])),
        "n_atoms": args.atoms,
        "pairs": len(nb),
        "pair_chunk": chunk,
        "widths": {"F": f, "C": c, "K": k},
        "load_avg_1min": load,
        "cpu_s": times,
        "median_cpu_s": med,
        "median_us_per_atom": {name: 1e6 * t / args.atoms for name, t in med.items()},
        "fused_over_plain": med["fused"] / med["plain"],
        "checkpointed_over_fused": med["checkpointed"] / med["fused"],
    }
    path = write_json(args.name, result)
    print({key: result[key] for key in ("median_us_per_atom", "fused_over_plain", "checkpointed_over_fused")})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
