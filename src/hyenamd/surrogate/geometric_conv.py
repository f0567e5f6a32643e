"""The G-Hyena block's four geometric long convolutions as one autograd Function (memory-lean).

Same maths as :func:`hyenamd.surrogate.fftconv.geometric_long_convs` (its O(N²) oracles are the
``direct_*`` functions there), channel-first: signals ``q_s`` ``[B, F, L]``, ``q_m`` ``[B, C, L]``,
``q_v`` ``[B, C, 3, L]``; filters ``k_s`` ``[B, F, L]``, ``k_v`` ``[B, C, 3, L]``; outputs
``z_s = q_s ⊛ k_s`` ``[B, F, L]``, ``p = q_v ⊛× k_v`` ``[B, C, 3, L]`` (pseudovector),
``z_m = q_m ⊛ k_v`` ``[B, C, 3, L]``, ``z_d = q_v ⊛· k_v`` ``[B, C, L]``.

Why a Function. Torch's autograd of ``rfft → product → irfft`` keeps the padded real inputs,
both complex spectra and a view of the whole padded inverse transform for the backward pass
(2.6 KB/atom per block at preset S), and its ``rfft`` backward is a full complex transform of a
strided gradient. Here the forward keeps only the five real inputs (which the block holds
anyway) and the backward is the *adjoint convolutions*: for ``y_i = Σ_j a_j b_(i-j+c)``

    ∂L/∂a_j = Σ_m g_(j+m-c) b_m,     ∂L/∂b_m = Σ_j g_(j+m-c) a_j,

cross-correlations computed as ``irfft(rfft(g) · conj(rfft(b)))`` read at lag ``j - c`` (mod n,
folded, in circular mode); for the cross product ``∂/∂a = conj(B) × G`` and ``∂/∂b = G × conj(A)``
per frequency. Real transforms only; spectra are recomputed in the backward pass. The backward
is built from differentiable ops, so double backward (training on forces) works.

Channel chunking: transforms run on ``chunk`` channels at a time, so the transient complex
buffers are bounded by ``chunk × F`` instead of all channels at once.

FFT length (``nfft``), per call:

* circular, one unpadded system whose length n is a fast size: ``nfft = n`` (native circular);
* circular otherwise: ``fast(2L)``, and the linear result is folded at each system's n;
* linear with filter support ``K`` (lags beyond ±K are zero, as for the implicit filter):
  ``fast(L + min(K, L))`` — exact, since ``L + K`` leaves no wrap-around onto the read window;
  the filter is defined as zero beyond ±K (masked here), so the result does not depend on nfft.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from hyenamd.surrogate.fftconv import fast_fft_size, sequence_mask

__all__ = ["DEFAULT_CHUNK", "ConvPlan", "geometric_convs_cf", "plan_convs"]

#: channels per transform batch (bounds the complex buffers: chunk × nfft × 8 bytes per system)
DEFAULT_CHUNK = 8


@dataclass(frozen=True)
class ConvPlan:
    """How one call's convolutions are laid out: FFT length and read indices ``[B, L]``.

    fwd0/fwd1: forward read of the inverse transform (fwd1 only when folding);
    bwd0/bwd1: the same for the adjoint (correlation) read; mask ``[B, 1, L]`` or None;
    support: ``[B, 1, L]`` 0/1 on filter tokens within ±K of the centre, or None.
    """

    nfft: int
    length: int
    fwd0: Tensor
    fwd1: Tensor | None
    bwd0: Tensor
    bwd1: Tensor | None
    mask: Tensor | None
    support: Tensor | None


def plan_convs(lengths: Tensor, length: int, *, circular: bool, support: int | None = None) -> ConvPlan:
    """The :class:`ConvPlan` of a batch with system ``lengths`` ``[B]`` padded to ``length``."""
    dev = lengths.device
    b = lengths.shape[0]
    centre = torch.div(lengths, 2, rounding_mode="floor").unsqueeze(1)  # [B, 1]
    n_b = lengths.clamp_min(1).unsqueeze(1)
    tok = torch.arange(length, device=dev).unsqueeze(0)  # [1, L]
    padded = not bool((lengths == length).all())
    mask = sequence_mask(lengths, length).unsqueeze(1) if padded else None
    sup = None
    if circular:
        if b == 1 and not padded and fast_fft_size(length) == length:
            nfft = length
            fwd0 = torch.remainder(tok + centre, n_b)
            bwd0 = torch.remainder(tok - centre, n_b)
            return ConvPlan(nfft, length, fwd0, None, bwd0, None, None, None)
        nfft = fast_fft_size(2 * length)
        k = torch.remainder(tok + centre, n_b)
        fwd0, fwd1 = k, (k + n_b).clamp_max(nfft - 1)
        kb = torch.remainder(tok - centre, n_b)
        bwd0, bwd1 = kb, torch.remainder(kb - n_b, nfft)
        return ConvPlan(
            nfft, length, fwd0.expand(b, -1), fwd1.expand(b, -1), bwd0.expand(b, -1), bwd1, mask, None
        )
    k_sup = length if support is None else min(int(support), length)
    nfft = fast_fft_size(length + k_sup)
    if k_sup < length:
        lag = tok - centre
        sup = (lag.abs() <= k_sup).unsqueeze(1)  # [B, 1, L]
    fwd0 = torch.remainder(tok + centre, nfft).expand(b, -1)
    bwd0 = torch.remainder(tok - centre, nfft).expand(b, -1)
    return ConvPlan(nfft, length, fwd0, None, bwd0, None, mask, sup)


def _read(y: Tensor, i0: Tensor, i1: Tensor | None) -> Tensor:
    """``y`` ``[B, ..., nfft]`` read at ``i0`` (+ ``i1``) ``[B, L]`` along the last axis -> ``[B, ..., L]``."""
    shape = (*y.shape[:-1], i0.shape[-1])
    view = (i0.shape[0], *([1] * (y.ndim - 2)), i0.shape[-1])
    out = torch.gather(y, -1, i0.view(view).expand(shape))
    if i1 is not None:
        out = out + torch.gather(y, -1, i1.view(view).expand(shape))
    return out


def _masked(x: Tensor, m: Tensor | None) -> Tensor:
    if m is None:
        return x
    return x * m.view(m.shape[0], *([1] * (x.ndim - 2)), m.shape[-1]).to(x.dtype)


def _chunks(n: int, chunk: int):
    for a in range(0, n, chunk):
        yield slice(a, min(a + chunk, n))


def _forward(ss, ks, sm, sv, kv, plan: ConvPlan, chunk: int):
    """The four convolutions (no autograd inside: called under no_grad or recorded ops)."""
    nfft = plan.nfft
    rf = lambda x: torch.fft.rfft(x, n=nfft, dim=-1)  # noqa: E731
    inv = lambda x: _masked(_read(torch.fft.irfft(x, n=nfft, dim=-1), plan.fwd0, plan.fwd1), plan.mask)  # noqa: E731
    ks, kv = _masked(ks, plan.support), _masked(kv, plan.support)
    zs = [inv(rf(ss[:, c]) * rf(ks[:, c])) for c in _chunks(ss.shape[1], chunk)]
    zc, zm, zd = [], [], []
    for c in _chunks(sv.shape[1], max(1, chunk // 4)):
        a, bk, am = rf(sv[:, c]), rf(kv[:, c]), rf(sm[:, c])  # [B, c, 3, nf], [B, c, nf]
        ax, ay, az = a.unbind(2)
        bx, by, bz = bk.unbind(2)
        zc.append(inv(torch.stack([ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx], 2)))
        zm.append(inv(am.unsqueeze(2) * bk))
        zd.append(inv(ax * bx + ay * by + az * bz))
    return torch.cat(zs, 1), torch.cat(zc, 1), torch.cat(zm, 1), torch.cat(zd, 1)


def _backward(gs, gc, gm, gd, ss, ks, sm, sv, kv, plan: ConvPlan, chunk: int):
    """Adjoint convolutions: gradients of the five inputs from those of the four outputs."""
    nfft = plan.nfft
    rf = lambda x: torch.fft.rfft(x, n=nfft, dim=-1)  # noqa: E731
    inv = lambda x: _masked(_read(torch.fft.irfft(x, n=nfft, dim=-1), plan.bwd0, plan.bwd1), plan.mask)  # noqa: E731
    ks_m, kv_m = _masked(ks, plan.support), _masked(kv, plan.support)
    dss, dks = [], []
    for c in _chunks(ss.shape[1], chunk):
        g = rf(_masked(gs[:, c], plan.mask))
        dss.append(inv(g * rf(ks_m[:, c]).conj()))
        dks.append(inv(g * rf(ss[:, c]).conj()))
    dsm, dsv, dkv = [], [], []
    for c in _chunks(sv.shape[1], max(1, chunk // 4)):
        a, bk, am = rf(sv[:, c]).conj(), rf(kv_m[:, c]).conj(), rf(sm[:, c]).conj()
        g_c = rf(_masked(gc[:, c], plan.mask))  # [B, c, 3, nf]
        g_m = rf(_masked(gm[:, c], plan.mask))
        g_d = rf(_masked(gd[:, c], plan.mask)).unsqueeze(2)  # [B, c, 1, nf]
        # ∂/∂q_v = conj(K) × G_c + G_d conj(K);  ∂/∂k_v = G_c × conj(A) + G_m conj(A_m) + G_d conj(A)
        da = torch.linalg.cross(bk, g_c, dim=2) + g_d * bk
        db = torch.linalg.cross(g_c, a, dim=2) + g_m * am.unsqueeze(2) + g_d * a
        dsm.append(inv((g_m * bk).sum(2)))
        dsv.append(inv(da))
        dkv.append(inv(db))
    dks_t, dkv_t = torch.cat(dks, 1), torch.cat(dkv, 1)
    return (
        torch.cat(dss, 1),
        _masked(dks_t, plan.support),
        torch.cat(dsm, 1),
        torch.cat(dsv, 1),
        _masked(dkv_t, plan.support),
    )


class _GeometricConvs(torch.autograd.Function):
    @staticmethod
    def forward(ss, ks, sm, sv, kv, plan, chunk):
        with torch.no_grad():
            return _forward(ss, ks, sm, sv, kv, plan, chunk)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ss, ks, sm, sv, kv, plan, chunk = inputs
        ctx.save_for_backward(ss, ks, sm, sv, kv)
        ctx.plan, ctx.chunk = plan, chunk

    @staticmethod
    def vmap(info, in_dims, ss, ks, sm, sv, kv, plan, chunk):
        """Under ``torch.func.vmap`` (committee members): the member axis joins the channel axis.

        Channels are convolved independently, so ``K`` members' ``[B, F, L]`` inputs run as one
        ``[B, K F, L]`` call sharing the plan; outputs come back as ``[B, K, F, L]`` (out dim 1).
        """
        k = info.batch_size
        folded = []
        for x, d in zip((ss, ks, sm, sv, kv), in_dims[:5]):
            x = x.unsqueeze(0).expand(k, *x.shape) if d is None else x.movedim(d, 0)
            folded.append(x.movedim(0, 1).reshape(x.shape[1], k * x.shape[2], *x.shape[3:]))
        outs = _GeometricConvs.apply(*folded, plan, chunk)
        return tuple(o.view(o.shape[0], k, o.shape[1] // k, *o.shape[2:]) for o in outs), (1, 1, 1, 1)

    @staticmethod
    def backward(ctx, gs, gc, gm, gd):
        ss, ks, sm, sv, kv = ctx.saved_tensors
        zeros = lambda g, x: torch.zeros_like(x) if g is None else g  # noqa: E731
        gs, gd = zeros(gs, ss), zeros(gd, sm)
        gc, gm = zeros(gc, sv), zeros(gm, sv)
        grads = _GeometricConvsBackward.apply(gs, gc, gm, gd, ss, ks, sm, sv, kv, ctx.plan, ctx.chunk)
        return (*grads, None, None)


class _GeometricConvsBackward(torch.autograd.Function):
    """The backward pass as its own Function, differentiated by autograd through plain ops."""

    @staticmethod
    def forward(ctx, gs, gc, gm, gd, ss, ks, sm, sv, kv, plan, chunk):
        ctx.save_for_backward(gs, gc, gm, gd, ss, ks, sm, sv, kv)
        ctx.plan, ctx.chunk = plan, chunk
        with torch.no_grad():
            return _backward(gs, gc, gm, gd, ss, ks, sm, sv, kv, plan, chunk)

    @staticmethod
    def backward(ctx, *grads):
        saved = ctx.saved_tensors
        with torch.enable_grad():
            inputs = [x.detach().requires_grad_(True) for x in saved]
            outs = _backward(*inputs, ctx.plan, ctx.chunk)
            pairs = [(o, g) for o, g in zip(outs, grads) if g is not None]
            res = torch.autograd.grad(
                [o for o, _ in pairs], inputs, [g for _, g in pairs], allow_unused=True, create_graph=True
            )
        return (*res, None, None)


def geometric_convs_cf(
    ss: Tensor,
    ks: Tensor,
    sm: Tensor,
    sv: Tensor,
    kv: Tensor,
    lengths: Tensor,
    *,
    circular: bool,
    support: int | None = None,
    chunk: int = DEFAULT_CHUNK,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The four geometric convolutions, channel-first (see the module doc for shapes and maths).

    Inputs must be zero on padding (beyond ``lengths[b]``). ``support``: the filters ``ks``,
    ``kv`` are taken as zero beyond ±support lags of each system's centre (linear mode only).
    Computed in float32 at least (float64 stays float64); outputs in the inputs' dtype.
    """
    b, _, length = ss.shape
    c = sm.shape[1]
    if (
        ks.shape != ss.shape
        or sm.shape != (b, c, length)
        or sv.shape != (b, c, 3, length)
        or kv.shape != sv.shape
    ):
        raise ValueError(
            f"geometric_convs_cf: shapes {tuple(ss.shape)}, {tuple(ks.shape)}, {tuple(sm.shape)}, "
            f"{tuple(sv.shape)}, {tuple(kv.shape)} do not match [B, F, L] / [B, C, L] / [B, C, 3, L]"
        )
    dt = torch.float64 if ss.dtype == torch.float64 or kv.dtype == torch.float64 else torch.float32
    plan = plan_convs(lengths.to(ss.device), length, circular=circular, support=support)
    with torch.autocast(ss.device.type, enabled=False):
        outs = _GeometricConvs.apply(ss.to(dt), ks.to(dt), sm.to(dt), sv.to(dt), kv.to(dt), plan, int(chunk))
    out_dt = torch.promote_types(ss.dtype, kv.dtype)
    return tuple(o.to(out_dt) for o in outs)
