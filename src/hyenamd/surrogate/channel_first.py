"""The global block's FFT path in channel-first layout: tokens on the last (contiguous) axis.

Same maths as :func:`hyenamd.surrogate.global_block._integrate` and friends (the token-layout
form, which the reference oracle and the small-system DFT path use), laid out for the long
convolutions. The FFT kernels transform rows of tokens (:mod:`hyenamd.surrogate.geometric_conv`);
in token layout ``[N, F]`` / ``[N, C, 3]`` every row had to be gathered by a transposing copy on
the way in and scattered back on the way out, forward and backward, and the per-atom maths ran
on strided views (sums over an inner axis of 3, cross products, concatenations of transposed
gradients): at N = 16 384 (F = 64, C = 16) a third of the block's forward time.

Layout here, per block call:

- vectors ``[C, 3, N]`` (channel, component, token) from entry to exit: one gathering transpose
  in (:func:`to_channel_first`), one out (:func:`from_channel_first`). Channel mixing is one
  matrix product ``W [C', C] @ V [C, 3N]`` with no copy; components are whole rows, so cross
  products, dot products and norms are sums of contiguous rows.
- scalars stay in token rows ``[N, F]`` (native LayerNorm, the residual stream); the matrix
  products that feed or read the convolutions produce or take the channel-first ``[F', N]``
  directly (``W @ x.T``, ``a.T @ W.T``: BLAS transposes, no copies).
- several systems: the convolutions' padded ``[B, L]`` layout is ``[..., B, L]`` in memory
  (:func:`pad_channel_first`), presented to the kernels as ``[B, ..., L]`` views, so their rows
  are contiguous too; one system is never padded (views only).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from hyenamd.surrogate.equivariant import GatedEquivariantMLP
from hyenamd.surrogate.fftconv import _scatter_index

__all__ = [
    "cross_cf",
    "from_channel_first",
    "gated_mlp_cf",
    "inverse_permutation",
    "linear_cf",
    "pad_channel_first",
    "to_channel_first",
    "token_slots",
    "unpad_channel_first",
    "vector_linear_cf",
    "vector_norm_cf",
    "vector_rms_norm_cf",
]


def inverse_permutation(order: Tensor) -> Tensor:
    """``inv`` ``[N]`` with ``inv[order[i]] = i``."""
    inv = torch.empty_like(order)
    inv[order] = torch.arange(order.shape[0], device=order.device, dtype=order.dtype)
    return inv


def to_channel_first(x: Tensor, order: Tensor) -> Tensor:
    """Per-atom ``[N, *S]`` -> tokens in canonical ``order``, channel-first ``[*S, N]`` (one gathering pass)."""
    n = x.shape[0]
    return torch.index_select(x.reshape(n, -1).T, 1, order).view(*x.shape[1:], n)


def from_channel_first(x: Tensor, inverse: Tensor) -> Tensor:
    """Inverse of :func:`to_channel_first`: ``[*S, N]`` tokens -> per-atom ``[N, *S]`` (``inverse``:
    :func:`inverse_permutation` of the order)."""
    n = x.shape[-1]
    return torch.index_select(x.reshape(-1, n), 1, inverse).T.contiguous().view(n, *x.shape[:-1])


def token_slots(ptr: Tensor, length: int) -> Tensor | None:
    """Each token's place ``[N]`` in the flattened padded ``[B, L]`` layout (``b·L + position``),
    computed once per block for :func:`pad_channel_first` and :func:`unpad_channel_first`;
    None for one unpadded system (they take views then)."""
    if ptr.numel() == 2 and int(ptr[-1]) == length:
        return None
    sys_idx, pos, _ = _scatter_index(ptr)
    return sys_idx * length + pos


def pad_channel_first(x: Tensor, slots: Tensor | None, n_systems: int, length: int) -> Tensor:
    """Tokens ``[*S, N]`` (system by system) -> zero-padded ``[*S, B, L]``; a view when ``slots``
    is None (:func:`token_slots`)."""
    if slots is None:
        return x.unsqueeze(-2)
    out = x.new_zeros(*x.shape[:-1], n_systems * length).index_copy(-1, slots, x)
    return out.view(*x.shape[:-1], n_systems, length)


def unpad_channel_first(y: Tensor, slots: Tensor | None) -> Tensor:
    """Inverse of :func:`pad_channel_first`: ``[*S, B, L]`` -> ``[*S, N]`` (padding dropped)."""
    if slots is None:
        return y[..., 0, :]
    return y.flatten(-2).index_select(-1, slots)


def linear_cf(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """``nn.Linear`` of token rows ``x`` ``[N, I]`` returned channel-first ``[O, N]``: ``W xᵀ + b``."""
    return torch.addmm(bias.unsqueeze(1), weight, x.T)


def vector_linear_cf(v: Tensor, weight: Tensor) -> Tensor:
    """Channel mixing ``[C, 3, N] -> [C', 3, N]`` (weight ``[C', C]``): one matrix product, no copy."""
    return (weight @ v.reshape(v.shape[0], -1)).view(weight.shape[0], *v.shape[1:])


def vector_norm_cf(v: Tensor, eps: Tensor) -> Tensor:
    """:func:`hyenamd.surrogate.equivariant.vector_norm` channel-first: ``[C, 3, N] -> [C, N]``, eps ``[C]``."""
    e = eps.unsqueeze(1)
    return torch.sqrt(v.pow(2).sum(1) + e * e) - e


def vector_rms_norm_cf(v: Tensor, eps: float, gain: Tensor) -> Tensor:
    """:func:`hyenamd.surrogate.global_block.vector_rms_norm` channel-first: ``[C, 3, N]``, gain ``[C]``."""
    inv_rms = torch.rsqrt(v.pow(2).sum((0, 1)) / v.shape[0] + eps * eps)  # [N]
    return v * (gain.view(-1, 1, 1) * inv_rms)


def cross_cf(a: Tensor, b: Tensor) -> Tensor:
    """``a × b`` over the component axis of ``[C, 3, N]`` (whole rows; ``linalg.cross`` on dim 1 is
    several times slower on CPU)."""
    ax, ay, az = a.unbind(1)
    bx, by, bz = b.unbind(1)
    return torch.stack([ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx], 1)


def gated_mlp_cf(mlp: GatedEquivariantMLP, s: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """:class:`~hyenamd.surrogate.equivariant.GatedEquivariantMLP` with token-row scalars ``s``
    ``[N, F]`` and channel-first vectors ``v`` ``[C, 3, N]``; same parameters, same maths."""
    c, f = v.shape[0], mlp.n_scalar
    u, w = torch.split(vector_linear_cf(v, torch.cat([mlp.u.weight, mlp.w.weight])), [c, c])
    first, act, last = mlp.mlp
    hidden = act(
        F.linear(torch.cat([mlp.norm(s), vector_norm_cf(w, mlp.vnorm.eps()).T], -1), first.weight, first.bias)
    )
    del w
    a_s = torch.addmm(last.bias[:f], hidden, last.weight[:f].T)  # [N, F]
    a_v = linear_cf(hidden, last.weight[f:], last.bias[f:])  # [C, N]
    del hidden  # temporaries go as soon as they are used: a forward without gradients peaks lower
    return s + a_s, torch.addcmul(v, a_v.unsqueeze(1), u)
