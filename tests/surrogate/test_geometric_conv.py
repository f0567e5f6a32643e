"""The memory-lean geometric convolution Function == the O(N²) oracles (float64), gradcheck, both modes."""

from __future__ import annotations

import pytest
import torch

from hyenamd.surrogate import fftconv as fc
from hyenamd.surrogate.geometric_conv import geometric_convs_cf, plan_convs

DT = torch.float64
CONVS = [False, True]


def _inputs(lengths, f, c, gen, support=None):
    lengths = torch.tensor(lengths)
    b, length = len(lengths), int(lengths.max())
    mask = fc.sequence_mask(lengths, length)

    def r(*shape):
        x = torch.randn(b, length, *shape, dtype=DT, generator=gen)
        return x * mask.view(b, length, *([1] * len(shape)))

    q_s, k_s, q_m, q_v, k_v = r(f), r(f), r(c), r(c, 3), r(c, 3)
    if support is not None:  # filters zero beyond ±support lags (as the implicit filter is)
        lag = torch.arange(length) - torch.div(lengths, 2, rounding_mode="floor").unsqueeze(1)
        keep = (lag.abs() <= support).to(DT)
        k_s, k_v = k_s * keep.unsqueeze(-1), k_v * keep.view(b, length, 1, 1)
    return lengths, q_s, k_s, q_m, q_v, k_v


def _cf(q_s, k_s, q_m, q_v, k_v):
    return (
        q_s.transpose(1, 2),
        k_s.transpose(1, 2),
        q_m.transpose(1, 2),
        q_v.permute(0, 2, 3, 1),
        k_v.permute(0, 2, 3, 1),
    )


def _rel(a, b):
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


@pytest.mark.parametrize("circular", CONVS, ids=["linear", "circular"])
@pytest.mark.parametrize(
    "lengths,support",
    [
        ([16], None),
        ([15], None),
        ([17], None),
        ([1], None),
        ([23, 1, 10, 17], None),
        ([40], 6),
        ([40, 25], 6),
    ],
)
@pytest.mark.parametrize("chunk", [1, 8])
def test_equals_direct_oracles(lengths, support, circular, chunk):
    gen = torch.Generator().manual_seed(sum(lengths) + (support or 0))
    lengths, q_s, k_s, q_m, q_v, k_v = _inputs(lengths, 5, 3, gen, support)
    z_s, p, z_m, z_d = geometric_convs_cf(
        *_cf(q_s, k_s, q_m, q_v, k_v), lengths, circular=circular, support=support, chunk=chunk
    )
    kw = {"circular": circular}
    assert _rel(z_s.transpose(1, 2), fc.direct_scalar_conv(q_s, k_s, lengths, **kw)) <= 1e-10
    assert _rel(p.permute(0, 3, 1, 2), fc.direct_cross_conv(q_v, k_v, lengths, **kw)) <= 1e-10
    assert _rel(z_m.permute(0, 3, 1, 2), fc.direct_scalar_vector_conv(q_m, k_v, lengths, **kw)) <= 1e-10
    assert _rel(z_d.transpose(1, 2), fc.direct_dot_conv(q_v, k_v, lengths, **kw)) <= 1e-10


def test_fft_lengths():
    one = torch.tensor([100])
    assert plan_convs(one, 100, circular=True).nfft == 100  # native circular at a fast size
    assert plan_convs(torch.tensor([97]), 97, circular=True).nfft == fc.fast_fft_size(194)  # folded
    assert plan_convs(one, 100, circular=False).nfft == fc.fast_fft_size(200)
    assert plan_convs(one, 100, circular=False, support=10).nfft == fc.fast_fft_size(110)


@pytest.mark.parametrize("keep", [True, False], ids=["kept-spectra", "recomputed-spectra"])
@pytest.mark.parametrize("circular", CONVS, ids=["linear", "circular"])
@pytest.mark.parametrize("lengths,support", [([7], None), ([6, 4], None), ([8], 2)])
def test_gradcheck_and_gradgradcheck(lengths, support, circular, keep):
    gen = torch.Generator().manual_seed(3)
    lengths, *xs = _inputs(lengths, 2, 1, gen, support)
    xs = [x.clone().requires_grad_(True) for x in _cf(*xs)]
    masks = [x.detach().ne(0).to(DT) for x in xs]  # stay in the domain: zero on padding/outside support

    def fn(*ys):
        ys = [y * m for y, m in zip(ys, masks)]
        return geometric_convs_cf(
            *ys, lengths, circular=circular, support=support, chunk=1, keep_spectra=keep
        )

    assert torch.autograd.gradcheck(fn, xs)
    assert torch.autograd.gradgradcheck(fn, xs)


@pytest.mark.parametrize("keep", [True, False], ids=["kept-spectra", "recomputed-spectra"])
@pytest.mark.parametrize("lengths", [[19, 12], [19], [20], [45]], ids=str)
@pytest.mark.parametrize("circular", CONVS, ids=["linear", "circular"])
def test_gradients_equal_those_of_the_autograd_path(circular, lengths, keep):
    """Float64 gradients of all five inputs == autograd through the plain FFT path (padded batches,
    one system read by slices: folded and native circular (20 tokens), linear)."""
    gen = torch.Generator().manual_seed(4)
    lengths, *xs = _inputs(lengths, 4, 2, gen)
    a = [x.clone().requires_grad_(True) for x in xs]
    b = [x.clone().requires_grad_(True) for x in _cf(*xs)]
    ref = fc.geometric_long_convs(*a, lengths, circular=circular)
    out = geometric_convs_cf(*b, lengths, circular=circular, chunk=5, keep_spectra=keep)
    w = [torch.randn(o.shape, dtype=DT, generator=gen) for o in ref]
    sum((r * ww).sum() for r, ww in zip(ref, w)).backward()
    perm = [(0, 2, 1), (0, 2, 3, 1), (0, 2, 3, 1), (0, 2, 1)]
    sum((o * ww.permute(*pp)).sum() for o, ww, pp in zip(out, w, perm)).backward()
    back = [(0, 2, 1), (0, 2, 1), (0, 2, 1), (0, 3, 1, 2), (0, 3, 1, 2)]
    for xa, xb, pp in zip(a, b, back):
        assert _rel(xb.grad.permute(*pp), xa.grad) <= 1e-10
