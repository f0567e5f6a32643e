"""Geometric long convolutions along the canonical atom order, by FFT, with O(N²) oracles.

Layout. A batch of ``B`` systems is processed as padded sequences ``[B, L, ...]`` (``L`` = the
longest system, zeros beyond each system's ``lengths[b]``); :func:`to_sequences` and
:func:`from_sequences` convert from and to the per-atom layout ``[n_atoms, ...]`` using the
``Batch.order`` convention. Trailing dims are channels (scalars ``[B, L, C]``) or channels and
Cartesian components (vectors ``[B, L, C, 3]``).

Convolution (non-causal, centred), in one of two modes. For one system of length ``n`` with
centre ``c = n // 2``, the second argument ``b`` is read as a filter over lags ``ℓ = m - c``
(its token ``m`` is lag ``m - c``), so

    (a ⊛ b)_i = Σ_j a_j b̃_(i-j),   b̃_ℓ = b_(ℓ+c),   i, j ∈ [0, n).

* ``circular=False`` (linear, zero-padded): ``b̃_ℓ = 0`` outside ``[-c, n-1-c]``; output ``i``
  sees inputs ``j ∈ [i+c-n+1, i+c]``, a window of ``n`` tokens centred on ``i`` (the two ends
  of a chain never couple; token 0 of 5 sees tokens 0–2).
* ``circular=True`` (the papers' length-``n`` circular convolution, SE(3)-Hyena Code 1): lags
  are taken modulo ``n``, ``b̃_ℓ = b_((ℓ+c) mod n)``, so every output sees every token of its
  own system (never another system of the batch).

The four products:

=========================  =============================  ===========================
function                   per term                       type of the result
=========================  =============================  ===========================
``scalar_conv``            ``a_j b̃_(i-j)`` per channel      scalar (scalar ⊛ scalar)
``cross_conv``             ``a_j × b̃_(i-j)``                pseudovector (vector ⊛× vector)
``scalar_vector_conv``     ``a_j b̃_(i-j)`` (a scalar)       vector (scalar ⊛ vector)
``dot_conv``               ``a_j · b̃_(i-j)``                scalar (vector ⊛· vector)
``long_conv``              ``a_j h_(i-j)``, h over lags     any (a fixed filter ``h``)
=========================  =============================  ===========================

FFT path: zero-pad both to ``F`` = the smallest ``2^a 3^b 5^c ≥ 2L`` (so the circular product
is the linear one: no wrap-around between the ends), real FFTs, products in frequency space,
one inverse FFT per output component, then read the full linear convolution ``y`` at ``i + c_b`` (each system its own centre; rows
of the batch never mix). The circular mode folds the same ``y`` (length ``2n - 1`` per system,
``F ≥ 2n``): ``out_i = y_k + y_(k+n)`` with ``k = (i + c_b) mod n``, so batched systems of
different lengths share one transform size and still each wrap at their own ``n``. The cross convolution is the
Levi-Civita decomposition ``(a ⊛× b)_x = a_y ⊛ b_z - a_z ⊛ b_y`` (cyclic): 6 products of
transforms, 3 inverse FFTs. FFTs run in the input's dtype, float32 at least (autocast is
switched off inside). Every fast function has a ``direct_*`` O(N²) twin used as test oracle.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "cross_conv",
    "direct_cross_conv",
    "direct_dot_conv",
    "direct_long_conv",
    "direct_scalar_conv",
    "direct_scalar_vector_conv",
    "dot_conv",
    "fast_fft_size",
    "from_sequences",
    "geometric_long_convs",
    "lengths_from_ptr",
    "long_conv",
    "pad_tokens",
    "scalar_conv",
    "scalar_vector_conv",
    "sequence_mask",
    "to_sequences",
    "unpad_tokens",
]


# ----------------------------------------------------------------------------- layout helpers
def lengths_from_ptr(ptr: Tensor) -> Tensor:
    """Atoms per system ``[B]`` int64 from the batch offsets ``ptr`` ``[B+1]``."""
    return (ptr[1:] - ptr[:-1]).to(torch.int64)


def sequence_mask(lengths: Tensor, length: int) -> Tensor:
    """``[B, length]`` bool, True on real tokens (``i < lengths[b]``)."""
    return torch.arange(length, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


def _scatter_index(ptr: Tensor) -> tuple[Tensor, Tensor, int]:
    lengths = lengths_from_ptr(ptr)
    n = int(ptr[-1])
    sys_idx = torch.repeat_interleave(
        torch.arange(lengths.numel(), device=ptr.device), lengths, output_size=n
    )
    pos = torch.arange(n, device=ptr.device) - ptr[:-1][sys_idx]
    return sys_idx, pos, int(lengths.max()) if lengths.numel() else 0


def pad_tokens(x: Tensor, ptr: Tensor) -> Tensor:
    """Tokens already in canonical order, system by system ``[N, ...]`` -> padded ``[B, L, ...]`` (zeros)."""
    if ptr.numel() == 2:
        return x.unsqueeze(0)
    sys_idx, pos, lmax = _scatter_index(ptr)
    return x.new_zeros((ptr.numel() - 1, lmax, *x.shape[1:])).index_put((sys_idx, pos), x)


def unpad_tokens(seq: Tensor, ptr: Tensor) -> Tensor:
    """Inverse of :func:`pad_tokens`: ``[B, L, ...] -> [N, ...]`` (padding dropped)."""
    if ptr.numel() == 2:
        return seq[0, : int(ptr[-1])]
    sys_idx, pos, _ = _scatter_index(ptr)
    return seq[sys_idx, pos]


def to_sequences(x: Tensor, order: Tensor, ptr: Tensor) -> tuple[Tensor, Tensor]:
    """Per-atom features ``[N, ...]`` to padded sequences ``([B, L, ...], mask [B, L])``.

    ``seq[b, i] = x[order[ptr[b] + i]]`` (``order`` holds global atom indices, system by
    system, as ``Batch.order``); padding is zero. Differentiable in ``x``.
    """
    if x.shape[0] != order.shape[0] or int(ptr[-1]) != order.shape[0]:
        raise ValueError(
            f"to_sequences: x has {x.shape[0]} atoms, order {order.shape[0]}, ptr[-1] {int(ptr[-1])}"
        )
    seq = pad_tokens(x[order], ptr)
    return seq, sequence_mask(lengths_from_ptr(ptr), seq.shape[1])


def from_sequences(seq: Tensor, order: Tensor, ptr: Tensor) -> Tensor:
    """Inverse of :func:`to_sequences`: ``[B, L, ...] -> [N, ...]`` (padding dropped)."""
    vals = unpad_tokens(seq, ptr)
    return torch.empty_like(vals).index_put((order,), vals)


# ----------------------------------------------------------------------------- FFT machinery
def fast_fft_size(n: int) -> int:
    """Smallest ``2^a 3^b 5^c ≥ n`` (``n ≥ 1``): sizes pocketfft/cuFFT handle fastest."""
    if n <= 1:
        return 1
    best = 1 << (n - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def _check(a: Tensor, b: Tensor, lengths: Tensor | None, a_extra: int, b_extra: int) -> Tensor:
    if a.ndim < 2 or b.ndim < 2 or a.shape[:2] != b.shape[:2]:
        raise ValueError(f"conv: a {tuple(a.shape)} and b {tuple(b.shape)} must share [B, L]")
    if (a_extra and a.shape[-1] != 3) or (b_extra and b.shape[-1] != 3):
        raise ValueError(
            f"conv: vector arguments need a last dim of 3, got {tuple(a.shape)}, {tuple(b.shape)}"
        )
    if lengths is None:
        return torch.full((a.shape[0],), a.shape[1], dtype=torch.int64, device=a.device)
    lengths = torch.as_tensor(lengths, dtype=torch.int64, device=a.device)
    if lengths.shape != (a.shape[0],) or bool((lengths > a.shape[1]).any()) or bool((lengths < 0).any()):
        raise ValueError(f"conv: lengths {lengths.tolist()} do not fit sequences of length {a.shape[1]}")
    return lengths


def _compute_dtype(*xs: Tensor) -> torch.dtype:
    dt = torch.promote_types(xs[0].dtype, xs[-1].dtype)
    return torch.float64 if dt == torch.float64 else torch.float32


def _rfft(x: Tensor, nfft: int, dtype: torch.dtype) -> Tensor:
    return torch.fft.rfft(x.to(dtype), n=nfft, dim=1)


def _finish(
    full: Tensor, lengths: Tensor, length: int, out_dtype: torch.dtype, dim: int = 1, circular: bool = False
) -> Tensor:
    """Read the full linear convolution ``full`` ``[B, F, ...]`` at ``i + c_b`` and mask padding.

    ``circular``: fold it instead, ``out_i = y_k + y_(k+n_b)`` with ``k = (i + c_b) mod n_b``
    (needs ``F ≥ 2 n_b``). ``dim``: the sequence axis of ``full`` (1, or -1 for the
    channel-first layout); the result always has the sequence on axis 1.
    """
    if dim != 1:
        full = full.movedim(dim, 1)
    b = full.shape[0]
    centre = torch.div(lengths, 2, rounding_mode="floor")
    tok = torch.arange(length, device=full.device).unsqueeze(0)
    mask = sequence_mask(lengths, length)
    if b == 1 and bool(mask.all()):  # one unpadded system: slices only
        c = int(centre[0])
        if not circular:
            return full[:, c : c + length].to(out_dtype)
        if full.shape[1] < 2 * length:
            raise ValueError(f"circular fold needs F >= 2n, got F={full.shape[1]}, n={length}")
        y = full[:, :length] + full[:, length : 2 * length]  # the length-n circular convolution
        return torch.cat([y[:, c:], y[:, :c]], dim=1).to(out_dtype)
    view = (b, length, *([1] * (full.ndim - 2)))
    if circular:
        if full.shape[1] < 2 * length:
            raise ValueError(f"circular fold needs F >= 2n, got F={full.shape[1]}, n={length}")
        n_b = lengths.clamp_min(1).unsqueeze(1)
        k = torch.remainder(tok + centre.unsqueeze(1), n_b)  # [B, L]
        idx0 = k.view(view).expand(b, length, *full.shape[2:])
        idx1 = (k + n_b).clamp_max(full.shape[1] - 1).view(view).expand(b, length, *full.shape[2:])
        out = torch.gather(full, 1, idx0) + torch.gather(full, 1, idx1)
    else:
        idx = (tok + centre.unsqueeze(1)).clamp_max(full.shape[1] - 1)  # [B, L] < 2L-1 ≤ F
        out = torch.gather(full, 1, idx.view(view).expand(b, length, *full.shape[2:]))
    out = out * mask.view(view).to(out.dtype)
    return out.to(out_dtype)


def _masked(x: Tensor, lengths: Tensor) -> Tensor:
    """Zero the padding of ``x`` ``[B, L, ...]`` (a no-op copy-free path when nothing is padded)."""
    if bool((lengths == x.shape[1]).all()):
        return x
    return x * sequence_mask(lengths, x.shape[1]).view(*x.shape[:2], *([1] * (x.ndim - 2))).to(x.dtype)


def _spectra(a: Tensor, b: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, int, torch.dtype]:
    nfft = fast_fft_size(2 * a.shape[1])
    dt = _compute_dtype(a, b)
    return _rfft(_masked(a, lengths), nfft, dt), _rfft(_masked(b, lengths), nfft, dt), nfft, dt


def scalar_conv(a: Tensor, b: Tensor, lengths: Tensor | None = None, *, circular: bool = False) -> Tensor:
    """``(a ⊛ b)_i = Σ_j a_j b̃_(i-j)`` per channel. a, b: ``[B, L, ...]`` (same shape). Out: like a."""
    lengths = _check(a, b, lengths, 0, 0)
    with torch.autocast(a.device.type, enabled=False):
        fa, fb, nfft, _ = _spectra(a, b, lengths)
        full = torch.fft.irfft(fa * fb, n=nfft, dim=1)
        return _finish(full, lengths, a.shape[1], torch.promote_types(a.dtype, b.dtype), circular=circular)


def scalar_vector_conv(
    a: Tensor, b: Tensor, lengths: Tensor | None = None, *, circular: bool = False
) -> Tensor:
    """``Σ_j a_j b̃_(i-j)`` with a scalar a ``[B, L, C]`` and vector b ``[B, L, C, 3]`` -> vector ``[B, L, C, 3]``."""
    lengths = _check(a.unsqueeze(-1), b, lengths, 0, 1)
    with torch.autocast(a.device.type, enabled=False):
        fa, fb, nfft, _ = _spectra(a, b, lengths)
        full = torch.fft.irfft(fa.unsqueeze(-1) * fb, n=nfft, dim=1)
        return _finish(full, lengths, a.shape[1], torch.promote_types(a.dtype, b.dtype), circular=circular)


def dot_conv(a: Tensor, b: Tensor, lengths: Tensor | None = None, *, circular: bool = False) -> Tensor:
    """``Σ_j a_j · b̃_(i-j)``: vectors a, b ``[B, L, C, 3]`` -> scalars ``[B, L, C]`` (3 products, 1 inverse FFT)."""
    lengths = _check(a, b, lengths, 1, 1)
    with torch.autocast(a.device.type, enabled=False):
        fa, fb, nfft, _ = _spectra(a, b, lengths)
        prod = fa[..., 0] * fb[..., 0] + fa[..., 1] * fb[..., 1] + fa[..., 2] * fb[..., 2]
        full = torch.fft.irfft(prod, n=nfft, dim=1)
        return _finish(full, lengths, a.shape[1], torch.promote_types(a.dtype, b.dtype), circular=circular)


def cross_conv(a: Tensor, b: Tensor, lengths: Tensor | None = None, *, circular: bool = False) -> Tensor:
    """``Σ_j a_j × b̃_(i-j)``: vectors ``[B, L, C, 3]`` -> pseudovectors ``[B, L, C, 3]``.

    Levi-Civita decomposition: ``(a ⊛× b)_k = Σ ε_kxy a_x ⊛ b_y`` has six non-zero terms, each a
    product of two transforms (6 products, 3 inverse FFTs; the 3 diagonal terms vanish).
    """
    lengths = _check(a, b, lengths, 1, 1)
    with torch.autocast(a.device.type, enabled=False):
        fa, fb, nfft, _ = _spectra(a, b, lengths)
        ax, ay, az = fa.unbind(-1)
        bx, by, bz = fb.unbind(-1)
        prod = torch.stack([ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx], dim=-1)
        full = torch.fft.irfft(prod, n=nfft, dim=1)
        return _finish(full, lengths, a.shape[1], torch.promote_types(a.dtype, b.dtype), circular=circular)


def long_conv(a: Tensor, h: Tensor, lengths: Tensor | None = None) -> Tensor:
    """Convolution with a fixed filter over lags: ``Σ_j a_j h_(i-j)``, ``|i - j| ≤ K``, j in the system.

    a: ``[B, L, C]``; h: ``[2K+1, C]`` the filter at lags ``-K..K`` (shared by all systems).
    Used by the non-equivariant Hyena baseline. FFT length ``≥ L + K + 1`` rounded up to a fast size.
    """
    lengths = _check(a, a, lengths, 0, 0)
    if h.ndim != 2 or h.shape[0] % 2 != 1 or h.shape[1] != a.shape[-1]:
        raise ValueError(f"long_conv: h must be [2K+1, C={a.shape[-1]}], got {tuple(h.shape)}")
    k = h.shape[0] // 2
    length = a.shape[1]
    with torch.autocast(a.device.type, enabled=False):
        nfft = fast_fft_size(max(2 * length, length + k + 1))
        dt = _compute_dtype(a, h)
        hk = h[max(k - (length - 1), 0) : k + length]  # lags beyond ±(L-1) never act
        kk = hk.shape[0] // 2
        buf = h.new_zeros(nfft, h.shape[1], dtype=dt)
        buf[: kk + 1] = hk[kk:].to(dt)  # lags 0..K at the front
        if kk:
            buf[nfft - kk :] = hk[:kk].to(dt)  # lags -K..-1 wrap to the end
        fa = _rfft(_masked(a, lengths), nfft, dt)
        fh = torch.fft.rfft(buf, dim=0).unsqueeze(0)
        out = torch.fft.irfft(fa * fh, n=nfft, dim=1)[:, :length]
        out = out * sequence_mask(lengths, length).unsqueeze(-1).to(out.dtype)
        return out.to(torch.promote_types(a.dtype, h.dtype))


def geometric_long_convs(
    q_s: Tensor,
    k_s: Tensor,
    q_m: Tensor,
    q_v: Tensor,
    k_v: Tensor,
    lengths: Tensor | None = None,
    *,
    circular: bool = False,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The four convolutions of a G-Hyena block at once, sharing transforms.

    q_s, k_s: scalars ``[B, L, F]``; q_m: scalars ``[B, L, C]``; q_v, k_v: vectors ``[B, L, C, 3]``.
    Returns ``(q_s ⊛ k_s [B, L, F], q_v ⊛× k_v [B, L, C, 3] (pseudovector), q_m ⊛ k_v [B, L, C, 3],
    q_v ⊛· k_v [B, L, C])`` — the same as :func:`scalar_conv`, :func:`cross_conv`,
    :func:`scalar_vector_conv`, :func:`dot_conv` called separately, but with 2 forward real FFTs
    (signals and filters, channel-first so the transforms run on contiguous rows) and 1 inverse.
    ``circular``: the length-n circular convolution of each system (see the module doc).
    """
    b_, length, f = q_s.shape
    c = q_v.shape[2]
    if (
        k_s.shape != q_s.shape
        or q_m.shape != (b_, length, c)
        or q_v.shape != (b_, length, c, 3)
        or k_v.shape != q_v.shape
    ):
        raise ValueError(
            f"geometric_long_convs: shapes q_s {tuple(q_s.shape)}, k_s {tuple(k_s.shape)}, q_m {tuple(q_m.shape)}, "
            f"q_v {tuple(q_v.shape)}, k_v {tuple(k_v.shape)} do not match [B, L, F] / [B, L, C] / [B, L, C, 3]"
        )
    lengths = _check(q_s, k_s, lengths, 0, 0)
    out_dtype = torch.promote_types(q_s.dtype, k_v.dtype)
    with torch.autocast(q_s.device.type, enabled=False):
        dt = _compute_dtype(q_s, k_v)
        nfft = fast_fft_size(2 * length)
        sig = torch.cat([q_s.transpose(1, 2), q_m.transpose(1, 2), q_v.flatten(2).transpose(1, 2)], dim=1)
        fil = torch.cat([k_s.transpose(1, 2), k_v.flatten(2).transpose(1, 2)], dim=1)
        mask = None if bool((lengths == length).all()) else sequence_mask(lengths, length).unsqueeze(1)
        if mask is not None:
            sig, fil = sig * mask.to(sig.dtype), fil * mask.to(fil.dtype)
        fs = torch.fft.rfft(sig.to(dt), n=nfft, dim=-1)  # [B, F + 4C, nf]
        del sig  # (without autograd these free memory early: peak ~ transforms + products)
        fk = torch.fft.rfft(fil.to(dt), n=nfft, dim=-1)  # [B, F + 3C, nf]
        del fil
        nf = fs.shape[-1]
        ss, sm, sv = fs[:, :f], fs[:, f : f + c], fs[:, f + c :].view(b_, c, 3, nf)
        ks, kv = fk[:, :f], fk[:, f:].view(b_, c, 3, nf)
        ax, ay, az = sv.unbind(2)
        bx, by, bz = kv.unbind(2)
        prod = torch.cat(
            [
                ss * ks,  # scalar ⊛ scalar
                ay * bz - az * by,  # cross, x  (Levi-Civita: 6 products)
                az * bx - ax * bz,  # cross, y
                ax * by - ay * bx,  # cross, z
                (sm.unsqueeze(2) * kv).flatten(1, 2),  # scalar ⊛ vector
                ax * bx + ay * by + az * bz,  # vector ⊛· vector
            ],
            dim=1,
        )
        del fs, fk, ss, sm, sv, ks, kv, ax, ay, az, bx, by, bz
        full = torch.fft.irfft(prod, n=nfft, dim=-1)  # [B, F + 7C, nfft]
        del prod
        out = _finish(full, lengths, length, out_dtype, dim=-1, circular=circular)  # [B, L, F + 7C]
        del full
    z_s = out[..., :f]
    cross = out[..., f : f + 3 * c].unflatten(-1, (3, c)).transpose(-1, -2)
    z_m = out[..., f + 3 * c : f + 6 * c].unflatten(-1, (c, 3))
    z_d = out[..., f + 6 * c :]
    return z_s, cross, z_m, z_d


# ----------------------------------------------------------------------------- O(N²) oracles
def _toeplitz(n: int, device: torch.device, circular: bool = False) -> tuple[Tensor, Tensor]:
    """Index ``m = i - j + c`` of ``b`` used by output i, input j (mod n if circular), and where it is valid."""
    i = torch.arange(n, device=device)
    m = i.unsqueeze(1) - i.unsqueeze(0) + n // 2
    if circular:
        m = torch.remainder(m, max(n, 1))
    valid = (m >= 0) & (m < n)
    return m.clamp(0, max(n - 1, 0)), valid


def _direct(a: Tensor, b: Tensor, lengths: Tensor | None, term, circular: bool) -> Tensor:
    lengths = _check(a if a.ndim == b.ndim else a.unsqueeze(-1), b, lengths, 0, 0)
    out = None
    rows = []
    for s in range(a.shape[0]):
        n = int(lengths[s])
        m, valid = _toeplitz(n, a.device, circular)
        bm = b[s, :n][m] * valid.view(n, n, *([1] * (b.ndim - 2))).to(b.dtype)  # [i, j, ...] = b̃_(i-j)
        res = term(a[s, :n], bm)  # [n, ...]
        rows.append((n, res))
    shape = rows[0][1].shape[1:] if rows else a.shape[2:]
    out = a.new_zeros((a.shape[0], a.shape[1], *shape), dtype=torch.promote_types(a.dtype, b.dtype))
    for s, (n, res) in enumerate(rows):
        out[s, :n] = res
    return out


def direct_scalar_conv(
    a: Tensor, b: Tensor, lengths: Tensor | None = None, *, circular: bool = False
) -> Tensor:
    """O(N²) oracle of :func:`scalar_conv`."""
    return _direct(a, b, lengths, lambda x, bm: torch.einsum("j...,ij...->i...", x, bm), circular)


def direct_scalar_vector_conv(
    a: Tensor, b: Tensor, lengths: Tensor | None = None, *, circular: bool = False
) -> Tensor:
    """O(N²) oracle of :func:`scalar_vector_conv`."""
    return _direct(a, b, lengths, lambda x, bm: torch.einsum("jc,ijcx->icx", x, bm), circular)


def direct_dot_conv(a: Tensor, b: Tensor, lengths: Tensor | None = None, *, circular: bool = False) -> Tensor:
    """O(N²) oracle of :func:`dot_conv`."""
    return _direct(a, b, lengths, lambda x, bm: torch.einsum("jcx,ijcx->ic", x, bm), circular)


def direct_cross_conv(
    a: Tensor, b: Tensor, lengths: Tensor | None = None, *, circular: bool = False
) -> Tensor:
    """O(N²) oracle of :func:`cross_conv`: materialises every ``a_j × b̃_(i-j)``."""
    return _direct(
        a,
        b,
        lengths,
        lambda x, bm: torch.linalg.cross(x.unsqueeze(0).expand_as(bm), bm, dim=-1).sum(1),
        circular,
    )


def direct_long_conv(a: Tensor, h: Tensor, lengths: Tensor | None = None) -> Tensor:
    """O(N²) oracle of :func:`long_conv`: ``out_i = Σ_j a_j h_(i-j)`` by an explicit double loop index."""
    lengths = _check(a, a, lengths, 0, 0)
    k = h.shape[0] // 2
    out = a.new_zeros(a.shape, dtype=torch.promote_types(a.dtype, h.dtype))
    for s in range(a.shape[0]):
        n = int(lengths[s])
        i = torch.arange(n, device=a.device)
        lag = i.unsqueeze(1) - i.unsqueeze(0)  # [i, j]
        valid = lag.abs() <= k
        hm = h[(lag + k).clamp(0, 2 * k)] * valid.unsqueeze(-1).to(h.dtype)  # [i, j, C]
        out[s, :n] = torch.einsum("jc,ijc->ic", a[s, :n], hm)
    return out
