"""The local block: O(3) equivariance, permutation equivariance, cutoff smoothness (float64)."""

from __future__ import annotations

import pytest
import torch

from hyenamd.geometry import Neighbors, brute_force_neighbor_list
from hyenamd.surrogate.local_block import Edges, LocalBlock
from hyenamd.surrogate.radial import RadialEmbedding
from hyenamd.testing import random_orthogonal

DT = torch.float64
F, C, K, RC = 6, 3, 5, 3.0


def setup(seed=0, n=9):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, generator=g, dtype=DT) * 4.0
    s = torch.randn(n, F, generator=g, dtype=DT)
    v = torch.randn(n, C, 3, generator=g, dtype=DT)
    torch.manual_seed(seed)
    block = LocalBlock(F, C, RadialEmbedding(RC, K), avg_neighbors=3.0).to(DT)
    return x, s, v, block


def run(block, x, s, v, nb: Neighbors | None = None):
    nb = nb or brute_force_neighbor_list(x, None, None, RC)
    return block(s, v, Edges(nb.i, nb.j, x[nb.j] - x[nb.i]))


@pytest.mark.parametrize("reflection", [False, True])
def test_local_block_is_o3_equivariant(reflection):
    x, s, v, block = setup()
    s1, v1 = run(block, x, s, v)
    assert len(brute_force_neighbor_list(x, None, None, RC)) > 20  # a connected cloud
    rot = random_orthogonal(3, reflection=reflection)
    s2, v2 = run(block, x @ rot.T + torch.tensor([1.0, -2.0, 0.5], dtype=DT), s, v @ rot.T)
    assert (s2 - s1).abs().max() < 1e-12
    assert (v2 - v1 @ rot.T).abs().max() < 1e-12
    assert v1.abs().max() > 1e-3 and (s1 - s).abs().max() > 1e-3  # the block does something


def test_local_block_is_permutation_equivariant():
    x, s, v, block = setup(1)
    s1, v1 = run(block, x, s, v)
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(5))
    s2, v2 = run(block, x[perm], s[perm], v[perm])
    assert (s2 - s1[perm]).abs().max() < 1e-12 and (v2 - v1[perm]).abs().max() < 1e-12


def test_pairs_beyond_the_cutoff_contribute_exactly_nothing():
    x, s, v, block = setup(2)
    nb = brute_force_neighbor_list(x, None, None, RC)
    wide = brute_force_neighbor_list(x, None, None, RC + 2.0)  # extra pairs with r >= RC
    assert len(wide) > len(nb)
    s1, v1 = run(block, x, s, v, nb)
    s2, v2 = run(block, x, s, v, wide)
    assert (s2 - s1).abs().max() < 1e-14 and (v2 - v1).abs().max() < 1e-14


def test_dimer_output_is_c2_smooth_through_the_cutoff():
    """An invariant of a two-atom system approaches its far value at least like (rc - r)³."""
    _, _, _, block = setup(3, 2)
    g = torch.Generator().manual_seed(7)
    s = torch.randn(2, F, generator=g, dtype=DT)
    v = torch.zeros(2, C, 3, dtype=DT)

    def value(r: float) -> float:
        x = torch.tensor([[0.0, 0, 0], [r, 0, 0]], dtype=DT)
        nb = Neighbors(torch.tensor([0, 1]), torch.tensor([1, 0]), torch.zeros(2, 3, dtype=torch.int64))
        with torch.no_grad():
            s1, v1 = run(block, x, s, v, nb)
        return float(s1.sum() + v1.pow(2).sum())

    far = value(RC + 0.5)
    assert value(RC + 1e-9) == far
    d1, d2 = value(RC - 1e-2) - far, value(RC - 1e-3) - far
    assert abs(d1) > 1e-12
    assert abs(d1 / d2) > 500  # at least cubic (C²): 10× closer → ≥ 1000× smaller


def test_chunked_checkpointed_messages_equal_one_chunk_including_double_backward():
    """pair_chunk only bounds memory: values, forces and force-loss gradients are unchanged."""
    x, s, v, block = setup(4, 12)
    nb = brute_force_neighbor_list(x, None, None, RC)
    assert len(nb) > 40

    def force_loss(chunk, recompute=True):
        block.pair_chunk = chunk
        xg = x.clone().requires_grad_(True)
        s1, v1 = block(s, v, Edges(nb.i, nb.j, xg[nb.j] - xg[nb.i], recompute_chunks=recompute))
        energy = (s1.sum(1) + v1.pow(2).sum((1, 2))).sum()
        (forces,) = torch.autograd.grad(-energy, xg, create_graph=True)
        grads = torch.autograd.grad(forces.pow(2).sum(), list(block.parameters()))
        return energy.detach(), forces.detach(), grads

    e1, f1, g1 = force_loss(10**9)
    e2, f2, g2 = force_loss(7)  # many chunks, under activation checkpointing
    assert abs(float(e1 - e2)) < 1e-12 and (f1 - f2).abs().max() < 1e-12
    assert all((a - b).abs().max() < 1e-11 for a, b in zip(g1, g2))
    e3, f3, g3 = force_loss(7, recompute=False)  # many chunks, activations kept (fast regime)
    assert abs(float(e1 - e3)) < 1e-12 and (f1 - f3).abs().max() < 1e-12
    assert all((a - b).abs().max() < 1e-11 for a, b in zip(g1, g3))
    with torch.no_grad():  # chunked without checkpointing
        block.pair_chunk = 5
        s3, _ = block(s, v, Edges(nb.i, nb.j, x[nb.j] - x[nb.i]))
    block.pair_chunk = 10**9
    s4, _ = block(s, v, Edges(nb.i, nb.j, x[nb.j] - x[nb.i]))
    assert (s3 - s4).abs().max() < 1e-12


def test_local_block_rejects_bad_settings():
    with pytest.raises(ValueError, match="avg_neighbors"):
        LocalBlock(4, 2, RadialEmbedding(3.0, 3), avg_neighbors=0.0)
    with pytest.raises(ValueError, match="pair_chunk"):
        LocalBlock(4, 2, RadialEmbedding(3.0, 3), pair_chunk=0)


def test_zero_vectors_in_skips_an_exactly_zero_term_and_vmaps():
    """The static zero-input flag changes nothing when v = 0; the message step runs under vmap."""
    x, s, _, block = setup(3)
    zero = torch.zeros(x.shape[0], C, 3, dtype=DT)
    s1, v1 = run(block, x, s, zero)
    block.zero_vectors_in = True
    s2, v2 = run(block, x, s, zero)
    assert (s2 - s1).abs().max() < 1e-14 and (v2 - v1).abs().max() < 1e-14 and v1.abs().max() > 1e-3
    # K stacked blocks under torch.func.vmap (one shared pair list) = the blocks one by one
    blocks = [setup(seed)[3] for seed in (4, 5, 6)]
    _, _, v, _ = setup(3)
    params, buffers = torch.func.stack_module_state(blocks)
    nb = brute_force_neighbor_list(x, None, None, RC)
    edges = Edges(nb.i, nb.j, x[nb.j] - x[nb.i])
    call = lambda p, b: torch.func.functional_call(blocks[0], (p, b), (s, v, edges))  # noqa: E731
    sk, vk = torch.func.vmap(call)(params, buffers)
    for k, b in enumerate(blocks):
        s_ref, v_ref = b(s, v, edges)
        assert (sk[k] - s_ref).abs().max() < 1e-13 and (vk[k] - v_ref).abs().max() < 1e-13


def test_precomputed_edge_geometry_equals_per_block_geometry_including_double_backward():
    """``Edges.with_geometry`` (r̂ and the enveloped basis once per forward) == each block's own."""
    x, s, v, block = setup(seed=5)
    nb = brute_force_neighbor_list(x, None, None, RC)
    outs = []
    for shared in (False, True):
        xg = x.clone().requires_grad_(True)
        edges = Edges(nb.i, nb.j, xg[nb.j] - xg[nb.i])
        if shared:
            edges = edges.with_geometry(block.radial)
            assert edges.unit.shape == (len(nb), 3) and edges.rbf.shape == (len(nb), K)
        s1, v1 = block(s, v, edges)
        s2, v2 = block(s1, v1, edges)  # two blocks share the edges, as in the model
        e = s2.pow(2).sum() + v2.pow(2).sum()
        (g,) = torch.autograd.grad(e, xg, create_graph=True)
        (gg,) = torch.autograd.grad(g.pow(2).sum(), xg)
        outs.append((s2, v2, g, gg))
    for a, b in zip(*outs):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("with_v", [True, False])
def test_vector_message_function_equals_broadcast_ops_to_second_order(with_v):
    """The custom backward of ``Δvs ⊗ r̂ + Δvv ⊙ v_j``: values, gradients and double backward
    equal autograd's through the plain broadcast products (float64), and pass gradcheck."""
    from hyenamd.surrogate.local_block import _vector_message, vector_message

    torch.manual_seed(0)
    p, c = 9, 4
    args = [
        torch.randn(p, c, dtype=torch.float64, requires_grad=True),
        torch.randn(p, 3, dtype=torch.float64, requires_grad=True),
        torch.randn(p, c, dtype=torch.float64, requires_grad=True),
        torch.randn(p, c, 3, dtype=torch.float64, requires_grad=True) if with_v else None,
    ]
    live = [a for a in args if a is not None]
    w = torch.randn(p, c, 3, dtype=torch.float64)
    outs = []
    for fn in (vector_message, _vector_message):
        out = fn(*args)
        grads = torch.autograd.grad(
            (out * w).sum(), live, create_graph=True, allow_unused=True, materialize_grads=True
        )
        # a second-order quantity: the gradient of a function of the first gradients
        second = torch.autograd.grad(
            sum((g * g).sum() for g in grads), live, allow_unused=True, materialize_grads=True
        )
        outs.append((out.detach(), [g.detach() for g in grads], second))
    (o1, g1, s1), (o2, g2, s2) = outs
    torch.testing.assert_close(o1, o2, rtol=0, atol=1e-14)
    for a, b in zip(g1 + list(s1), g2 + list(s2)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-13)
    assert torch.autograd.gradcheck(vector_message, args)
    assert torch.autograd.gradgradcheck(vector_message, args)
