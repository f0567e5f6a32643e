"""Implicit positional filter: decay, truncation, per-system L1 normalisation, size independence."""

from __future__ import annotations

import math

import pytest
import torch

from hyenamd.surrogate.filters import (
    ImplicitFilter,
    exponential_modulation,
    filter_on_tokens,
    positional_embedding,
)

DT = torch.float64


def test_filter_decays_at_least_as_fast_as_the_cap_and_is_cut_beyond_k():
    torch.manual_seed(0)
    filt = ImplicitFilter(5, w_min=1.0, w_init=4.0, w_cap=8.0, efolds=5.0).double()
    assert filt.k_max == 40
    assert bool((filt.rates() > 1 / 8.0).all())
    lags = torch.arange(-60, 61)
    h = filt(lags).detach()
    assert h.shape == (121, 5)
    assert float(h[lags.abs() > 40].abs().max()) == 0.0
    # |h(ℓ)| ≤ max|MLP| exp(-|ℓ|/w_cap): the envelope bounds it
    h_far = h[(lags.abs() > 30) & (lags.abs() <= 40)].abs().max()
    assert float(h_far) < 10 * math.exp(-30 / 8.0) * float(h.abs().max()) + 1e-12


def test_filter_values_do_not_depend_on_which_lags_are_asked():
    torch.manual_seed(1)
    filt = ImplicitFilter(3).double()
    a = filt(torch.arange(-10, 11)).detach()
    b = filt(torch.arange(-3, 4)).detach()
    assert torch.allclose(a[7:14], b, rtol=1e-13, atol=1e-15)


def test_filter_on_tokens_normalises_each_system_over_its_own_lags():
    torch.manual_seed(2)
    filt = ImplicitFilter(4).double()
    lengths = torch.tensor([9, 4, 1])
    lo, hi = filt.lag_range(9)
    assert (lo, hi) == (-4, 4)
    h = filt(torch.arange(lo, hi + 1)).detach()
    seq = filter_on_tokens(h, lo, lengths, 9)
    assert seq.shape == (3, 9, 4)
    assert torch.allclose(seq.abs().sum(1), torch.ones(3, 4, dtype=DT))
    # system 1 (n = 4, centre 2): token m holds h(m - 2) / mass
    own = filt(torch.arange(4) - 2).detach()
    assert torch.allclose(seq[1, :4], own / own.abs().sum(0), rtol=1e-12)
    assert float(seq[1, 4:].abs().sum()) == 0.0


@pytest.mark.parametrize("n", [10, 1000, 100_000])
def test_normalised_filter_is_order_one_at_any_size(n):
    torch.manual_seed(3)
    filt = ImplicitFilter(6)
    lo, hi = filt.lag_range(n)
    with torch.no_grad():
        seq = filter_on_tokens(filt(torch.arange(lo, hi + 1)), lo, torch.tensor([n]), n)
    l1 = seq.abs().sum(1)
    l2 = seq.pow(2).sum(1).sqrt()
    assert torch.allclose(l1, torch.ones_like(l1), rtol=1e-4)
    # the effective number of taps (L1/L2)² is bounded by the cap, whatever n
    assert float(((l1 / l2) ** 2).max()) <= 4 * filt.w_cap


def test_embedding_shape_and_bad_windows():
    z = positional_embedding(torch.arange(-3, 4).double(), 4, 100, 64.0)
    assert z.shape == (7, 9)
    with pytest.raises(ValueError, match="w_min"):
        ImplicitFilter(2, w_min=10.0, w_init=5.0)
    with pytest.raises(ValueError, match="w_cap"):
        ImplicitFilter(2, w_init=100.0, w_cap=50.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_exponential_modulation_is_exp_down_to_1e_38(dtype):
    """The window is plain ``exp`` (values and gradient) wherever it exceeds exp(-87) ≈ 1.6e-38; exactly 0 below."""
    lags = torch.arange(-9000, 9001, dtype=dtype)
    rates = torch.tensor([0.5, 0.05, 1.0 / 2048], dtype=dtype, requires_grad=True)
    h = torch.ones(lags.shape[0], 3, dtype=dtype)
    got = exponential_modulation(h, lags, rates)
    x = -lags.abs().unsqueeze(-1) * rates.detach()
    plain = torch.exp(x)
    kept = x >= -87.0
    assert (~kept).any() and torch.all(got.detach()[~kept] == 0)
    assert torch.equal(got.detach()[kept], plain[kept])
    assert float((got.detach() - plain).abs().max()) <= math.exp(-87.0)
    (g,) = torch.autograd.grad(got.sum(), rates)
    expect = (-lags.abs().unsqueeze(-1) * plain * kept).sum(0)
    torch.testing.assert_close(g, expect, rtol=1e-6 if dtype == torch.float32 else 1e-12, atol=0)


def test_on_lags_equals_forward_inside_the_support_and_refuses_beyond():
    """``on_lags`` skips the cut at ±K only where it is all ones: same values as ``forward``."""
    torch.manual_seed(0)
    filt = ImplicitFilter(5, w_min=1.0, w_init=3.0, w_cap=4.0, efolds=5.0).double()  # K = 20
    lo, hi = filt.lag_range(31)
    assert (lo, hi) == (-15, 15)
    assert torch.equal(filt.on_lags(lo, hi), filt(torch.arange(lo, hi + 1)))
    assert torch.equal(filt.on_lags(-20, 20), filt(torch.arange(-20, 21)))
    with pytest.raises(ValueError, match="support"):
        filt.on_lags(-21, 3)
    # channel-major layout (a transposed view of [C, M]): what the channel-first block reads
    h = filt(torch.arange(-7, 8))
    assert h.shape == (15, 5) and h.stride() == (1, 15)
