"""Geometric long convolutions, forward + backward CPU time against bare rfft/irfft sets (issue #15).

One system of N tokens, preset S widths (F=32, C=8), float32, one thread. Timed with
``time.process_time`` (minimum of ``--repeats``, all paths interleaved in each repeat so the
machine's load hits them alike): the old autograd path
(:func:`hyenamd.surrogate.fftconv.geometric_long_convs`, N ≤ 10⁵ only) and the autograd Function
(:func:`hyenamd.surrogate.geometric_conv.geometric_convs_cf`, linear and circular, input spectra
kept or recomputed in the backward), each forward only and forward + backward (gradients of all
five inputs). References, the transforms alone at the same FFT length, from preallocated padded
buffers in batches of 16 rows (pocketfft's efficient regime):

* *bare forward set*: ``rfft`` of the F+4C signal and F+3C filter rows, ``irfft`` of F+7C output rows;
* *bare forward + backward set*: the forward set plus the fewest transforms any FFT backward needs
  (``rfft`` of the F+7C output-gradient rows, ``irfft`` of the 2F+7C input-gradient rows), i.e.
  2× the forward set's rows. Forward + backward over the *forward* set is ≥ 2 by construction.

Writes ``benchmarks/results/conv_speed.json`` (``--name``).

    python benchmarks/conv_speed.py --n 10000 100000
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from common import header, write_json

BATCH = 16  # rows per bare transform call


def _bare(nfft: int, n: int, rows_r: int, rows_i: int):
    x = torch.zeros(BATCH, 1, nfft)
    x[..., :n] = torch.randn(BATCH, 1, n)
    spec = torch.fft.rfft(x, dim=-1)

    def run():
        for a in range(0, rows_r, BATCH):
            torch.fft.rfft(x[: min(BATCH, rows_r - a)], dim=-1)
        for a in range(0, rows_i, BATCH):
            torch.fft.irfft(spec[: min(BATCH, rows_i - a)], n=nfft, dim=-1)

    return run


def measure(n: int, f: int, c: int, repeats: int, old: bool) -> dict:
    from hyenamd.surrogate.fftconv import fast_fft_size, geometric_long_convs
    from hyenamd.surrogate.geometric_conv import geometric_convs_cf, plan_convs

    support = 61440  # the implicit filter's K at preset S (30 e-folds of w_cap = 2048 tokens)
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(1, n, *s, generator=g)  # noqa: E731
    xs = [r(f), r(f), r(c), r(c, 3), r(c, 3)]
    lengths = torch.tensor([n])
    cf = [xs[0].transpose(1, 2), xs[1].transpose(1, 2), xs[2].transpose(1, 2)]
    cf = [x.contiguous() for x in [*cf, xs[3].permute(0, 2, 3, 1), xs[4].permute(0, 2, 3, 1)]]

    def fwd_bwd(fn, inputs):
        ins = [x.detach().requires_grad_(True) for x in inputs]
        outs = fn(*ins)
        torch.autograd.backward(outs, [torch.ones_like(o) for o in outs])

    def no_grad(fn, inputs):
        with torch.no_grad():
            fn(*inputs)

    paths = {}  # name -> (nfft, forward, forward + backward)
    if old:
        fn = lambda *a: geometric_long_convs(*a, lengths)  # noqa: E731
        paths["autograd (before #15)"] = (fast_fft_size(2 * n), fn, xs)
    for circ in (False, True):
        nfft = plan_convs(lengths, n, circular=circ, support=None if circ else support).nfft
        for keep in (True, False):
            fn = lambda *a, circ=circ, keep=keep: geometric_convs_cf(  # noqa: E731
                *a, lengths, circular=circ, support=None if circ else support, keep_spectra=keep
            )
            mode = "circular" if circ else "linear"
            paths[f"Function, {mode}, spectra {'kept' if keep else 'recomputed'}"] = (nfft, fn, cf)
    timers = {}
    for name, (_, fn, inputs) in paths.items():
        timers[(name, "fwd")] = lambda fn=fn, inputs=inputs: no_grad(fn, inputs)
        timers[(name, "fwd_bwd")] = lambda fn=fn, inputs=inputs: fwd_bwd(fn, inputs)
    for nfft in sorted({p[0] for p in paths.values()}):
        timers[(nfft, "bare_fwd")] = _bare(nfft, n, 2 * f + 7 * c, f + 7 * c)
        timers[(nfft, "bare_fwd_bwd")] = _bare(nfft, n, 3 * f + 14 * c, 3 * f + 14 * c)
    best = dict.fromkeys(timers, float("inf"))
    for fn in timers.values():  # warm-up: FFT plans, first-touch of buffers
        fn()
    for _ in range(repeats):
        for key, fn in timers.items():
            t0 = time.process_time()
            fn()
            best[key] = min(best[key], time.process_time() - t0)
    rows = {}
    for name, (nfft, _, _) in paths.items():
        bf, bfb = best[(nfft, "bare_fwd")], best[(nfft, "bare_fwd_bwd")]
        t_f, t_fb = best[(name, "fwd")], best[(name, "fwd_bwd")]
        rows[name] = {
            "nfft": nfft,
            "fwd_cpu_s": t_f,
            "fwd_bwd_cpu_s": t_fb,
            "bare_fwd_set_cpu_s": bf,
            "bare_fwd_bwd_set_cpu_s": bfb,
            "fwd_over_bare_fwd": t_f / bf,
            "fwd_bwd_over_bare_fwd_bwd": t_fb / bfb,
            "fwd_bwd_over_bare_fwd": t_fb / bf,
        }
        print(n, name, {k: round(v, 4) for k, v in rows[name].items()}, flush=True)
    return rows


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--f", type=int, default=32)
    ap.add_argument("--c", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--name", default="conv_speed")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    payload = header(
        "python benchmarks/conv_speed.py " + " ".join(argv if argv is not None else sys.argv[1:])
    )
    payload.update({"f": args.f, "c": args.c, "load_avg_start": os.getloadavg()})
    payload["sizes"] = {str(n): measure(n, args.f, args.c, args.repeats, old=n <= 100_000) for n in args.n}
    payload["load_avg_end"] = os.getloadavg()
    write_json(args.name, payload)
    return payload


if __name__ == "__main__":
    main()
