"""Geometric long convolutions, forward + backward CPU time against a bare rfft/irfft set (issue #15).

One system of N tokens, preset S widths (F=32, C=8), float32, one thread. Timed with
``time.process_time`` (minimum of ``--repeats``): the old autograd path
(:func:`hyenamd.surrogate.fftconv.geometric_long_convs`), the autograd Function
(:func:`hyenamd.surrogate.geometric_conv.geometric_convs_cf`, linear and circular), each forward
only and forward + backward (gradients of all five inputs), and the "bare set": the forward's
transforms alone — ``rfft`` of the F+4C signal rows and F+3C filter rows and ``irfft`` of F+7C
output rows at the same FFT length. Writes ``benchmarks/results/conv_speed.json``.

    python benchmarks/conv_speed.py --n 100000
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


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def main(argv=None) -> dict:
    from hyenamd.surrogate.fftconv import fast_fft_size, geometric_long_convs
    from hyenamd.surrogate.geometric_conv import geometric_convs_cf, plan_convs

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--f", type=int, default=32)
    ap.add_argument("--c", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    n, f, c = args.n, args.f, args.c
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(1, n, *s, generator=g)  # noqa: E731
    xs = [r(f), r(f), r(c), r(c, 3), r(c, 3)]
    lengths = torch.tensor([n])
    cf = [xs[0].transpose(1, 2), xs[1].transpose(1, 2), xs[2].transpose(1, 2)]
    cf += [xs[3].permute(0, 2, 3, 1), xs[4].permute(0, 2, 3, 1)]
    cf = [x.contiguous() for x in cf]
    rows = {}

    def fwd_bwd(fn, inputs):
        ins = [x.detach().requires_grad_(True) for x in inputs]
        outs = fn(*ins)
        torch.autograd.backward(outs, [torch.ones_like(o) for o in outs])

    def timed(name, fn, inputs, nfft):
        with torch.no_grad():
            t_f = _best(lambda: fn(*inputs), args.repeats)
        t_fb = _best(lambda: fwd_bwd(fn, inputs), args.repeats)
        sig = torch.randn(1, f + 4 * c, n)
        fil = torch.randn(1, f + 3 * c, n)

        def bare():
            torch.fft.rfft(sig, n=nfft, dim=-1)
            spec = torch.fft.rfft(fil, n=nfft, dim=-1)
            torch.fft.irfft(torch.cat([spec, spec[:, : 4 * c]], 1), n=nfft, dim=-1)

        t_bare = _best(bare, args.repeats)
        rows[name] = {
            "nfft": nfft,
            "fwd_cpu_s": t_f,
            "fwd_bwd_cpu_s": t_fb,
            "bare_set_cpu_s": t_bare,
            "fwd_over_bare": t_f / t_bare,
            "fwd_bwd_over_bare": t_fb / t_bare,
        }
        print(name, {k: round(v, 4) for k, v in rows[name].items()}, flush=True)

    timed("autograd (before)", lambda *a: geometric_long_convs(*a, lengths), xs, fast_fft_size(2 * n))
    for circ in (False, True):
        plan = plan_convs(lengths, n, circular=circ, support=None if circ else 61440)
        timed(
            f"Function, {'circular' if circ else 'linear'}",
            lambda *a, circ=circ: geometric_convs_cf(
                *a, lengths, circular=circ, support=None if circ else 61440
            ),
            cf,
            plan.nfft,
        )
    payload = header(
        "python benchmarks/conv_speed.py " + " ".join(argv if argv is not None else sys.argv[1:])
    )
    payload.update({"n": n, "f": f, "c": c, "rows": rows, "load_avg": os.getloadavg()})
    write_json("conv_speed", payload)
    return payload


if __name__ == "__main__":
    main()
