"""Issue #15's GPU goals in one prepared run: energy + forces at 10⁶ atoms, the largest N that
fits, and one global block against equivariant attention at N = 30 000.

Preset S (``configs/surrogate/S.yaml``, species → argon, float32, randomly initialised), periodic
liquid-like boxes at ``--density`` atoms/Å³ (argon: 0.021), one process, sizes in increasing
order; each size is built (system, neighbour list, order), warmed up once, then timed
``--repeats`` times (``torch.cuda.synchronize`` around each call; wall seconds). Peak device memory
is ``torch.cuda.max_memory_allocated`` over the timed calls (reset after setup). A size that runs
out of device memory is recorded as such and ends the size sweep; so does the time budget
(``--budget-s``: no new size starts once the sweep has used it). Then the block comparison:
:class:`~hyenamd.surrogate.global_block.GlobalBlock` against
:class:`~hyenamd.surrogate.baselines.EquivariantAttentionBlock` (chunked and, where it fits, naive)
at ``--attention-n`` tokens, F = 64, C = 16, forward and forward + backward (minimum of repeats).

Goals (issue #15): largest N ≥ 10 M atoms on 80 GB; 10⁶ atoms ≤ 1 s; speed-up over the
equivariant transformer at N = 30 000 (paper: 20×). Writes JSON after every size, so a run cut
short keeps what it measured.

On the device machine (no package registry there; vesin travels as a wheel). Here, once, in the
repository root::

    echo /.whl/ >> .git/info/exclude
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \\
        --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl vesin==0.6.2

then one ``run`` with ``command="bash benchmarks/gpu_check.sh"``, ``carry: [".whl"]`` and
``timeout_s`` ≈ 560 (the script installs the wheels, runs the tests marked ``gpu`` —
CUDA against CPU in float64 — and then this file, everything under ``$OUT``).

CPU smoke run (what the test does): ``python benchmarks/gpu_goals.py --device cpu --quick --out /tmp/g.json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import pathlib
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from common import RESULTS, ROOT, header

SIZES = [1_000_000, 4_000_000, 10_000_000, 16_000_000, 24_000_000, 32_000_000]
QUICK_SIZES = [300, 1_000]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        fn()
        _sync(device)
        out.append(time.perf_counter() - t)
    return out


def _oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def energy_forces_row(n: int, device: torch.device, density: float, repeats: int) -> dict:
    """Build a system of ``n`` atoms on ``device``, then time energy + forces and the forward pass."""
    from hyenamd import Batch
    from hyenamd.config import load_config
    from hyenamd.geometry import batch_neighbor_list
    from hyenamd.surrogate import GHyena, GHyenaConfig, compute_forces
    from hyenamd.surrogate.model import _memory_regime
    from hyenamd.surrogate.ordering import batch_order
    from hyenamd.workflows.demo import liquid_like_system

    cfg = load_config(
        ROOT / "configs" / "surrogate" / "S.yaml", GHyenaConfig, ["species=[18]", "dtype=float32"]
    )
    torch.manual_seed(0)
    row: dict = {"n_atoms": n}
    t = time.perf_counter()
    model = GHyena(cfg).to(device)
    batch = Batch.from_system(liquid_like_system(n, density, seed=0)).to(device)
    nb = batch_neighbor_list(batch.positions, batch.cell, batch.pbc, batch.ptr, model.cutoff)
    batch = batch.replace(order=batch_order(batch, cfg.ordering))
    _sync(device)
    row["setup_s"] = time.perf_counter() - t
    row["pairs"] = len(nb)
    with torch.enable_grad():
        row["regime"] = _memory_regime(cfg, n, len(nb), device)
    out = compute_forces(model, batch, neighbors=nb)  # warm-up: kernels, plans, allocator pool
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = _timed(lambda: compute_forces(model, batch, neighbors=nb), device, repeats)
    row["energy_forces_s"] = times
    row["energy_forces_min_s"] = min(times)
    if device.type == "cuda":
        row["peak_allocated_gb"] = torch.cuda.max_memory_allocated(device) / 1e9
        row["bytes_per_atom"] = torch.cuda.max_memory_allocated(device) / n
        torch.cuda.reset_peak_memory_stats(device)

    def forward():
        with torch.no_grad():
            model(batch, neighbors=nb)

    row["forward_min_s"] = min(_timed(forward, device, repeats))
    if device.type == "cuda":
        row["forward_peak_allocated_gb"] = torch.cuda.max_memory_allocated(device) / 1e9
    row["finite"] = bool(torch.isfinite(out["forces"]).all())
    return row


def block_comparison(n: int, device: torch.device, repeats: int, f: int = 64, c: int = 16) -> dict:
    """One global block against equivariant attention (chunked, naive) at ``n`` tokens."""
    from hyenamd.surrogate.baselines import EquivariantAttentionBlock
    from hyenamd.surrogate.global_block import GlobalBlock

    torch.manual_seed(0)
    s, v = torch.randn(n, f, device=device), torch.randn(n, c, 3, device=device)
    order, ptr = torch.randperm(n, device=device), torch.tensor([0, n], device=device)
    blocks = {
        "global": GlobalBlock(f, c),
        "attention_chunked": EquivariantAttentionBlock(f, c, mode="chunked", chunk_size=512),
        "attention_naive": EquivariantAttentionBlock(f, c, mode="naive"),
    }
    res: dict = {"n_tokens": n, "n_scalar": f, "n_vector": c}
    for name, blk in blocks.items():
        blk = blk.to(device)

        def fwd(blk=blk):
            with torch.no_grad():
                blk(s, v, order, ptr)

        def fwd_bwd(blk=blk):
            s_, v_ = s.detach().requires_grad_(True), v.detach().requires_grad_(True)
            so, vo = blk(s_, v_, order, ptr)
            (so.square().mean() + vo.square().mean()).backward()
            blk.zero_grad(set_to_none=True)

        try:
            fwd_bwd()  # warm-up
            res[name] = {
                "forward_min_s": min(_timed(fwd, device, repeats)),
                "forward_backward_min_s": min(_timed(fwd_bwd, device, repeats)),
            }
        except (RuntimeError, torch.OutOfMemoryError) as exc:
            if not _oom(exc):
                raise
            res[name] = {"error": "out of memory"}
        blk.to("cpu")
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    g = res["global"]
    for name in ("attention_chunked", "attention_naive"):
        a = res[name]
        if "error" not in a and "error" not in g:
            res[f"speedup_over_{name}"] = {
                k: a[k] / g[k] for k in ("forward_min_s", "forward_backward_min_s")
            }
    return res


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--sizes", type=int, nargs="+", default=None, help=f"atoms (default {SIZES})")
    ap.add_argument("--density", type=float, default=0.021)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--attention-n", type=int, default=30_000, help="tokens of the block comparison (0: none)"
    )
    ap.add_argument("--budget-s", type=float, default=300.0, help="no new size starts after this many s")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run, e.g. on the CPU)")
    ap.add_argument("--out", type=pathlib.Path, default=RESULTS / "gpu_goals.json")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    sizes = args.sizes or (QUICK_SIZES if args.quick else SIZES)
    attention_n = min(256, args.attention_n) if args.quick else args.attention_n
    payload = header("python benchmarks/gpu_goals.py " + " ".join(argv if argv is not None else sys.argv[1:]))
    payload.update({"device": str(device), "density": args.density, "sizes": [], "stopped": None})
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        payload["device_name"], payload["device_memory_gb"] = props.name, props.total_memory / 1e9
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        args.out.write_text(json.dumps(payload, indent=1))

    start = time.perf_counter()
    for n in sizes:
        if time.perf_counter() - start > args.budget_s:
            payload["stopped"] = f"time budget ({args.budget_s:.0f} s) used before {n} atoms"
            break
        try:
            row = energy_forces_row(n, device, args.density, args.repeats)
        except (RuntimeError, torch.OutOfMemoryError) as exc:
            if not _oom(exc):
                raise
            payload["sizes"].append({"n_atoms": n, "error": "out of memory"})
            payload["stopped"] = f"out of memory at {n} atoms"
            break
        finally:
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
        payload["sizes"].append(row)
        print(json.dumps(row), flush=True)
        save()
    ok = [r["n_atoms"] for r in payload["sizes"] if "error" not in r]
    payload["largest_n_atoms"] = max(ok) if ok else None
    payload["block_comparison"] = block_comparison(attention_n, device, args.repeats) if attention_n else None
    print(json.dumps(payload["block_comparison"]), flush=True)
    payload["elapsed_s"] = time.perf_counter() - start
    save()
    return payload


if __name__ == "__main__":
    main()
