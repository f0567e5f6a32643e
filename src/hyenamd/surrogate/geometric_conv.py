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
per frequency, computed as ``conj(conj(G) · X)`` (two in-place conjugations, cheap). Real
transforms only; the inputs' spectra are kept from the forward pass (``keep_spectra``, default)
or recomputed in the backward pass. Double backward (training on forces) runs through a plain
differentiable version of the adjoint (:func:`_backward`).

Transform batches: every FFT call runs on one buffer of rows ``[R, B, nfft]`` holding several
streams of ``chunk`` scalar channels (signal and filter rows together) or ``chunk // 4`` vector
channels (``q_v``, ``q_m``, ``k_v``: 7 rows per channel), because pocketfft vectorises across
rows (a 1–2 row call costs 2–4× per row what an 8–30 row call does); the zero padding of that
buffer is written once per call, products go into a reused buffer (``out=``, in place), and one
unpadded system reads its outputs by slices (no index tensors). The transient buffers are bounded
by ``R × nfft`` (``R`` ≤ 32 at the default chunk of 16) instead of all channels at once.

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
DEFAULT_CHUNK = 16
#: below this many buffer elements (all rows × B × nfft) every channel goes in one transform batch
#: (``chunk=None``): small systems pay per-op costs, not memory
SMALL_ELEMENTS = 1 << 20


@dataclass(frozen=True)
class ConvPlan:
    """How one call's convolutions are laid out: FFT length and read indices ``[B, L]``.

    fwd0/fwd1: forward read of the inverse transform (fwd1 only when folding);
    bwd0/bwd1: the same for the adjoint (correlation) read; mask ``[B, 1, L]`` or None;
    support: ``[B, 1, L]`` 0/1 on filter tokens within ±K of the centre, or None.
    One unpadded system (``B = 1``) is read by slices instead: ``fast_fwd``/``fast_bwd`` =
    ``(start, period, fold)``, output ``i`` = ``y[(start + i) mod period]`` (``+ y[... + fold]``
    when ``fold``), and ``window`` = the filter tokens ``[lo, hi)`` inside the support.
    """

    nfft: int
    length: int
    fwd0: Tensor
    fwd1: Tensor | None
    bwd0: Tensor
    bwd1: Tensor | None
    mask: Tensor | None
    support: Tensor | None
    fast_fwd: tuple[int, int, int] | None = None
    fast_bwd: tuple[int, int, int] | None = None
    window: tuple[int, int] | None = None


def plan_convs(lengths: Tensor, length: int, *, circular: bool, support: int | None = None) -> ConvPlan:
    """The :class:`ConvPlan` of a batch with system ``lengths`` ``[B]`` padded to ``length``."""
    dev = lengths.device
    b = lengths.shape[0]
    centre = torch.div(lengths, 2, rounding_mode="floor").unsqueeze(1)  # [B, 1]
    n_b = lengths.clamp_min(1).unsqueeze(1)
    tok = torch.arange(length, device=dev).unsqueeze(0)  # [1, L]
    padded = not bool((lengths == length).all())
    one = b == 1 and not padded  # one unpadded system: slices instead of index tensors
    c0 = length // 2
    mask = sequence_mask(lengths, length).unsqueeze(1) if padded else None
    sup = None
    if circular:
        if one and fast_fft_size(length) == length:
            nfft = length
            fwd0 = torch.remainder(tok + centre, n_b)
            bwd0 = torch.remainder(tok - centre, n_b)
            fast = ((c0, length, 0), ((length - c0) % length, length, 0))
            return ConvPlan(nfft, length, fwd0, None, bwd0, None, None, None, *fast)
        nfft = fast_fft_size(2 * length)
        k = torch.remainder(tok + centre, n_b)
        fwd0, fwd1 = k, (k + n_b).clamp_max(nfft - 1)
        kb = torch.remainder(tok - centre, n_b)
        bwd0, bwd1 = kb, torch.remainder(kb - n_b, nfft)
        fast = (
            ((c0, length, length), ((length - c0) % length, length, nfft - length)) if one else (None, None)
        )
        return ConvPlan(
            nfft, length, fwd0.expand(b, -1), fwd1.expand(b, -1), bwd0.expand(b, -1), bwd1, mask, None, *fast
        )
    k_sup = length if support is None else min(int(support), length)
    nfft = fast_fft_size(length + k_sup)
    window = None
    if k_sup < length:
        lag = tok - centre
        sup = (lag.abs() <= k_sup).unsqueeze(1)  # [B, 1, L]
        window = (max(c0 - k_sup, 0), min(c0 + k_sup + 1, length)) if one else None
    fwd0 = torch.remainder(tok + centre, nfft).expand(b, -1)
    bwd0 = torch.remainder(tok - centre, nfft).expand(b, -1)
    fast = ((c0, nfft, 0), ((-c0) % nfft, nfft, 0)) if one else (None, None)
    return ConvPlan(nfft, length, fwd0, None, bwd0, None, mask, sup, *fast, window)


_PLANS: dict[tuple, ConvPlan] = {}
_PLANS_MAX = 16


def _cached_plan(lengths: Tensor, length: int, circular: bool, support: int | None, device) -> ConvPlan:
    """:func:`plan_convs`, memoised per (system lengths, padded length, mode, support, device):
    an MD run calls it twice per step with the same sizes (a few small index tensors each)."""
    key = (tuple(lengths.tolist()), length, circular, support, str(device))
    plan = _PLANS.get(key)
    if plan is None:
        if len(_PLANS) >= _PLANS_MAX:
            _PLANS.pop(next(iter(_PLANS)))
        plan = _PLANS[key] = plan_convs(lengths.to(device), length, circular=circular, support=support)
    return plan


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


# ----------------------------------------------------------------------------- fast kernels (no autograd)
# Rows layout: every transform batch is one buffer ``[R, B, nfft]`` (rows = channels of several
# streams, ``R`` a few tens), so each call to the real FFT runs on many contiguous rows at once
# (pocketfft vectorises across rows: a 1-2 row call costs 2-4x per row what an 8+ row call does),
# products are written into preallocated spectra (``out=``, in place), and the inverse transform
# reuses the input buffer. One unpadded system reads its outputs by slices (no index tensors).


def _rows(x: Tensor, c: slice) -> Tensor:
    """Channels ``c`` of ``[B, C, L]`` or ``[B, C, 3, L]`` as rows ``[r, B, L]`` (a view)."""
    x = x[:, c]
    if x.ndim == 4:
        x = x.flatten(1, 2)
    return x.transpose(0, 1)


def _load(dst: Tensor, srcs: list[Tensor], plan: ConvPlan, filt: list[bool]) -> None:
    """Copy row blocks ``srcs`` ``[r_k, B, L]`` into ``dst`` ``[Σ r_k, B, nfft]`` (its padding stays zero).

    Blocks flagged in ``filt`` are filters: zeroed outside the support (linear mode, lags > K).
    """
    length = plan.length
    r0 = 0
    for x, is_filter in zip(srcs, filt):
        r1 = r0 + x.shape[0]
        d = dst[r0:r1]
        d[..., :length].copy_(x)
        if is_filter and plan.window is not None:
            lo, hi = plan.window
            d[..., :lo].zero_()
            d[..., hi:length].zero_()
        elif is_filter and plan.support is not None:
            d[..., :length].mul_(plan.support.view(1, *plan.support.shape[::2]).to(d.dtype))
        r0 = r1


def _store(y: Tensor, outs: list[Tensor], plan: ConvPlan, backward: bool, filt: list[bool]) -> None:
    """Read the inverse transforms ``y`` ``[Σ r_k, B, nfft]`` into the row views ``outs`` ``[r_k, B, L]``.

    Forward reads the convolution at ``i + c`` (folded in circular mode), backward the
    correlation at ``j - c``; padding is zeroed, and outputs flagged in ``filt`` (gradients of
    the filters) are zeroed outside the support.
    """
    length = plan.length
    fast = plan.fast_bwd if backward else plan.fast_fwd
    r0 = 0
    for o, is_filter in zip(outs, filt):
        r1 = r0 + o.shape[0]
        yy = y[r0:r1]
        if fast is not None:
            start, period, fold = fast
            a, m1 = 0, min(length, period - start)
            for s, m in ((start, m1), (0, length - m1)):
                if m <= 0:
                    continue
                if fold:
                    torch.add(yy[..., s : s + m], yy[..., s + fold : s + fold + m], out=o[..., a : a + m])
                else:
                    o[..., a : a + m].copy_(yy[..., s : s + m])
                a += m
            if is_filter and plan.window is not None:
                lo, hi = plan.window
                o[..., :lo].zero_()
                o[..., hi:].zero_()
        else:
            i0, i1 = (plan.bwd0, plan.bwd1) if backward else (plan.fwd0, plan.fwd1)
            res = _read(yy.transpose(0, 1), i0, i1).transpose(0, 1)  # [r, B, L]
            keep = plan.mask
            if is_filter and plan.support is not None:
                keep = plan.support if keep is None else keep & plan.support
            if keep is not None:
                res = res * keep.view(1, keep.shape[0], keep.shape[-1]).to(res.dtype)
            o.copy_(res)
        r0 = r1


class _Buffers:
    """The padded real input ``[R, B, nfft]`` and a complex product buffer ``[R, B, nfft // 2 + 1]``,
    reused by every transform batch of a call (the transforms themselves allocate their outputs:
    torch's ``out=`` variants of the FFTs only copy a fresh result into ``out``)."""

    def __init__(
        self, rows: int, prows: int, b: int, length: int, nfft: int, dtype: torch.dtype, device: torch.device
    ) -> None:
        cdt = torch.complex128 if dtype == torch.float64 else torch.complex64
        self.nfft = nfft
        self.x = torch.empty(rows, b, nfft, dtype=dtype, device=device)
        self.x[..., length:].zero_()  # the zero padding, written once: tokens only are loaded
        self.p = torch.empty(prows, b, nfft // 2 + 1, dtype=cdt, device=device)

    def rfft(self, rows: int) -> Tensor:
        return torch.fft.rfft(self.x[:rows], n=self.nfft, dim=-1)

    def irfft(self, spec: Tensor) -> Tensor:
        return torch.fft.irfft(spec, n=self.nfft, dim=-1)


def _xyz(t: Tensor, n: int) -> tuple[Tensor, Tensor, Tensor]:
    """Rows ``[3n, B, nf]`` (channel-major, xyz minor) -> the x, y, z rows ``[n, B, nf]`` (views)."""
    return t.view(n, 3, *t.shape[1:]).unbind(1)


def _cross_into(o: Tensor, a: tuple[Tensor, ...], b: tuple[Tensor, ...], n: int) -> None:
    """``o`` ``[3n, B, nf]`` = ``a × b`` per frequency (a, b as x, y, z rows)."""
    ox, oy, oz = _xyz(o, n)
    for out, i, j in ((ox, 1, 2), (oy, 2, 0), (oz, 0, 1)):
        torch.mul(a[i], b[j], out=out)
        out.addcmul_(a[j], b[i], value=-1)


def _fast_forward(ss, ks, sm, sv, kv, plan: ConvPlan, chunk: int, keep: bool):
    """The four convolutions, outputs ``[B, F, L]``, ``[B, C, 3, L]`` x2, ``[B, C, L]`` (no autograd).

    ``keep``: also return the input spectra of every transform batch (for the backward pass).
    """
    b, f, length = ss.shape
    c = sm.shape[1]
    cv = max(1, chunk // 4)
    zs, zc, zm, zd = (
        torch.empty_like(ss),  # the inputs' layout (channel-first rows stay contiguous)
        torch.empty_like(sv),
        torch.empty_like(sv),
        torch.empty_like(sm),
    )
    rows = max(2 * min(chunk, f), 7 * min(cv, c))
    buf = _Buffers(rows, rows, b, length, plan.nfft, ss.dtype, ss.device)
    specs = []
    for ch in _chunks(f, chunk):
        n = ch.stop - ch.start
        _load(buf.x, [_rows(ss, ch), _rows(ks, ch)], plan, [False, True])
        spec = buf.rfft(2 * n)
        prod = torch.mul(spec[:n], spec[n:], out=buf.p[:n]) if keep else spec[:n].mul_(spec[n:])
        _store(buf.irfft(prod), [_rows(zs, ch)], plan, False, [False])
        specs += [spec] if keep else []
    for ch in _chunks(c, cv):
        n = ch.stop - ch.start
        _load(buf.x, [_rows(sv, ch), _rows(sm, ch), _rows(kv, ch)], plan, [False, False, True])
        spec = buf.rfft(7 * n)
        a, am, k = _xyz(spec[: 3 * n], n), spec[3 * n : 4 * n], _xyz(spec[4 * n :], n)
        p = buf.p[: 7 * n]
        _cross_into(p[: 3 * n], a, k, n)  # q_v ⊛× k_v
        for out, kk in zip(_xyz(p[3 * n : 6 * n], n), k):  # q_m ⊛ k_v
            torch.mul(am, kk, out=out)
        d = p[6 * n :]  # q_v ⊛· k_v
        torch.mul(a[0], k[0], out=d)
        d.addcmul_(a[1], k[1]).addcmul_(a[2], k[2])
        _store(buf.irfft(p), [_rows(zc, ch), _rows(zm, ch), _rows(zd, ch)], plan, False, [False] * 3)
        specs += [spec] if keep else []
    return (zs, zc, zm, zd), specs


def _fast_backward(gs, gc, gm, gd, ss, ks, sm, sv, kv, plan: ConvPlan, chunk: int, specs=None):
    """Adjoint convolutions (no autograd): gradients of the five inputs from those of the four outputs.

    ``∂/∂q = irfft(G · conj(K))``, ``∂/∂k = irfft(G · conj(Q))`` read at ``j - c``; for the cross
    product ``∂/∂q_v = conj(K) × G_c``, ``∂/∂k_v = G_c × conj(Q_v)``, plus the mixed terms. Each is
    computed as ``conj(conj(G) · X)`` (two cheap in-place conjugations, inputs' spectra untouched).
    ``specs``: the forward's input spectra per transform batch (None: recomputed here).
    Gradients of padded outputs are ignored (the forward zeroed them).
    """
    b, f, length = ss.shape
    c = sm.shape[1]
    cv = max(1, chunk // 4)
    dss, dks, dsm = torch.empty_like(ss), torch.empty_like(ks), torch.empty_like(sm)
    dsv, dkv = torch.empty_like(sv), torch.empty_like(kv)
    recompute = specs is None
    rows = max(3 * min(chunk, f), 14 * min(cv, c)) if recompute else max(min(chunk, f), 7 * min(cv, c))
    buf = _Buffers(rows, max(2 * min(chunk, f), 7 * min(cv, c)), b, length, plan.nfft, ss.dtype, ss.device)
    saved = iter(specs or [])
    mask = plan.mask
    gmask = (lambda g: g) if mask is None else (lambda g: g * mask.view(1, b, length).to(g.dtype))

    def spectra(grads, inputs, filt):
        """conj(spectra of the gradients) and the inputs' spectra (recomputed or saved)."""
        if recompute:
            _load(buf.x, grads + inputs, plan, [False] * len(grads) + filt)
        else:
            _load(buf.x, grads, plan, [False] * len(grads))
        spec = buf.rfft(
            sum(g.shape[0] for g in grads) + (sum(x.shape[0] for x in inputs) if recompute else 0)
        )
        r = sum(g.shape[0] for g in grads)
        return spec[:r].conj_physical_(), spec[r:] if recompute else next(saved)

    for ch in _chunks(f, chunk):
        n = ch.stop - ch.start
        g, x = spectra([gmask(_rows(gs, ch))], [_rows(ss, ch), _rows(ks, ch)], [False, True])
        p = torch.mul(x.view(2, *g.shape), g, out=buf.p[: 2 * n].view(2, *g.shape)).view(2 * n, *g.shape[1:])
        _store(buf.irfft(p.conj_physical_()), [_rows(dks, ch), _rows(dss, ch)], plan, True, [True, False])
    for ch in _chunks(c, cv):
        n = ch.stop - ch.start
        grads = [gmask(_rows(gc, ch)), gmask(_rows(gm, ch)), gmask(_rows(gd, ch))]
        g, x = spectra(grads, [_rows(sv, ch), _rows(sm, ch), _rows(kv, ch)], [False, False, True])
        g_c, g_m, g_d = _xyz(g[: 3 * n], n), _xyz(g[3 * n : 6 * n], n), g[6 * n :]
        a, am, k = _xyz(x[: 3 * n], n), x[3 * n : 4 * n], _xyz(x[4 * n :], n)
        p = buf.p[: 7 * n]
        _cross_into(p[: 3 * n], k, g_c, n)  # ∂/∂q_v = conj(K × G̅_c + G̅_d K)
        for out, kk in zip(_xyz(p[: 3 * n], n), k):
            out.addcmul_(g_d, kk)
        _cross_into(p[3 * n : 6 * n], g_c, a, n)  # ∂/∂k_v = conj(G̅_c × A + G̅_m A_m + G̅_d A)
        for out, gg, aa in zip(_xyz(p[3 * n : 6 * n], n), g_m, a):
            out.addcmul_(gg, am).addcmul_(g_d, aa)
        d = p[6 * n :]  # ∂/∂q_m = conj(Σ_x G̅_m,x K_x)
        torch.mul(g_m[0], k[0], out=d)
        d.addcmul_(g_m[1], k[1]).addcmul_(g_m[2], k[2])
        outs = [_rows(dsv, ch), _rows(dkv, ch), _rows(dsm, ch)]
        _store(buf.irfft(p.conj_physical_()), outs, plan, True, [False, True, False])
    return dss, dks, dsm, dsv, dkv


def _backward(gs, gc, gm, gd, ss, ks, sm, sv, kv, plan: ConvPlan, chunk: int):
    """The adjoint convolutions in plain differentiable ops (the double-backward path, training on forces).

    Same maths as :func:`_fast_backward`, one stream at a time.
    """
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
    chunk: int | None = None,
    keep_spectra: bool = True,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The four geometric convolutions, channel-first (see the module doc for shapes and maths).

    Inputs must be zero on padding (beyond ``lengths[b]``). ``support``: the filters ``ks``,
    ``kv`` are taken as zero beyond ±support lags of each system's centre (linear mode only).
    Computed in float32 at least (float64 stays float64); outputs in the inputs' dtype.
    ``chunk``: scalar channels per transform batch (``chunk // 4`` vector channels); None: all
    channels at once when the buffers stay below ``SMALL_ELEMENTS`` elements, else ``DEFAULT_CHUNK``.
    ``keep_spectra``: when gradients are recorded, keep the inputs' spectra for the backward pass
    (``(2F + 7C) (nfft/2 + 1)`` complex numbers per system) instead of recomputing them there.
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
    plan = _cached_plan(lengths, length, circular, support, ss.device)
    if chunk is None:
        small = (3 * ss.shape[1] + 14 * c) * b * plan.nfft <= SMALL_ELEMENTS
        chunk = max(ss.shape[1], 4 * c) if small else DEFAULT_CHUNK
    from hyenamd.surrogate.geometric_conv_autograd import _GeometricConvs, _GeometricConvsFunctorch

    inputs = (ss.to(dt), ks.to(dt), sm.to(dt), sv.to(dt), kv.to(dt))
    with torch.autocast(ss.device.type, enabled=False):
        if any(torch._C._functorch.is_functorch_wrapped_tensor(x) for x in inputs):  # under vmap
            outs = _GeometricConvsFunctorch.apply(*inputs, plan, int(chunk))
        else:
            outs = _GeometricConvs.apply(*inputs, plan, int(chunk), bool(keep_spectra))
    out_dt = torch.promote_types(ss.dtype, kv.dtype)
    return tuple(o.to(out_dt) for o in outs)
