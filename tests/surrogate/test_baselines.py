"""Baselines: equivariant attention (naive == chunked, explicit-cross oracle, O(3)), the tiny
EquivariantTransformer potential, and the non-equivariant Hyena / Transformer blocks."""

from __future__ import annotations

import math

import pytest
import torch

from hyenamd.surrogate.baselines import (
    EquivariantAttentionBlock,
    EquivariantTransformer,
    HyenaBlock,
    TransformerBlock,
    cross_gram_features,
    cross_norm_logits,
)
from hyenamd.surrogate.forces import compute_forces
from hyenamd.system import Batch, System

DT = torch.float64


def _inputs(sizes, f, c, gen, dtype=DT):
    ptr = torch.tensor([0, *torch.tensor(sizes).cumsum(0).tolist()])
    order = torch.cat([torch.randperm(n, generator=gen) + int(ptr[k]) for k, n in enumerate(sizes)])
    n = int(ptr[-1])
    return (
        torch.randn(n, f, dtype=dtype, generator=gen),
        torch.randn(n, c, 3, dtype=dtype, generator=gen),
        order,
        ptr,
    )


def _rel(a, b):
    return float((a - b).detach().abs().max() / b.detach().abs().max())


def _orthogonal(gen, det):
    q = torch.linalg.qr(torch.randn(3, 3, dtype=DT, generator=gen))[0]
    return q if torch.sign(torch.det(q)) == det else -q


def test_gram_logits_equal_explicit_cross_products():
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(2, 9, 4, 3, dtype=DT, generator=gen)
    k = torch.randn(2, 11, 4, 3, dtype=DT, generator=gen)
    a, b = cross_gram_features(q, k)
    got = cross_norm_logits(a, b, 4, eps=0.0)
    cross = torch.linalg.cross(
        q[:, :, None].expand(2, 9, 11, 4, 3), k[:, None].expand(2, 9, 11, 4, 3), dim=-1
    )
    ref = cross.pow(2).sum((-1, -2)).sqrt() / math.sqrt(4)  # materialised C_ij, the paper's way
    assert _rel(got, ref) <= 1e-10


@pytest.mark.parametrize("heads", [1, 2])
def test_naive_equals_chunked(heads):
    gen = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    naive = EquivariantAttentionBlock(8, 4, n_heads=heads, mode="naive").double()
    chunked = EquivariantAttentionBlock(8, 4, n_heads=heads, mode="chunked", chunk_size=7).double()
    chunked.load_state_dict(naive.state_dict())
    s, v, order, ptr = _inputs([23, 5, 16], 8, 4, gen)
    a, b = naive(s, v, order, ptr), chunked(s, v, order, ptr)
    assert _rel(a[0], b[0]) <= 1e-10 and _rel(a[1], b[1]) <= 1e-10


@pytest.mark.parametrize("det", [1.0, -1.0], ids=["rotation", "reflection"])
@pytest.mark.parametrize("mode", ["naive", "chunked"])
def test_equivariant_attention_is_o3_equivariant(det, mode):
    gen = torch.Generator().manual_seed(2)
    torch.manual_seed(2)
    blk = EquivariantAttentionBlock(8, 4, n_heads=2, mode=mode, chunk_size=5).double()
    s, v, order, ptr = _inputs([12, 9], 8, 4, gen)
    r = _orthogonal(gen, det)
    so, vo = blk(s, v, order, ptr)
    s2, v2 = blk(s, v @ r.T, order, ptr)
    assert _rel(s2, so) <= 1e-10 and _rel(v2, vo @ r.T) <= 1e-10


def test_attention_batch_independence_and_permutation_invariance_of_order():
    gen = torch.Generator().manual_seed(3)
    torch.manual_seed(3)
    blk = EquivariantAttentionBlock(4, 2).double()
    sizes = [10, 3, 14]
    s, v, order, ptr = _inputs(sizes, 4, 2, gen)
    so, vo = blk(s, v, order, ptr)
    for k, n in enumerate(sizes):
        a, b = int(ptr[k]), int(ptr[k + 1])
        s1, v1 = blk(s[a:b], v[a:b], torch.arange(n), torch.tensor([0, n]))  # attention ignores the order
        assert float((s1 - so[a:b]).detach().abs().max()) <= 1e-12
        assert float((v1 - vo[a:b]).detach().abs().max()) <= 1e-12


def test_attention_gradients():
    gen = torch.Generator().manual_seed(4)
    torch.manual_seed(4)
    blk = EquivariantAttentionBlock(2, 2, mode="chunked", chunk_size=2).double()
    s, v, order, ptr = _inputs([4, 2], 2, 2, gen)
    v.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v_: blk(s, v_, order, ptr)[1].pow(2).sum(), (v,))


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="mode"):
        EquivariantAttentionBlock(4, 2, mode="flash")
    with pytest.raises(ValueError, match="n_heads"):
        EquivariantAttentionBlock(4, 3, n_heads=2)
    with pytest.raises(ValueError, match="n_heads"):
        TransformerBlock(4, 1, n_heads=3)
    blk = EquivariantAttentionBlock(4, 2)
    with pytest.raises(ValueError, match="F=4"):
        blk(torch.zeros(3, 5), torch.zeros(3, 2, 3), torch.arange(3), torch.tensor([0, 3]))


def _molecules(gen):
    out = []
    for n in (5, 8):
        pos = 3.0 * torch.randn(n, 3, dtype=DT, generator=gen)
        out.append(System(positions=pos, species=torch.randint(1, 9, (n,), generator=gen)))
    return out


def test_equivariant_transformer_energy_invariant_forces_equivariant():
    gen = torch.Generator().manual_seed(5)
    torch.manual_seed(5)
    model = EquivariantTransformer(8, 4, n_blocks=2, mode="chunked", chunk_size=3).double()
    systems = _molecules(gen)
    batch = Batch.from_systems(systems)
    out = compute_forces(model, batch)
    assert out["energy"].shape == (2,) and out["energies"].shape == (13,) and out["forces"].shape == (13, 3)
    r = _orthogonal(gen, -1.0)
    t = torch.tensor([1.5, -2.0, 0.25], dtype=DT)
    moved = Batch.from_systems([s.replace(positions=s.positions @ r.T + t) for s in systems])
    out2 = compute_forces(model, moved)
    assert _rel(out2["energy"], out["energy"]) <= 1e-10
    assert _rel(out2["forces"], out["forces"] @ r.T) <= 1e-10
    # batch == separate
    for k, s in enumerate(systems):
        alone = model(Batch.from_systems([s]))["energy"]
        assert float((alone - out["energy"][k]).detach().abs().max()) <= 1e-12


@pytest.mark.parametrize("cls", [HyenaBlock, TransformerBlock])
def test_non_equivariant_blocks_shapes_grads_and_batch_independence(cls):
    gen = torch.Generator().manual_seed(6)
    torch.manual_seed(6)
    blk = cls(6, 2).double()
    sizes = [13, 4, 9]
    s, v, order, ptr = _inputs(sizes, 6, 2, gen)
    s.requires_grad_(True)
    so, vo = blk(s, v, order, ptr)
    assert so.shape == s.shape and vo.shape == v.shape
    (so.sum() + vo.pow(2).sum()).backward()
    assert s.grad is not None and torch.isfinite(s.grad).all() and float(s.grad.abs().sum()) > 0
    assert all(p.grad is not None for p in blk.parameters())
    for k, n in enumerate(sizes):
        a, b = int(ptr[k]), int(ptr[k + 1])
        s1, v1 = blk(s[a:b], v[a:b], order[a:b] - a, torch.tensor([0, n]))
        assert float((s1 - so[a:b]).detach().abs().max()) <= 1e-12
        assert float((v1 - vo[a:b]).detach().abs().max()) <= 1e-12


def test_hyena_block_uses_the_sequence_order():
    gen = torch.Generator().manual_seed(7)
    torch.manual_seed(7)
    blk = HyenaBlock(4, 1).double()
    s, v, order, ptr = _inputs([20], 4, 1, gen)
    a = blk(s, v, order, ptr)[0]
    b = blk(s, v, order.flip(0).roll(3), ptr)[0]
    assert _rel(a, b) > 1e-6


def test_chunked_gradients_with_recomputation_equal_naive():
    gen = torch.Generator().manual_seed(8)
    torch.manual_seed(8)
    naive = EquivariantAttentionBlock(4, 2, mode="naive").double()
    chunked = EquivariantAttentionBlock(4, 2, mode="chunked", chunk_size=4).double()
    chunked.load_state_dict(naive.state_dict())
    s, v, order, ptr = _inputs([11, 6], 4, 2, gen)
    grads = []
    for blk in (naive, chunked):
        v_ = v.clone().requires_grad_(True)
        so, vo = blk(s, v_, order, ptr)
        (so.pow(2).sum() + vo.pow(3).sum()).backward()
        grads.append((v_.grad, blk.proj_v.weight.grad))
    assert _rel(grads[1][0], grads[0][0]) <= 1e-10 and _rel(grads[1][1], grads[0][1]) <= 1e-10
