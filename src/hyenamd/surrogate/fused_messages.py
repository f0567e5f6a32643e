"""One chunk of the local block's messages and their scatter, as one autograd Function.

The maths is that of :func:`hyenamd.surrogate.local_block.local_message` for one chunk of pairs
``(i, j)`` (messages flow j -> i), with ``φ`` ``[N, F + 2C]``, ``v`` ``[N, C, 3]``, ``b`` ``[p, K]``
the enveloped radial basis, ``r̂`` ``[p, 3]`` and ``W`` ``[F + 2C, K]`` the filter::

    x_p = φ_j ⊙ (W b_p)                  split F | C | C  ->  Δs, Δvv, Δvs
    acc_s[i] += Δs
    acc_v[i] += Δvs ⊗ r̂ + Δvv ⊙ v_j

Autograd records the plain ops' per-pair intermediates (``φ_j``, ``W b``, ``v_j``, ``Δvs``,
``Δvv``: ≈ 1.5 kB per pair at preset S) for the backward pass. :class:`_FusedMessageAdd` runs
the forward without recording and saves only what exists anyway — ``φ`` and ``v`` per atom,
``b`` and ``r̂`` per pair, ``W`` and the indices — and its backward recomputes the per-pair
gathers and products. With ``g_s = ∂L/∂acc_s``, ``g_v = ∂L/∂acc_v`` and ``(·)_i`` a gather at ``i``::

    ∂L/∂Δs  = g_s,i                     ∂L/∂Δvs = Σ_x g_v,i r̂         ∂L/∂Δvv = Σ_x g_v,i ⊙ v_j
    ∂L/∂r̂   = Σ_c Δvs_c g_v,i,c          ∂L/∂v   = Σ_{p: j} Δvv ⊙ g_v,i
    ∂L/∂x   = (∂L/∂Δs | ∂L/∂Δvv | ∂L/∂Δvs)
    ∂L/∂φ   = Σ_{p: j} ∂L/∂x ⊙ (W b)     ∂L/∂b = (∂L/∂x ⊙ φ_j) W       ∂L/∂W = (∂L/∂x ⊙ φ_j)ᵀ b

(``Σ_{p: j}``: an ``index_add`` over the pairs at their ``j``). The backward is made of
differentiable ops on the saved inputs, so double backward (training on forces) works. The
plain ops (:func:`plain_message_add`) stay the oracle, and the path under ``torch.compile`` and
``torch.func`` transforms (committees under ``vmap``).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["contract_xyz", "fused_message_add", "plain_message_add"]


def contract_xyz(a: Tensor, b: Tensor) -> Tensor:
    """``Σ_x a[..., x] b[..., x]`` ``[p, C]`` of ``a`` ``[p, C, 3]`` and ``b`` ``[p, C, 3]`` or
    ``[p, 1, 3]``: three strided products (``(a * b).sum(-1)``, a reduction over an inner axis of
    3, is ~3× slower on CPU)."""
    out = a[..., 0] * b[..., 0]
    out = torch.addcmul(out, a[..., 1], b[..., 1])
    return torch.addcmul(out, a[..., 2], b[..., 2])


def _split(x: Tensor, n_c: int) -> tuple[Tensor, Tensor, Tensor]:
    """``x`` ``[p, F + 2C]`` -> ``Δs`` ``[p, F]``, ``Δvv`` ``[p, C]``, ``Δvs`` ``[p, C]``."""
    return torch.split(x, [x.shape[1] - 2 * n_c, n_c, n_c], dim=-1)


def plain_message_add(
    acc_s: Tensor,
    acc_v: Tensor,
    phi: Tensor,
    v: Tensor | None,
    rbf: Tensor,
    unit: Tensor,
    weight: Tensor,
    i: Tensor,
    j: Tensor,
) -> tuple[Tensor, Tensor]:
    """The oracle: ``acc_s + Σ Δs``, ``acc_v + Σ Δv`` (out of place, autograd through every op).

    acc_s ``[N, F]``, acc_v ``[N, C, 3]``, phi ``[N, F + 2C]``, v ``[N, C, 3]`` or None (zero
    input vectors), rbf ``[p, K]``, unit ``[p, 3]``, weight ``[F + 2C, K]``, i, j ``[p]``.
    """
    x = phi.index_select(0, j) * (rbf @ weight.T)
    ds, dvv, dvs = _split(x, acc_v.shape[1])
    dv = dvs.unsqueeze(-1) * unit.unsqueeze(1)
    if v is not None:
        dv = torch.addcmul(dv, dvv.unsqueeze(-1), v.index_select(0, j))
    return acc_s.index_add(0, i, ds), acc_v.index_add(0, i, dv)


class _FusedMessageAdd(torch.autograd.Function):
    """``acc_s[i] += Δs``, ``acc_v[i] += Δv`` in place, saving only the inputs (see module doc)."""

    @staticmethod
    def forward(ctx, acc_s, acc_v, phi, v, rbf, unit, weight, i, j):
        x = phi.index_select(0, j) * (rbf @ weight.T)  # the plain path's ops: the same values
        ds, dvv, dvs = _split(x, acc_v.shape[1])
        dv = dvs.unsqueeze(-1) * unit.unsqueeze(1)
        if v is not None:
            dv = torch.addcmul(dv, dvv.unsqueeze(-1), v.index_select(0, j))
        acc_s.index_add_(0, i, ds)
        acc_v.index_add_(0, i, dv)
        ctx.save_for_backward(phi, v, rbf, unit, weight, i, j)
        ctx.mark_dirty(acc_s, acc_v)
        return acc_s, acc_v

    @staticmethod
    def backward(ctx, g_s: Tensor, g_v: Tensor):
        phi, v, rbf, unit, weight, i, j = ctx.saved_tensors
        need = ctx.needs_input_grad
        n_c = g_v.shape[1]
        n_f = phi.shape[1] - 2 * n_c
        fw = rbf @ weight.T  # [p, F + 2C]
        phi_j = phi.index_select(0, j)
        g_vi = g_v.index_select(0, i)  # [p, C, 3]
        v_j = v.index_select(0, j) if v is not None else None
        g_dvs = contract_xyz(g_vi, unit.unsqueeze(1))
        g_dvv = contract_xyz(g_vi, v_j) if v_j is not None else g_dvs.new_zeros(g_dvs.shape)
        g_x = torch.cat([g_s.index_select(0, i), g_dvv, g_dvs], dim=-1)  # [p, F + 2C]
        g_phi = g_v_in = g_rbf = g_unit = g_w = None
        if need[2]:
            g_phi = torch.zeros_like(phi).index_add(0, j, g_x * fw)
        if need[3] and v is not None:
            dvv = phi_j[:, n_f : n_f + n_c] * fw[:, n_f : n_f + n_c]
            g_v_in = torch.zeros_like(v).index_add(0, j, g_vi * dvv.unsqueeze(-1))
        if need[5]:
            dvs = phi_j[:, n_f + n_c :] * fw[:, n_f + n_c :]
            g_unit = torch.bmm(dvs.unsqueeze(1), g_vi).squeeze(1)  # Σ_c Δvs_c g_c
        if need[4] or need[6]:
            g_fw = g_x * phi_j
            g_rbf = g_fw @ weight if need[4] else None
            g_w = g_fw.T @ rbf if need[6] else None
        return g_s, g_v, g_phi, g_v_in, g_rbf, g_unit, g_w, None, None


def fused_message_add(
    acc_s: Tensor,
    acc_v: Tensor,
    phi: Tensor,
    v: Tensor | None,
    rbf: Tensor,
    unit: Tensor,
    weight: Tensor,
    i: Tensor,
    j: Tensor,
) -> tuple[Tensor, Tensor]:
    """``acc_s[i] += Δs``, ``acc_v[i] += Δv`` for one chunk of pairs; shapes as :func:`plain_message_add`.

    In place (returns the accumulators) through :class:`_FusedMessageAdd`; under
    ``torch.compile`` and ``torch.func`` transforms the plain ops, out of place (their tracers
    take those directly; a ``forward(ctx, ...)`` Function with ``mark_dirty`` does not trace).
    """
    if torch.compiler.is_compiling() or torch._C._are_functorch_transforms_active():
        return plain_message_add(acc_s, acc_v, phi, v, rbf, unit, weight, i, j)
    return _FusedMessageAdd.apply(acc_s, acc_v, phi, v, rbf, unit, weight, i, j)
