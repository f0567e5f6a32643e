"""DFT-matrix convolutions of one small system == the O(N²) oracles and the FFT kernels (float64)."""

from __future__ import annotations

import pytest
import torch

from hyenamd.surrogate import dft_conv
from hyenamd.surrogate.dft_conv import dft_geometric_convs, dft_matrices, use_dft
from hyenamd.surrogate.fftconv import (
    direct_cross_conv,
    direct_dot_conv,
    direct_scalar_conv,
    direct_scalar_vector_conv,
)
from hyenamd.surrogate.geometric_conv import geometric_convs_cf

DT = torch.float64


def _inputs(n, f=5, c=3, seed=0, dtype=DT):
    gen = torch.Generator().manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, dtype=dtype, generator=gen)  # noqa: E731
    return r(n, f), r(n, f), r(n, c), r(n, c, 3), r(n, c, 3)


def _support_mask(n, support):
    lag = torch.arange(n) - n // 2
    return (lag.abs() <= support).to(DT)


@pytest.mark.parametrize("real", [False, True], ids=["complex", "real_products"])
@pytest.mark.parametrize("circular", [True, False], ids=["circular", "linear"])
@pytest.mark.parametrize("n", [1, 2, 5, 8, 13, 64])
def test_equals_the_direct_oracles_float64(n, circular, real):
    q_s, k_s, q_m, q_v, k_v = _inputs(n, seed=n)
    z_s, p, z_m, z_d = dft_geometric_convs(q_s, k_s, q_m, q_v, k_v, circular=circular, real_products=real)
    one = lambda x: x.unsqueeze(0)  # noqa: E731
    refs = (
        direct_scalar_conv(one(q_s), one(k_s), circular=circular)[0],
        direct_cross_conv(one(q_v), one(k_v), circular=circular)[0],
        direct_scalar_vector_conv(one(q_m), one(k_v), circular=circular)[0],
        direct_dot_conv(one(q_v), one(k_v), circular=circular)[0],
    )
    for out, ref in zip((z_s, p, z_m, z_d), refs):
        assert out.shape == ref.shape and out.dtype == DT
        assert torch.allclose(out, ref, rtol=0, atol=1e-10 * max(1.0, float(ref.abs().max())))


@pytest.mark.parametrize("circular", [True, False], ids=["circular", "linear"])
@pytest.mark.parametrize("n,support", [(17, None), (40, 7), (41, 100)])
def test_equals_the_fft_kernels_float64(n, support, circular):
    """Same maths as ``geometric_convs_cf`` (channel-first FFT path), filter support included."""
    support = None if circular else support
    q_s, k_s, q_m, q_v, k_v = _inputs(n, seed=3)
    out = dft_geometric_convs(q_s, k_s, q_m, q_v, k_v, circular=circular, support=support)
    cf = lambda x: x.movedim(0, -1).unsqueeze(0)  # noqa: E731  [n, ...] -> [1, ..., n]
    ref = geometric_convs_cf(
        cf(q_s), cf(k_s), cf(q_m), cf(q_v), cf(k_v), torch.tensor([n]), circular=circular, support=support
    )
    for a, b in zip(out, ref):
        assert torch.allclose(a, b[0].movedim(-1, 0), rtol=0, atol=1e-10)
    if support is not None and support < n // 2:  # the cut matters: not the full-filter result
        full = dft_geometric_convs(q_s, k_s, q_m, q_v, k_v, circular=False)
        assert not torch.allclose(full[0], out[0], atol=1e-6)
        m = _support_mask(n, support).unsqueeze(1)
        cut = dft_geometric_convs(q_s, k_s * m, q_m, q_v, k_v * m.unsqueeze(-1), circular=False)
        assert all(torch.allclose(a, b, rtol=0, atol=1e-12) for a, b in zip(out, cut))


@pytest.mark.parametrize("real", [False, True], ids=["complex", "real_products"])
@pytest.mark.parametrize("circular", [True, False], ids=["circular", "linear"])
def test_gradients_and_double_backward_float64(circular, real):
    inputs = [x.requires_grad_(True) for x in _inputs(6, f=2, c=1, seed=7)]

    def f(*xs):
        z_s, p, z_m, z_d = dft_geometric_convs(*xs, circular=circular, real_products=real)
        return z_s.pow(2).sum() + (p * z_m).sum() + z_d.sin().sum()

    assert torch.autograd.gradcheck(f, inputs)
    assert torch.autograd.gradgradcheck(f, inputs, fast_mode=True)


def test_float32_matches_float64_to_rounding():
    x64 = _inputs(108, f=32, c=8, seed=1)
    out64 = dft_geometric_convs(*x64, circular=True)
    out32 = dft_geometric_convs(*(x.float() for x in x64), circular=True)
    for a, b in zip(out32, out64):
        assert a.dtype == torch.float32
        assert float((a.double() - b).abs().max() / b.abs().max()) < 1e-5


def test_matrices_are_cached_per_size_mode_and_dtype():
    a = dft_matrices(12, True, DT, torch.device("cpu"))
    assert dft_matrices(12, True, DT, torch.device("cpu")) is a
    assert dft_matrices(12, False, DT, torch.device("cpu"))[0].shape == (12, 2 * (23 // 2 + 1))
    assert dft_matrices(12, True, torch.float32, torch.device("cpu"))[0].dtype == torch.float32
    assert a[0].shape == (12, 14) and a[1].shape == (14, 12)


def test_use_dft_only_for_one_system_up_to_max_tokens(monkeypatch):
    monkeypatch.setattr(dft_conv, "MAX_TOKENS", 100)
    assert use_dft(1, 100) and not use_dft(1, 101) and not use_dft(2, 50) and not use_dft(1, 0)
    monkeypatch.setattr(dft_conv, "MAX_TOKENS", 0)
    assert not use_dft(1, 5)


def test_bad_shapes_raise():
    q_s, k_s, q_m, q_v, k_v = _inputs(5)
    with pytest.raises(ValueError, match="do not match"):
        dft_geometric_convs(q_s, k_s[:4], q_m, q_v, k_v, circular=True)
