"""FFT geometric convolutions == their direct O(N²) sums (float64), layout helpers, no batch mixing."""

from __future__ import annotations

import pytest
import torch

from hyenamd.surrogate import fftconv as fc

DT = torch.float64
PAIRS = [
    ("scalar", fc.scalar_conv, fc.direct_scalar_conv, False, False),
    ("cross", fc.cross_conv, fc.direct_cross_conv, True, True),
    ("scalar_vector", fc.scalar_vector_conv, fc.direct_scalar_vector_conv, False, True),
    ("dot", fc.dot_conv, fc.direct_dot_conv, True, True),
]


def _rand(b, length, c, vector, gen, lengths=None):
    x = torch.randn(b, length, c, *((3,) if vector else ()), dtype=DT, generator=gen)
    if lengths is not None:
        m = fc.sequence_mask(lengths, length).view(b, length, *([1] * (x.ndim - 2)))
        x = x * m
    return x


def _rel(a, b):
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


@pytest.mark.parametrize("name,fast,direct,av,bv", PAIRS, ids=[p[0] for p in PAIRS])
@pytest.mark.parametrize("n", [1, 2, 8, 15, 16, 17, 64, 97])
@pytest.mark.parametrize("c", [1, 7])
@pytest.mark.parametrize("circular", [False, True], ids=["linear", "circular"])
def test_fft_equals_direct(name, fast, direct, av, bv, n, c, circular):
    gen = torch.Generator().manual_seed(n * 31 + c)
    a, b = _rand(2, n, c, av, gen), _rand(2, n, c, bv, gen)
    out, ref = fast(a, b, circular=circular), direct(a, b, circular=circular)
    assert out.shape == ref.shape
    assert _rel(out, ref) <= 1e-10


@pytest.mark.parametrize("name,fast,direct,av,bv", PAIRS, ids=[p[0] for p in PAIRS])
@pytest.mark.parametrize("circular", [False, True], ids=["linear", "circular"])
def test_batched_systems_of_different_sizes(name, fast, direct, av, bv, circular):
    gen = torch.Generator().manual_seed(5)
    lengths = torch.tensor([23, 1, 10, 17])
    a, b = _rand(4, 23, 5, av, gen, lengths), _rand(4, 23, 5, bv, gen, lengths)
    out = fast(a, b, lengths, circular=circular)
    assert _rel(out, direct(a, b, lengths, circular=circular)) <= 1e-10
    for k, n in enumerate(lengths.tolist()):  # each system alone, unpadded
        alone = fast(a[k : k + 1, :n], b[k : k + 1, :n], circular=circular)
        assert _rel(out[k : k + 1, :n], alone) <= 1e-12
        assert float(out[k, n:].abs().sum()) == 0.0  # padding stays zero


@pytest.mark.parametrize("name,fast,direct,av,bv", PAIRS, ids=[p[0] for p in PAIRS])
@pytest.mark.parametrize("circular", [False, True], ids=["linear", "circular"])
def test_no_mixing_between_systems(name, fast, direct, av, bv, circular):
    gen = torch.Generator().manual_seed(6)
    lengths = torch.tensor([12, 19])
    a, b = _rand(2, 19, 3, av, gen, lengths), _rand(2, 19, 3, bv, gen, lengths)
    out = fast(a, b, lengths, circular=circular)
    a2, b2 = a.clone(), b.clone()
    a2[1] = 100.0 * torch.randn(a2[1].shape, dtype=DT, generator=gen)
    b2[1] = -7.0
    out2 = fast(a2, b2, lengths, circular=circular)
    assert torch.equal(out[0], out2[0])


@pytest.mark.parametrize("circular", [False, True], ids=["linear", "circular"])
def test_garbage_in_padding_is_ignored(circular):
    gen = torch.Generator().manual_seed(7)
    lengths = torch.tensor([9, 4])
    a, b = _rand(2, 9, 2, True, gen, lengths), _rand(2, 9, 2, True, gen, lengths)
    a2 = a.clone()
    a2[1, 4:] = 1e3
    assert torch.equal(
        fc.cross_conv(a, b, lengths, circular=circular), fc.cross_conv(a2, b, lengths, circular=circular)
    )


def test_definition_on_a_tiny_example():
    # n = 3, centre c = 1: (a ⊛ b)_i = Σ_j a_j b_(i-j+1)
    a = torch.tensor([[1.0, 2.0, 3.0]], dtype=DT).unsqueeze(-1)
    b = torch.tensor([[10.0, 100.0, 1000.0]], dtype=DT).unsqueeze(-1)
    expect = [1 * 100 + 2 * 10, 1 * 1000 + 2 * 100 + 3 * 10, 2 * 1000 + 3 * 100]
    assert fc.scalar_conv(a, b)[0, :, 0].tolist() == pytest.approx(expect, rel=1e-12)
    assert fc.direct_scalar_conv(a, b)[0, :, 0].tolist() == pytest.approx(expect, rel=1e-12)


def test_circular_definition_on_a_tiny_example():
    # n = 3, centre c = 1: (a ⊛ b)_i = Σ_j a_j b_((i-j+1) mod 3)
    a = torch.tensor([[1.0, 2.0, 3.0]], dtype=DT).unsqueeze(-1)
    b = torch.tensor([[10.0, 100.0, 1000.0]], dtype=DT).unsqueeze(-1)
    expect = [1 * 100 + 2 * 10 + 3 * 1000, 1 * 1000 + 2 * 100 + 3 * 10, 1 * 10 + 2 * 1000 + 3 * 100]
    assert fc.scalar_conv(a, b, circular=True)[0, :, 0].tolist() == pytest.approx(expect, rel=1e-12)
    assert fc.direct_scalar_conv(a, b, circular=True)[0, :, 0].tolist() == pytest.approx(expect, rel=1e-12)


@pytest.mark.parametrize(
    "circular,seen", [(False, [0, 1, 2]), (True, [0, 1, 2, 3, 4])], ids=["linear", "circular"]
)
def test_token_0_of_5_sees_the_whole_sequence_only_when_circular(circular, seen):
    """Gradient check: which inputs token 0's output depends on (both arguments, batched and alone)."""
    gen = torch.Generator().manual_seed(12)
    for lengths, length in ((None, 5), (torch.tensor([5, 3]), 7)):
        b_ = 1 if lengths is None else 2
        q = _rand(b_, length, 2, True, gen, lengths).requires_grad_(True)
        k = _rand(b_, length, 2, True, gen, lengths).requires_grad_(True)
        fc.cross_conv(q, k, lengths, circular=circular)[0, 0].sum().backward()
        for g in (q.grad, k.grad):
            w = g[0].abs().sum((-1, -2))
            hit = (w > 1e-10 * w.max()).nonzero().flatten().tolist()  # FFT rounding elsewhere
            assert hit == seen
            if b_ == 2:
                assert float(g[1].abs().max()) <= 1e-12 * float(w.max())  # never another system


def test_cross_conv_is_sum_of_cross_products_and_antisymmetric_in_lag_form():
    gen = torch.Generator().manual_seed(8)
    a, b = _rand(1, 11, 2, True, gen), _rand(1, 11, 2, True, gen)
    out = fc.cross_conv(a, b)
    # brute force with explicit loops over i, j
    n, c = 11, 11 // 2
    ref = torch.zeros_like(out)
    for i in range(n):
        for j in range(n):
            m = i - j + c
            if 0 <= m < n:
                ref[0, i] += torch.linalg.cross(a[0, j], b[0, m], dim=-1)
    assert _rel(out, ref) <= 1e-10


@pytest.mark.parametrize("n", [1, 6, 31, 64])
@pytest.mark.parametrize("k", [0, 2, 40])
def test_long_conv_equals_direct(n, k):
    gen = torch.Generator().manual_seed(n + k)
    lengths = torch.tensor([n, max(n - 5, 1)])
    a = _rand(2, n, 3, False, gen, lengths)
    h = torch.randn(2 * k + 1, 3, dtype=DT, generator=gen)
    assert _rel(fc.long_conv(a, h, lengths), fc.direct_long_conv(a, h, lengths)) <= 1e-10


def test_fast_fft_size():
    for n in [1, 2, 7, 11, 97, 1000, 4097, 123457]:
        m = fc.fast_fft_size(n)
        assert m >= n
        r = m
        for p in (2, 3, 5):
            while r % p == 0:
                r //= p
        assert r == 1
        assert all(not _is_fast(k) for k in range(n, m))


def _is_fast(k):
    for p in (2, 3, 5):
        while k % p == 0:
            k //= p
    return k == 1


def test_float32_and_autocast_keep_float32():
    gen = torch.Generator().manual_seed(9)
    a, b = _rand(1, 50, 4, True, gen), _rand(1, 50, 4, True, gen)
    ref = fc.direct_cross_conv(a, b)
    out32 = fc.cross_conv(a.float(), b.float())
    assert out32.dtype == torch.float32
    assert _rel(out32.double(), ref) <= 1e-5
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out_ac = fc.cross_conv(a.float(), b.float())
    assert out_ac.dtype == torch.float32
    assert _rel(out_ac.double(), ref) <= 1e-5


def test_double_backward():
    gen = torch.Generator().manual_seed(10)
    a = _rand(1, 9, 2, True, gen).requires_grad_(True)
    b = _rand(1, 9, 2, True, gen).requires_grad_(True)
    for circ in (False, True):
        assert torch.autograd.gradcheck(lambda x, y, c=circ: fc.cross_conv(x, y, circular=c), (a, b))
        assert torch.autograd.gradgradcheck(lambda x, y, c=circ: fc.dot_conv(x, y, circular=c), (a, b))


def test_sequences_round_trip_and_layout():
    gen = torch.Generator().manual_seed(11)
    ptr = torch.tensor([0, 4, 5, 12])
    order = torch.cat([torch.randperm(n, generator=gen) + int(ptr[k]) for k, n in enumerate([4, 1, 7])])
    x = torch.randn(12, 2, 3, dtype=DT, generator=gen)
    seq, mask = fc.to_sequences(x, order, ptr)
    assert seq.shape == (3, 7, 2, 3) and mask.sum().item() == 12
    assert torch.equal(seq[2, 3], x[order[5 + 3]])
    assert float(seq[1, 1:].abs().max()) == 0.0
    assert torch.equal(fc.from_sequences(seq, order, ptr), x)
    one, m1 = fc.to_sequences(x[:4], order[:4], ptr[:2])
    assert torch.equal(fc.from_sequences(one, order[:4], ptr[:2]), x[:4]) and bool(m1.all())


def test_bad_shapes_raise():
    a = torch.zeros(1, 5, 2, 3)
    with pytest.raises(ValueError, match="share"):
        fc.cross_conv(a, torch.zeros(1, 4, 2, 3))
    with pytest.raises(ValueError, match="last dim of 3"):
        fc.cross_conv(torch.zeros(1, 5, 2, 2), torch.zeros(1, 5, 2, 2))
    with pytest.raises(ValueError, match="lengths"):
        fc.scalar_conv(torch.zeros(2, 5, 1), torch.zeros(2, 5, 1), torch.tensor([6, 1]))


@pytest.mark.parametrize("lengths", [[16], [13], [23, 1, 10, 17]])
@pytest.mark.parametrize("circular", [False, True], ids=["linear", "circular"])
def test_fused_geometric_convs_equal_direct(lengths, circular):
    gen = torch.Generator().manual_seed(sum(lengths))
    lengths = torch.tensor(lengths)
    b, length, f, c = len(lengths), int(lengths.max()), 5, 3
    q_s, k_s = _rand(b, length, f, False, gen, lengths), _rand(b, length, f, False, gen, lengths)
    q_m = _rand(b, length, c, False, gen, lengths)
    q_v, k_v = _rand(b, length, c, True, gen, lengths), _rand(b, length, c, True, gen, lengths)
    kw = {"circular": circular}
    z_s, cross, z_m, z_d = fc.geometric_long_convs(q_s, k_s, q_m, q_v, k_v, lengths, **kw)
    assert _rel(z_s, fc.direct_scalar_conv(q_s, k_s, lengths, **kw)) <= 1e-10
    assert _rel(cross, fc.direct_cross_conv(q_v, k_v, lengths, **kw)) <= 1e-10
    assert _rel(z_m, fc.direct_scalar_vector_conv(q_m, k_v, lengths, **kw)) <= 1e-10
    assert _rel(z_d, fc.direct_dot_conv(q_v, k_v, lengths, **kw)) <= 1e-10
    with pytest.raises(ValueError, match="geometric_long_convs"):
        fc.geometric_long_convs(q_s, k_s, q_s, q_v, k_v, lengths)
