"""Slow, readable re-implementation of :class:`GlobalBlock`'s forward pass: the test oracle.

One system at a time (a Python loop), no padding, the filter normalised by an explicit sum,
and the long convolutions by the direct O(N²) sums of :mod:`hyenamd.surrogate.fftconv`. It uses
the block's own parameters, so ``reference_global_block(block, ...) == block(...)`` up to
rounding (tests: ≤ 1e-10 in float64).
"""

from __future__ import annotations

import torch
from torch import Tensor

from hyenamd.surrogate.equivariant import vector_norm
from hyenamd.surrogate.fftconv import (
    direct_cross_conv,
    direct_dot_conv,
    direct_scalar_conv,
    direct_scalar_vector_conv,
)

__all__ = ["reference_global_block"]


def _rms_norm(v: Tensor, eps: float, gain: Tensor) -> Tensor:
    rms = torch.sqrt((v * v).sum(-1).mean(-1) + eps * eps)  # [n]
    return v / rms[:, None, None] * gain[None, :, None]


def reference_global_block(block, s: Tensor, v: Tensor, order: Tensor, ptr: Tensor) -> tuple[Tensor, Tensor]:
    """``block(s, v, order, ptr)`` computed slowly: loop over systems, direct convolutions."""
    f, c = block.n_scalar, block.n_vector
    ds_all = torch.zeros_like(s)
    dv_all = torch.zeros_like(v)
    for b in range(ptr.numel() - 1):
        atoms = order[int(ptr[b]) : int(ptr[b + 1])]  # this system's atoms in canonical order
        n = atoms.numel()
        if n == 0:
            continue
        s_b, v_b = s[atoms], v[atoms]  # tokens [n, F], [n, C, 3]

        # pre-norm and projections
        sn = torch.nn.functional.layer_norm(
            s_b, (f,), block.norm_s.weight, block.norm_s.bias, block.norm_s.eps
        )
        ps = sn @ block.proj_s.weight.T + block.proj_s.bias
        q_s, k_s, u_s, q_m = ps[:, :f], ps[:, f : 2 * f], ps[:, 2 * f : 3 * f], ps[:, 3 * f :]
        pv = torch.einsum(
            "oc,ncx->nox", block.proj_v.weight, _rms_norm(v_b, block.prenorm_eps, block.prenorm_gain)
        )
        q_v, k_v, u_v = pv[:, :c], pv[:, c : 2 * c], pv[:, 2 * c :]

        # positional filter on this system's lags: token m has lag m - n//2; L1-normalise
        lags = torch.arange(n, device=s.device) - n // 2
        h = block.filter(lags).to(s.dtype)  # [n, F + C], zero beyond ±K
        h = h / (h.abs().sum(0) + 1e-12)
        kap_s = h[:, :f] * k_s
        kap_v = h[:, f:, None] * k_v

        # long convolutions, direct O(n²) sums (one system: batch of 1; lags mod n if circular)
        kw = {"circular": block.conv == "circular"}
        z_s = direct_scalar_conv(q_s[None], kap_s[None], **kw)[0]
        cross = direct_cross_conv(q_v[None], kap_v[None], **kw)[0]  # pseudovectors
        z_m = direct_scalar_vector_conv(q_m[None], kap_v[None], **kw)[0]
        z_d = direct_dot_conv(q_v[None], kap_v[None], **kw)[0]

        # value integration: true scalars and true vectors only
        a = torch.cat(
            [u_s * z_s, z_d, vector_norm(cross, eps=torch.exp(block.pnorm.log_eps)), (z_m * u_v).sum(-1)],
            dim=-1,
        )
        w = torch.cat([torch.cross(cross, u_v, dim=-1), z_m, z_d[..., None] * u_v], dim=1)
        g = torch.sigmoid(sn @ block.gate.weight.T + block.gate.bias)
        ds = g[:, :f] * (a @ block.out_s.weight.T + block.out_s.bias)
        dv = g[:, f:, None] * torch.einsum("oc,ncx->nox", block.out_v.weight, w)
        ds_all = ds_all.index_put((atoms,), ds)
        dv_all = dv_all.index_put((atoms,), dv)
    return block.mlp(s + ds_all, v + dv_all)
