"""GlobalBlock: fast == reference oracle, O(3) equivariance (reflections too), batching, scale, gradients."""

from __future__ import annotations

import pytest
import torch

from hyenamd.surrogate.global_block import GlobalBlock
from hyenamd.surrogate.reference_global import reference_global_block

DT = torch.float64


def _orthogonal(gen, det):
    q = torch.linalg.qr(torch.randn(3, 3, dtype=DT, generator=gen))[0]
    return q if torch.sign(torch.det(q)) == det else -q


def _inputs(sizes, f, c, gen, dtype=DT):
    ptr = torch.tensor([0, *torch.tensor(sizes).cumsum(0).tolist()])
    order = torch.cat([torch.randperm(n, generator=gen) + int(ptr[k]) for k, n in enumerate(sizes)])
    n = int(ptr[-1])
    s = torch.randn(n, f, dtype=dtype, generator=gen)
    v = torch.randn(n, c, 3, dtype=dtype, generator=gen)
    return s, v, order, ptr


CONVS = ["linear", "circular"]


def _block(f=8, c=4, seed=0, dtype=DT, **kw):
    torch.manual_seed(seed)
    blk = GlobalBlock(f, c, **kw).to(dtype)
    with torch.no_grad():  # break the init symmetry of the MLP/gate biases a little
        for p in blk.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return blk


def _rel(a, b):
    return float((a - b).detach().abs().max() / b.detach().abs().max())


@pytest.fixture(params=["fft", "dft"])
def conv_path(request, monkeypatch):
    """Both fast paths of a single small system: the FFT kernels and the DFT matrices."""
    from hyenamd.surrogate import dft_conv

    monkeypatch.setattr(dft_conv, "MAX_TOKENS", 0 if request.param == "fft" else 1 << 20)
    return request.param


@pytest.mark.parametrize("conv", CONVS)
@pytest.mark.parametrize("sizes", [[1], [2], [17], [31, 8, 1, 12]])
def test_fast_equals_reference(sizes, conv, conv_path):
    gen = torch.Generator().manual_seed(len(sizes))
    blk = _block(conv=conv)
    s, v, order, ptr = _inputs(sizes, 8, 4, gen)
    so, vo = blk(s, v, order, ptr)
    sr, vr = reference_global_block(blk, s, v, order, ptr)
    assert _rel(so, sr) <= 1e-10 and _rel(vo, vr) <= 1e-10


@pytest.mark.parametrize("conv", CONVS)
@pytest.mark.parametrize("sizes", [[131, 70], [131]])
def test_fast_equals_reference_with_truncated_filter(conv, sizes, conv_path):
    # w_cap small enough that the filter is cut (K < n/2) inside the sequence
    gen = torch.Generator().manual_seed(3)
    blk = _block(w_min=1.0, w_init=1.5, w_cap=2.0, conv=conv)
    assert blk.filter.k_max == 60
    s, v, order, ptr = _inputs(sizes, 8, 4, gen)
    so, vo = blk(s, v, order, ptr)
    sr, vr = reference_global_block(blk, s, v, order, ptr)
    assert _rel(so, sr) <= 1e-10 and _rel(vo, vr) <= 1e-10


@pytest.mark.parametrize("conv", CONVS)
@pytest.mark.parametrize("det", [1.0, -1.0], ids=["rotation", "reflection"])
def test_o3_equivariance_float64(det, conv):
    gen = torch.Generator().manual_seed(4)
    blk = _block(conv=conv)
    s, v, order, ptr = _inputs([20, 13], 8, 4, gen)
    r = _orthogonal(gen, det)
    so, vo = blk(s, v, order, ptr)
    s2, v2 = blk(s, v @ r.T, order, ptr)
    assert _rel(s2, so) <= 1e-10
    assert _rel(v2, vo @ r.T) <= 1e-10


def test_inversion_flips_vectors_and_keeps_scalars():
    gen = torch.Generator().manual_seed(5)
    blk = _block()
    s, v, order, ptr = _inputs([25], 8, 4, gen)
    so, vo = blk(s, v, order, ptr)
    s2, v2 = blk(s, -v, order, ptr)
    assert _rel(s2, so) <= 1e-12 and _rel(v2, -vo) <= 1e-12
    # and the block is not trivially even in v: scalars do depend on vectors
    s3, _ = blk(s, 1.7 * v.roll(1, 0), order, ptr)
    assert _rel(s3, so) > 1e-6


@pytest.mark.parametrize("det", [1.0, -1.0], ids=["rotation", "reflection"])
def test_o3_equivariance_float32(det):
    gen = torch.Generator().manual_seed(6)
    blk = _block(dtype=torch.float32)
    s, v, order, ptr = _inputs([64, 40], 8, 4, gen, dtype=torch.float32)
    r = _orthogonal(gen, det).float()
    so, vo = blk(s, v, order, ptr)
    s2, v2 = blk(s, v @ r.T, order, ptr)
    assert _rel(s2, so) <= 1e-4 and _rel(v2, vo @ r.T) <= 1e-4


@pytest.mark.parametrize("conv", CONVS)
def test_batch_equals_separate_calls(conv):
    gen = torch.Generator().manual_seed(7)
    blk = _block(conv=conv)
    sizes = [19, 7, 33]
    s, v, order, ptr = _inputs(sizes, 8, 4, gen)
    so, vo = blk(s, v, order, ptr)
    for k, n in enumerate(sizes):
        a, b = int(ptr[k]), int(ptr[k + 1])
        s1, v1 = blk(s[a:b], v[a:b], order[a:b] - a, torch.tensor([0, n]))
        assert float((s1 - so[a:b]).detach().abs().max()) <= 1e-12
        assert float((v1 - vo[a:b]).detach().abs().max()) <= 1e-12


@pytest.mark.parametrize("conv", CONVS)
def test_changing_one_system_never_changes_another(conv):
    gen = torch.Generator().manual_seed(8)
    blk = _block(conv=conv)
    s, v, order, ptr = _inputs([15, 22], 8, 4, gen)
    so, vo = blk(s, v, order, ptr)
    s2, v2 = s.clone(), v.clone()
    s2[15:] += 3.0
    v2[15:] *= -2.0
    so2, vo2 = blk(s2, v2, order, ptr)
    assert torch.equal(so2[:15], so[:15]) and torch.equal(vo2[:15], vo[:15])


def test_order_matters_and_permutation_consistency():
    # relabelling atoms together with the order gives the relabelled output (same sequence)
    gen = torch.Generator().manual_seed(9)
    blk = _block()
    s, v, order, ptr = _inputs([30], 8, 4, gen)
    perm = torch.randperm(30, generator=gen)
    inv = torch.argsort(perm)
    so, vo = blk(s, v, order, ptr)
    sp, vp = blk(s[perm], v[perm], inv[order], ptr)
    assert _rel(sp, so[perm]) <= 1e-12 and _rel(vp, vo[perm]) <= 1e-12


def _branch_rms(blk, s, v, order, ptr):
    """Output RMS of the whole block and of its global (convolution) update alone."""
    so, vo = blk(s, v, order, ptr)
    return so.pow(2).mean().sqrt().item(), vo.pow(2).mean().sqrt().item()


@pytest.mark.parametrize("n", [10, 1_000, 100_000])
def test_activation_scale_at_init(n):
    torch.manual_seed(n)
    f, c = (16, 8) if n < 100_000 else (4, 2)
    blk = GlobalBlock(f, c)  # float32, plain initialisation
    s = torch.randn(n, f)
    v = torch.randn(n, c, 3)
    order = torch.randperm(n)
    ptr = torch.tensor([0, n])
    with torch.no_grad():
        so, vo = blk(s, v, order, ptr)
    for x_in, x_out in ((s, so), (v, vo)):
        ratio = x_out.pow(2).mean().sqrt() / x_in.pow(2).mean().sqrt()
        assert 0.1 <= float(ratio) <= 10.0, (n, float(ratio))
    assert torch.isfinite(so).all() and torch.isfinite(vo).all()


@pytest.mark.parametrize("conv", CONVS)
@pytest.mark.parametrize("sizes", [[4, 3], [5]])
def test_gradients_and_double_backward(conv, sizes, conv_path):
    gen = torch.Generator().manual_seed(10)
    blk = _block(f=3, c=1, conv=conv)
    s, v, order, ptr = _inputs(sizes, 3, 1, gen)
    v.requires_grad_(True)
    s.requires_grad_(True)

    def f(s_, v_):
        so, vo = blk(s_, v_, order, ptr)
        return so.pow(2).sum() + (vo * vo).sum()

    assert torch.autograd.gradcheck(f, (s, v))
    assert torch.autograd.gradgradcheck(f, (s, v), fast_mode=True)


def test_bad_shapes_raise():
    blk = GlobalBlock(4, 2)
    with pytest.raises(ValueError, match="F=4"):
        blk(torch.zeros(5, 3), torch.zeros(5, 2, 3), torch.arange(5), torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="ptr"):
        blk(torch.zeros(5, 4), torch.zeros(5, 2, 3), torch.arange(5), torch.tensor([0, 4]))
    with pytest.raises(ValueError):
        GlobalBlock(0, 2)
    with pytest.raises(ValueError, match="conv must be"):
        GlobalBlock(4, 2, conv="causal")


def test_fresh_block_starts_as_its_mlp_and_circular_mode_couples_the_ends():
    """Zero-init: a fresh block's convolution branch adds exactly 0; perturbed, token 0 of 5
    depends on token 4 only in circular mode (gradient check through the whole block)."""
    gen = torch.Generator().manual_seed(12)
    s, v, _, ptr = _inputs([5], 8, 4, gen)
    order = torch.arange(5)
    fresh = GlobalBlock(8, 4).to(DT)
    so, vo = fresh(s, v, order, ptr)
    sm, vm = fresh.mlp(s, v)
    assert torch.equal(so, sm) and torch.equal(vo, vm)
    for conv, coupled in (("linear", False), ("circular", True)):
        blk = _block(conv=conv)
        v_in = v.clone().requires_grad_(True)
        so, vo = blk(s, v_in, order, ptr)
        (so[0].sum() + vo[0].sum()).backward()
        reach = float(v_in.grad[4].abs().max()) / float(v_in.grad[0].abs().max())
        assert (reach > 1e-6) if coupled else (reach < 1e-12), (conv, reach)


def test_filter_cache_is_used_without_gradients_and_invalidated_by_updates():
    from hyenamd.surrogate.global_block import _filter_values

    blk = _block()
    with torch.no_grad():
        a = _filter_values(blk, -5, 5, torch.device("cpu"), DT)
        assert _filter_values(blk, -5, 5, torch.device("cpu"), DT) is a  # cached
        blk.filter.weights[0].add_(0.1)  # an in-place update (an optimiser step) bumps the version
        b = _filter_values(blk, -5, 5, torch.device("cpu"), DT)
    assert b is not a and not torch.equal(a, b)
    fresh = blk.filter(torch.arange(-5, 6)).detach()
    assert torch.equal(b, fresh)
    c = _filter_values(blk, -5, 5, torch.device("cpu"), DT)  # gradients on: never cached
    assert c.requires_grad and c is not b


def test_token_filter_cache_follows_size_dtype_and_weights():
    """The DFT path's on-token filter is cached per (size, dtype, weights version), never with gradients."""
    from hyenamd.surrogate.filters import filter_on_tokens
    from hyenamd.surrogate.global_block import _filter_values, _token_filter

    blk = _block()
    cpu = torch.device("cpu")

    def fresh(n):
        lo, hi = blk.filter.lag_range(n)
        vals = blk.filter(torch.arange(lo, hi + 1)).detach()
        return filter_on_tokens(vals, lo, torch.tensor([n]), n)[0]

    with torch.no_grad():
        a = _token_filter(blk, 9, cpu, DT)
        assert _token_filter(blk, 9, cpu, DT) is a
        assert torch.equal(torch.cat([a[0], a[1].squeeze(-1)], 1), fresh(9))
        b = _token_filter(blk, 10, cpu, DT)  # another size: its own entry
        assert b[0].shape == (10, 8) and _token_filter(blk, 9, cpu, DT) is a
        assert _token_filter(blk, 9, cpu, torch.float32)[0].dtype == torch.float32
        _filter_values(blk, -2, 2, cpu, DT)
        blk.filter.log_rate.add_(0.1)  # a weight update invalidates every entry
        c = _token_filter(blk, 9, cpu, DT)
    assert c is not a and torch.equal(torch.cat([c[0], c[1].squeeze(-1)], 1), fresh(9))
    d = _token_filter(blk, 9, cpu, DT)  # gradients on: computed, never cached
    assert d[0].requires_grad and d is not c
