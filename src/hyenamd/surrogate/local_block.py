"""The local block: PaiNN-like equivariant message passing within the cutoff.

Symmetry types — in: scalars ``s`` ``[N, F]`` (parity +1), vectors ``v`` ``[N, C, 3]`` (true
vectors, parity -1) and pair geometry; out: the same types. Only products "scalar × vector"
and "vector · vector" appear, so the block is O(3)-equivariant (reflections included) and no
pseudovector is ever formed.

Pair geometry comes from :func:`hyenamd.geometry.edge_vectors`: ``r_ij = x_j - x_i + S_ij @ cell``
(minimum image and triclinic cells through the lattice shifts ``S`` of the neighbour list),
``r = |r_ij|``, ``r̂ = r_ij / r``; a radial basis ``b(r)`` ``[P, K]`` and envelope ``u(r)`` (see
:mod:`hyenamd.surrogate.radial`). With ``ν`` the neighbour normalisation (``avg_neighbors``):

Message (sum over the pairs ``(i, j)`` of the full list)::

    W_ij = W (b(r_ij) u(r_ij))                             [P, F + 2C]   (filter, no bias: 0 at r_c)
    φ_j  = MLP_φ(s_j)                                      [P, F + 2C]
    (Δs, Δvv, Δvs)_ij = φ_j ⊙ W_ij                         split F | C | C
    s_i += (1/ν) Σ_j Δs_ij
    v_i += (1/ν) Σ_j (Δvv_ij ⊙ v_j + Δvs_ij ⊗ r̂_ij)

Update (per atom)::

    U v, V v                                               [N, C, 3]   (channel mixing, no bias)
    (a_ss, a_sv, a_vv) = MLP_a([s, |V v|_ε])               split F | C | C  (last layer starts at 0)
    s += a_ss + L(a_sv ⊙ <U v, V v>)                        L: C -> F, no bias
    v += a_vv ⊙ U v

Deviation from PaiNN: ``F`` and ``C`` may differ (PaiNN ties them), hence the linear map ``L``;
the norm is the smooth ``|x|_ε = sqrt(|x|² + ε²) - ε`` with a learned per-channel ε > 0
initialised at the features' own scale (``NORM_EPS_INIT`` = 1e-3; C∞ at ``v = 0``, so forces
have no kink where a vector feature vanishes, yet sensitive to the small vectors real systems
have; an absolute ε = 1 left them at slope 0.002); the update MLP's last layer starts at zero
(the residual branch starts as the identity); the filter
has no bias and acts on the enveloped basis ``b·u``, so it is zero beyond the cutoff by construction.

Memory. Per-pair tensors are the bulk of the cost (``P ≈ 35 N`` in a liquid at a 4.5 Å cutoff).
The pairs are processed in chunks of ``pair_chunk`` (default 2¹⁶: a chunk's per-pair tensors,
≤ 12.6 MB at F + 2C = 48, stay below glibc's 32 MiB mmap threshold, so they reuse heap memory
instead of being faulted in afresh: at 2¹⁸ that cost 7–12 µs/atom of kernel time at 10⁵ atoms);
when gradients are recorded, there is more than one chunk and ``Edges.recompute_chunks`` is set
(the lean memory regime), each chunk runs under activation checkpointing (recomputed in the
backward pass, double backward included), so only the pair vectors and indices stay in memory
between the forward and backward passes. Otherwise (the fast and chunked regimes, small lists, no gradients)
each chunk's messages and their scatter are one autograd Function
(:mod:`hyenamd.surrogate.fused_messages`) that keeps only its inputs (``φ``, ``v``, ``r̂``,
``b u``, ``W``, indices) and recomputes the per-pair products in its backward pass: the plain
ops' ≈ 1.5 kB per pair of kept activations are not kept (same values; torch.compile and
torch.func transforms run the plain ops). Results do not depend on the chunk size beyond
floating-point summation order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from hyenamd.surrogate.equivariant import (
    ScalarMLP,
    SmoothNorm,
    VectorLinear,
    vector_linear_pair,
    zero_last_layer_,
)
from hyenamd.surrogate.fused_messages import contract_xyz as _contract_xyz
from hyenamd.surrogate.fused_messages import fused_message_add

__all__ = ["DEFAULT_PAIR_CHUNK", "Edges", "LocalBlock", "local_message", "local_update", "vector_message"]

DEFAULT_PAIR_CHUNK = 1 << 16


@dataclass(frozen=True)
class Edges:
    """Pairs shared by every local block of one forward pass.

    i, j: ``[P]`` int64 (messages flow j -> i); vectors: ``[P, 3]`` Å, ``r_ij = x_j - x_i + S @ cell``
    (differentiable in positions and cell).
    """

    i: Tensor
    j: Tensor
    vectors: Tensor
    #: optional per-pair geometry shared by every local block of a forward pass (see
    #: :meth:`with_geometry`): unit vectors ``r̂`` ``[P, 3]`` and the enveloped radial basis
    #: ``b(r) u(r)`` ``[P, K]``; None: each block computes them from ``vectors``
    unit: Tensor | None = None
    rbf: Tensor | None = None
    #: when gradients are recorded and the pairs span several chunks, recompute each chunk's
    #: messages in the backward pass (activation checkpointing: only one chunk's per-pair
    #: activations alive at a time) instead of the fused messages (which keep only their inputs);
    #: the model sets it in its lean memory regime only (:mod:`hyenamd.surrogate.memory_policy`)
    recompute_chunks: bool = True

    def __len__(self) -> int:
        return int(self.i.shape[0])

    def with_geometry(self, radial: nn.Module, r: Tensor | None = None) -> Edges:
        """These edges with ``r̂`` and ``b(r) u(r)`` computed once (``r`` ``[P]`` Å: the lengths, if known).

        Every local block then reads them instead of recomputing them (same values; the
        gradients of the blocks are summed before they reach the pair vectors). Costs
        ``(3 + K)`` numbers per pair for the whole forward pass: meant for lists that fit in one
        chunk (larger ones recompute per chunk under checkpointing).
        """
        return Edges(
            self.i, self.j, self.vectors, *_pair_geometry(self.vectors, radial, r), self.recompute_chunks
        )


def _pair_geometry(vectors: Tensor, radial: nn.Module, r: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``r̂`` ``[P, 3]`` and the enveloped radial basis ``b(r) u(r)`` ``[P, K]`` of pair vectors ``[P, 3]`` Å."""
    r = torch.linalg.vector_norm(vectors, dim=-1) if r is None else r
    basis, env = radial(r)
    return vectors / r.unsqueeze(-1), basis * env.unsqueeze(-1)


class _AddAt(torch.autograd.Function):
    """``acc[index] += source`` (along ``dim``) in place, saving only ``index`` for the backward pass.

    ``Tensor.index_add_`` saves ``source`` (all per-pair messages of every chunk) for its
    backward; this keeps just the indices. Its backward (``grad[index]``) is built from
    differentiable ops, so double backward (training on forces) works. Under
    ``torch.func.vmap`` (the members of a committee evaluated together) the member axis is
    moved to the front and the same Function runs once on all members (``dim`` + 1).
    """

    @staticmethod
    def forward(acc: Tensor, index: Tensor, source: Tensor, dim: int = 0) -> Tensor:
        return acc.index_add_(dim, index, source)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        acc, index, _source, dim = inputs
        ctx.save_for_backward(index)
        ctx.dim = dim
        ctx.mark_dirty(acc)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (index,) = ctx.saved_tensors
        return grad, None, grad.index_select(ctx.dim, index), None

    @staticmethod
    def vmap(info, in_dims, acc: Tensor, index: Tensor, source: Tensor, dim: int = 0):
        acc_dim, index_dim, source_dim, _ = in_dims
        if index_dim is not None:
            raise NotImplementedError("_AddAt under vmap: the pair indices must be shared by all members")
        if acc_dim is None:  # a shared accumulator receiving per-member sources: one copy each
            acc_b = acc.unsqueeze(0).repeat(info.batch_size, *([1] * acc.ndim))
        else:
            acc_b = acc.movedim(acc_dim, 0)
        if source_dim is None:
            source = source.unsqueeze(0).expand(info.batch_size, *source.shape)
        else:
            source = source.movedim(source_dim, 0)
        return _AddAt.apply(acc_b, index, source, dim + 1), 0


class _AddAtEager(torch.autograd.Function):
    """:class:`_AddAt` outside ``torch.func`` transforms: the same maths, ``forward(ctx, ...)`` style.

    ``Function.apply`` binds the arguments of a ``setup_context``-style Function to its
    signature on every call (``inspect.signature``: ~30 µs, four calls per local block pair);
    functorch needs that style, plain autograd does not.
    """

    @staticmethod
    def forward(ctx, acc: Tensor, index: Tensor, source: Tensor, dim: int) -> Tensor:
        ctx.save_for_backward(index)
        ctx.dim = dim
        ctx.mark_dirty(acc)
        return acc.index_add_(dim, index, source)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (index,) = ctx.saved_tensors
        return grad, None, grad.index_select(ctx.dim, index), None


def add_at(acc: Tensor, index: Tensor, source: Tensor, dim: int = 0) -> Tensor:
    """``acc[index] += source`` along ``dim``, in place, saving only ``index`` (see :class:`_AddAt`).

    Under ``torch.compile`` (:mod:`hyenamd.surrogate.compiled`) the out-of-place
    ``Tensor.index_add``: the compiler decides what its graph keeps, and an in-place custom
    Function does not trace (``mark_dirty``).
    """
    if torch.compiler.is_compiling():
        return acc.index_add(dim, index, source)
    if torch._C._are_functorch_transforms_active():
        return _AddAt.apply(acc, index, source, dim)
    return _AddAtEager.apply(acc, index, source, dim)


def _pair_messages(
    phi: Tensor,
    v: Tensor | None,
    vectors: Tensor,
    j: Tensor,
    weight: Tensor,
    radial: nn.Module,
    n_c: int,
    unit: Tensor | None = None,
    rbf: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Messages of one chunk of pairs, per pair: ``Δs`` ``[p, F]`` and ``Δv`` ``[p, C, 3]``.

    ``phi`` ``[N, F + 2C]``; ``v`` ``[N, C, 3]``, or None when the vectors are known to be zero;
    ``weight`` ``[F + 2C, K]`` (the bias-free filter); ``vectors``, ``j`` the chunk's pairs;
    ``unit`` ``[p, 3]`` and ``rbf`` ``[p, K]``: ``r̂`` and ``b(r) u(r)`` if precomputed
    (:meth:`Edges.with_geometry`), else computed here.
    """
    n_f = phi.shape[1] - 2 * n_c
    if unit is None or rbf is None:
        unit, rbf = _pair_geometry(vectors, radial)
    # index_select, not phi[j]: its backward is an index_add, not an accumulating index_put
    # (gather + backward 25 % cheaper at 65 536 pairs, measured)
    x = phi.index_select(0, j) * (rbf @ weight.T)  # [p, F + 2C]
    ds, dvv, dvs = torch.split(x, [n_f, n_c, n_c], dim=-1)
    return ds, vector_message(dvs, unit, dvv, None if v is None else v.index_select(0, j))


def _vector_message(dvs: Tensor, unit: Tensor, dvv: Tensor, v_j: Tensor | None) -> Tensor:
    """``Δvs ⊗ r̂ + Δvv ⊙ v_j`` ``[p, C, 3]`` in plain broadcast ops (``v_j`` None: the first term)."""
    dv = dvs.unsqueeze(-1) * unit.unsqueeze(1)
    return dv if v_j is None else torch.addcmul(dv, dvv.unsqueeze(-1), v_j)


class _VectorMessage(torch.autograd.Function):
    """:func:`_vector_message` with a backward of strided products and one batched matrix product.

    Autograd's own backward of the broadcast products reduces over the inner axis of 3 (``Δvs``,
    ``Δvv``) and over the channels (``r̂``): at 65 536 pairs, 8 channels, 13.3 ms per chunk
    against 6.8 here (measured). The backward is made of differentiable ops, so double backward
    (training on forces) works.
    """

    @staticmethod
    def forward(ctx, dvs: Tensor, unit: Tensor, dvv: Tensor, v_j: Tensor | None) -> Tensor:
        ctx.save_for_backward(dvs, unit, dvv, v_j)
        return _vector_message(dvs, unit, dvv, v_j)

    @staticmethod
    def backward(ctx, g: Tensor):
        dvs, unit, dvv, v_j = ctx.saved_tensors
        need = ctx.needs_input_grad
        g_dvs = _contract_xyz(g, unit.unsqueeze(1)) if need[0] else None
        g_unit = torch.bmm(dvs.unsqueeze(1), g).squeeze(1) if need[1] else None  # Σ_c Δvs_c g_c
        g_dvv = _contract_xyz(g, v_j) if need[2] and v_j is not None else None
        g_vj = g * dvv.unsqueeze(-1) if v_j is not None and need[3] else None
        return g_dvs, g_unit, g_dvv, g_vj


def vector_message(dvs: Tensor, unit: Tensor, dvv: Tensor, v_j: Tensor | None) -> Tensor:
    """The vector part of the local messages ``[p, C, 3]``: ``Δvs ⊗ r̂ + Δvv ⊙ v_j``.

    dvs, dvv ``[p, C]``; unit ``[p, 3]`` (r̂); v_j ``[p, C, 3]`` or None (zero input vectors).
    Plain broadcast ops under ``torch.compile`` and ``torch.func`` transforms (their tracers
    take those directly), :class:`_VectorMessage` otherwise (same values, a cheaper backward).
    """
    if torch.compiler.is_compiling() or torch._C._are_functorch_transforms_active():
        return _vector_message(dvs, unit, dvv, v_j)
    return _VectorMessage.apply(dvs, unit, dvv, v_j)


def local_message(
    s: Tensor,
    v: Tensor,
    edges: Edges,
    phi_net: nn.Module,
    weight: Tensor,
    radial: nn.Module,
    avg_neighbors: float,
    pair_chunk: int = DEFAULT_PAIR_CHUNK,
    zero_vectors_in: bool = False,
) -> tuple[Tensor, Tensor]:
    """The message step (see module doc): returns the updated ``(s [N, F], v [N, C, 3])``.

    Chunks of pairs are summed in place onto one accumulator per stream (:class:`_AddAt` saves
    only indices), so the extra memory is one chunk's activations at a time.
    ``zero_vectors_in``: the caller's static statement that ``v`` is identically zero (the
    first block of a potential without velocity inputs); the ``Δvv ⊙ v_j`` term is then
    skipped. No branch reads the data, so ``torch.func.vmap`` (committees) and
    ``torch.export`` trace the same ops for every input.
    """
    n_c = v.shape[1]
    phi = phi_net(s)
    v_in = None if zero_vectors_in else v
    n_pairs = len(edges)
    use_ckpt = n_pairs > pair_chunk and torch.is_grad_enabled() and edges.recompute_chunks
    # eager and not recomputed: one Function per chunk that keeps no per-pair activation
    # (fused_messages.py); torch.compile / torch.func transforms trace the plain ops
    use_fused = not (use_ckpt or torch.compiler.is_compiling() or torch._C._are_functorch_transforms_active())
    acc_s, acc_v = torch.zeros_like(s), torch.zeros_like(v)
    for a in range(0, n_pairs, pair_chunk):
        if n_pairs <= pair_chunk:  # one chunk: the tensors themselves (no slice views to dispatch)
            e = edges
        else:
            sl = slice(a, a + pair_chunk)
            e = Edges(
                edges.i[sl],
                edges.j[sl],
                edges.vectors[sl],
                None if edges.unit is None else edges.unit[sl],
                None if edges.rbf is None else edges.rbf[sl],
            )
        if use_fused:
            unit, rbf = (
                (e.unit, e.rbf)
                if e.unit is not None and e.rbf is not None
                else _pair_geometry(e.vectors, radial)
            )
            acc_s, acc_v = fused_message_add(acc_s, acc_v, phi, v_in, rbf, unit, weight, e.i, e.j)
            continue
        args = (phi, v_in, e.vectors, e.j, weight, radial, n_c, e.unit, e.rbf)
        if use_ckpt:
            ds, dv = checkpoint(_pair_messages, *args, use_reentrant=False)
        else:
            ds, dv = _pair_messages(*args)
        acc_s = add_at(acc_s, e.i, ds)
        acc_v = add_at(acc_v, e.i, dv)
    scale = 1.0 / avg_neighbors
    return torch.add(s, acc_s, alpha=scale), torch.add(v, acc_v, alpha=scale)


def local_update(
    s: Tensor,
    v: Tensor,
    u_lin: VectorLinear,
    v_lin: VectorLinear,
    mlp: nn.Module,
    mix: nn.Linear,
    norm: nn.Module,
) -> tuple[Tensor, Tensor]:
    """The update step (see module doc): returns the updated ``(s [N, F], v [N, C, 3])``.

    ``norm``: the smooth vector norm ``[N, C, 3] -> [N, C]`` (a :class:`SmoothNorm`).
    """
    n_f, n_c = s.shape[1], v.shape[1]
    uv, vv = vector_linear_pair(v, u_lin.weight, v_lin.weight)
    a = mlp(torch.cat([s, norm(vv)], dim=-1))
    a_ss, a_sv, a_vv = torch.split(a, [n_f, n_c, n_c], dim=-1)
    s = s + a_ss + mix(a_sv * (uv * vv).sum(-1))
    v = torch.addcmul(v, a_vv.unsqueeze(-1), uv)
    return s, v


class LocalBlock(nn.Module):
    """PaiNN-like message + update. In/out: scalars ``[N, F]``, vectors ``[N, C, 3]``; uses :class:`Edges`.

    ``radial``: the :class:`~hyenamd.surrogate.radial.RadialEmbedding` (basis size K = ``n_rbf``).
    Parameters only; the maths is :func:`local_message` and :func:`local_update`.
    """

    def __init__(
        self,
        n_scalar: int,
        n_vector: int,
        radial: nn.Module,
        *,
        avg_neighbors: float = 10.0,
        pair_chunk: int = DEFAULT_PAIR_CHUNK,
        zero_vectors_in: bool = False,
    ) -> None:
        super().__init__()
        if avg_neighbors <= 0:
            raise ValueError(f"avg_neighbors must be positive, got {avg_neighbors}")
        if pair_chunk < 1:
            raise ValueError(f"pair_chunk must be >= 1, got {pair_chunk}")
        width = n_scalar + 2 * n_vector
        self.n_scalar, self.n_vector, self.avg_neighbors = n_scalar, n_vector, float(avg_neighbors)
        self.pair_chunk = int(pair_chunk)
        #: the block's input vectors are identically zero by construction (first block, no
        #: velocity embedding): the message skips their term (a static fact, not a data check)
        self.zero_vectors_in = bool(zero_vectors_in)
        self.radial = radial
        self.phi = ScalarMLP(n_scalar, n_scalar, width)
        self.filter = nn.Linear(radial.n_rbf, width, bias=False)
        self.u = VectorLinear(n_vector, n_vector)
        self.v = VectorLinear(n_vector, n_vector)
        self.update_mlp = zero_last_layer_(ScalarMLP(n_scalar + n_vector, n_scalar, width))  # starts at 0
        self.vnorm = SmoothNorm(n_vector)
        self.mix = nn.Linear(n_vector, n_scalar, bias=False)
        nn.init.normal_(self.mix.weight, std=1.0 / math.sqrt(n_vector))

    def forward(self, s: Tensor, v: Tensor, edges: Edges) -> tuple[Tensor, Tensor]:
        s, v = local_message(
            s,
            v,
            edges,
            self.phi,
            self.filter.weight,
            self.radial,
            self.avg_neighbors,
            self.pair_chunk,
            self.zero_vectors_in,
        )
        return local_update(s, v, self.u, self.v, self.update_mlp, self.mix, self.vnorm)

    def extra_repr(self) -> str:
        return (
            f"n_scalar={self.n_scalar}, n_vector={self.n_vector}, avg_neighbors={self.avg_neighbors}, "
            f"pair_chunk={self.pair_chunk}" + (", zero_vectors_in=True" if self.zero_vectors_in else "")
        )
