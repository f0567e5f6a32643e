"""glibc malloc thresholds against small-system speed: training steps on the demo's argon.

    python benchmarks/allocator.py --model benchmarks/results/ff_argon_demo_pair85.safetensors \\
        --store demo_output/reference_heldout.h5

For each threshold setting (mmap / trim, bytes; "default" = glibc's dynamic thresholds) a child
process runs ``--steps`` force-field training steps (``compute_forces(create_graph=True)`` +
AdamW) on a batch of 4 frames of ``--store``, one thread, and reports wall time, user/system
CPU seconds and minor page faults (``resource.getrusage``). Writes
``benchmarks/results/allocator.json``. The 10⁵-atom memory side of the trade-off is
``benchmarks/memory.py`` run under the same environment variables.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import header, write_json

SETTINGS = {
    "256KiB/1MiB (large-system)": (262144, 1048576),
    "default": None,
    "32MiB/64MiB (small-system)": (33554432, 67108864),
}

CHILD = r"""
import json, resource, sys, time, torch
torch.set_num_threads(1)
from hyenamd import Batch
from hyenamd.io import open_store
from hyenamd.surrogate import compute_forces, load_model
model_path, store, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
m = load_model(model_path)
with open_store(store) as st:
    b = Batch.from_systems([st[k].to(dtype=m.dtype) for k in range(4)])
opt = torch.optim.AdamW(m.parameters(), lr=1e-4)
r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
for _ in range(steps):
    out = compute_forces(m, b, create_graph=True)
    loss = out["forces"].pow(2).mean() + out["energy"].pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
print(json.dumps({"wall_s": t1 - t0, "user_s": r1.ru_utime - r0.ru_utime, "sys_s": r1.ru_stime - r0.ru_stime,
                  "minor_faults": r1.ru_minflt - r0.ru_minflt}))
"""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--store", required=True, help="a reference store with >= 4 frames")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--name", default="allocator")
    args = p.parse_args(argv)
    for path in (args.model, args.store):
        if not pathlib.Path(path).exists():
            p.error(f"{path} does not exist")
    src = str(pathlib.Path(__file__).resolve().parents[1] / "src")
    rows = {}
    for label, values in SETTINGS.items():
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "HYENAMD_MALLOC"))}
        env.update(OMP_NUM_THREADS="1", PYTHONPATH=src)
        if values is not None:
            env.update(MALLOC_MMAP_THRESHOLD_=str(values[0]), MALLOC_TRIM_THRESHOLD_=str(values[1]))
        out = subprocess.run(
            [sys.executable, "-c", CHILD, args.model, args.store, str(args.steps)],
            env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        rows[label] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{label:28s} " + ", ".join(f"{k} {v:.3g}" for k, v in rows[label].items()), flush=True)
    cmd = "python benchmarks/allocator.py " + " ".join(sys.argv[1:] if argv is None else argv)
    payload = {**header(cmd), "load_average": os.getloadavg(), "steps": args.steps, "rows": rows}
    print("→", write_json(args.name, payload))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
