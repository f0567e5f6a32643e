"""The fused message + scatter Function against the plain ops (its oracle), float64, to second order."""

from __future__ import annotations

import pytest
import torch

from hyenamd.geometry import brute_force_neighbor_list
from hyenamd.surrogate.fused_messages import _FusedMessageAdd, fused_message_add, plain_message_add
from hyenamd.surrogate.local_block import Edges, LocalBlock
from hyenamd.surrogate.radial import RadialEmbedding

DT = torch.float64


def inputs(seed: int, n: int = 7, p: int = 23, f: int = 5, c: int = 3, k: int = 4, with_v: bool = True):
    """Random leaves: acc_s, acc_v, phi, v (or None), rbf, unit, weight; indices i, j (repeats included)."""
    g = torch.Generator().manual_seed(seed)

    def leaf(*shape):
        return torch.randn(*shape, generator=g, dtype=DT).requires_grad_(True)

    unit = torch.nn.functional.normalize(torch.randn(p, 3, generator=g, dtype=DT), dim=-1)
    unit.requires_grad_(True)
    i = torch.randint(0, n, (p,), generator=g)
    j = torch.randint(0, n, (p,), generator=g)
    leaves = [leaf(n, f), leaf(n, c, 3), leaf(n, f + 2 * c), leaf(n, c, 3) if with_v else None]
    leaves += [leaf(p, k), unit, leaf(f + 2 * c, k)]
    return leaves, i, j


def run(fn, leaves, i, j, chunk: int):
    """The accumulators ``acc + Σ messages`` over chunks of ``chunk`` pairs (clones: in place is allowed)."""
    acc_s0, acc_v0, phi, v, rbf, unit, weight = leaves
    acc_s, acc_v = acc_s0.clone(), acc_v0.clone()
    for a in range(0, i.shape[0], chunk):
        sl = slice(a, a + chunk)
        acc_s, acc_v = fn(acc_s, acc_v, phi, v, rbf[sl], unit[sl], weight, i[sl], j[sl])
    return acc_s, acc_v


@pytest.mark.parametrize("with_v", [True, False])
@pytest.mark.parametrize("chunk", [100, 6])
def test_fused_equals_plain_ops_in_values_gradients_and_second_order(with_v, chunk):
    """Values, the gradient of every input and a second-order quantity (the gradient of a
    function of the first gradients, as in training on forces) equal autograd's through the
    plain ops on the whole list, with one chunk and several."""
    leaves, i, j = inputs(0, with_v=with_v)
    live = [t for t in leaves if t is not None]
    g = torch.Generator().manual_seed(9)
    w_s = torch.randn(leaves[0].shape, generator=g, dtype=DT)
    w_v = torch.randn(leaves[1].shape, generator=g, dtype=DT)
    outs = []
    for fn, ch in ((plain_message_add, 10**9), (fused_message_add, chunk)):
        s, v = run(fn, leaves, i, j, ch)
        grads = torch.autograd.grad((s * w_s).sum() + (v * w_v).sum(), live, create_graph=True)
        # the accumulators' gradients are the weights (constants): no second-order term there
        second = torch.autograd.grad(
            sum((gr * gr).sum() for gr in grads), live, allow_unused=True, materialize_grads=True
        )
        outs.append(([s.detach(), v.detach()], [gr.detach() for gr in grads], list(second)))
    (o1, g1, s1), (o2, g2, s2) = outs
    assert all(float(t.abs().max()) > 1e-3 for t in o1 + g1 + s1[2:])  # nothing trivially zero
    for a, b in zip(o1 + g1 + s1, o2 + g2 + s2):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("with_v", [True, False])
def test_fused_passes_gradcheck_and_gradgradcheck(with_v):
    leaves, i, j = inputs(1, n=4, p=9, f=2, c=2, k=3, with_v=with_v)
    live = [t for t in leaves if t is not None]

    def fn(*xs):
        it = iter(xs)
        args = [next(it) if t is not None else None for t in leaves]
        return run(fused_message_add, args, i, j, 4)  # three chunks

    assert torch.autograd.gradcheck(fn, live)
    assert torch.autograd.gradgradcheck(fn, live)


def test_fused_keeps_only_its_inputs_and_writes_in_place():
    """The point of the Function: the saved tensors are the inputs themselves (no per-pair
    activation), and the accumulators are updated in place."""
    leaves, i, j = inputs(2)
    acc_s, acc_v = leaves[0].clone(), leaves[1].clone()
    ptrs = acc_s.data_ptr(), acc_v.data_ptr()
    out_s, out_v = _FusedMessageAdd.apply(acc_s, acc_v, *leaves[2:], i, j)
    assert (out_s.data_ptr(), out_v.data_ptr()) == ptrs
    saved = out_s.grad_fn.saved_tensors
    expect = [*leaves[2:], i, j]
    assert len(saved) == len(expect)
    assert all((a is None and b is None) or a.data_ptr() == b.data_ptr() for a, b in zip(saved, expect))


@pytest.mark.parametrize("zero_vectors_in", [False, True])
def test_local_block_fast_path_equals_the_checkpointed_plain_path_to_second_order(zero_vectors_in):
    """A local block with the fused chunks (activations not recomputed) == the checkpointed plain
    ops, in energy, forces and force-loss parameter gradients, with several chunks."""
    g = torch.Generator().manual_seed(3)
    x = torch.rand(12, 3, generator=g, dtype=DT) * 4.0
    s = torch.randn(12, 6, generator=g, dtype=DT)
    v = torch.zeros(12, 3, 3, dtype=DT) if zero_vectors_in else torch.randn(12, 3, 3, generator=g, dtype=DT)
    torch.manual_seed(3)
    block = LocalBlock(6, 3, RadialEmbedding(3.0, 5), avg_neighbors=3.0, pair_chunk=7).to(DT)
    block.zero_vectors_in = zero_vectors_in
    nb = brute_force_neighbor_list(x, None, None, 3.0)
    assert len(nb) > 40

    def force_loss(recompute: bool):
        xg = x.clone().requires_grad_(True)
        s1, v1 = block(s, v, Edges(nb.i, nb.j, xg[nb.j] - xg[nb.i], recompute_chunks=recompute))
        s2, v2 = block(s1, v1, Edges(nb.i, nb.j, xg[nb.j] - xg[nb.i], recompute_chunks=recompute))
        energy = (s2.sum(1) + v2.pow(2).sum((1, 2))).sum()
        (forces,) = torch.autograd.grad(-energy, xg, create_graph=True)
        grads = torch.autograd.grad(forces.pow(2).sum(), list(block.parameters()), allow_unused=True)
        return energy.detach(), forces.detach(), [gr for gr in grads if gr is not None]

    e1, f1, g1 = force_loss(True)
    e2, f2, g2 = force_loss(False)
    assert float(f1.abs().max()) > 1e-6 and len(g1) == len(g2) > 5
    torch.testing.assert_close(e2, e1, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(f2, f1, rtol=1e-10, atol=1e-12)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)
