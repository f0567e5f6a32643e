"""Small-system geometric long convolutions by cached DFT matrices (two matmuls, plain autograd).

Same maths as :func:`hyenamd.surrogate.geometric_conv.geometric_convs_cf` (and the ``direct_*``
O(N²) oracles of :mod:`hyenamd.surrogate.fftconv`) for **one unpadded system** of ``n`` tokens,
token-major:

==========  ======================  ==========================================
input       shape                   role
==========  ======================  ==========================================
q_s, k_s    ``[n, F]``              scalar signal and filter
q_m         ``[n, C]``              scalar signal of the mixed convolution
q_v, k_v    ``[n, C, 3]``           vector signal and filter
==========  ======================  ==========================================

Outputs ``z_s = q_s ⊛ k_s`` ``[n, F]``, ``p = q_v ⊛× k_v`` ``[n, C, 3]`` (pseudovector),
``z_m = q_m ⊛ k_v`` ``[n, C, 3]``, ``z_d = q_v ⊛· k_v`` ``[n, C]``; ``(a ⊛ b)_i = Σ_j a_j b_(i-j+c)``
with ``c = n // 2`` (mod ``n`` when ``circular``; zero outside ``[0, n)`` otherwise).

Why. For a 108-atom system a block's convolutions cost ~0.3 ms of real work but the batched
FFT kernels (transform buffers, row views, slice reads, a hand-written adjoint) dispatch ~270
small torch ops per block (forward + backward), ~1 ms at ~4 µs each. Here a transform is a
matrix product with a DFT matrix cached per size:

    S = Xᵀ Φ            Φ [n, 2m]: Φ[t, 2f] = cos(2π f t / N), Φ[t, 2f + 1] = -sin(2π f t / N)
    Y = products of the spectra (complex, as in the FFT path; cross product per frequency)
    z = Re-irfft(Y) read at (i + c) mod N  =  view_as_real(Y) Ψ,   Ψ [2m, n] (weights 1/N, 2/N)

with ``N = n`` (circular) or ``N = 2n - 1`` (linear: no wrap-around), ``m = N // 2 + 1``
frequencies. All five inputs go through one matmul and all four outputs come out of one; the
backward pass is autograd's (two matmuls with the transposed matrices and the products'
rules), so double backward (training on forces) and ``torch.func`` need nothing extra.
Cost O(n² (2F + 7C)) multiply-adds: cheaper than the FFT path's dispatch below
:data:`MAX_TOKENS` tokens (measured in ``benchmarks/small_step.py``; see BENCHMARKS.md).
Accuracy: a direct DFT sums n terms per frequency, so its rounding grows ~ sqrt(n) ε instead
of ~ log(n) ε: float64 agrees with the oracles to 1e-12, float32 with the FFT path to ~1e-6
relative at n ≈ 100.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["MAX_TOKENS", "dft_geometric_convs", "dft_matrices", "use_dft"]

#: one unpadded system of at most this many tokens uses the DFT matrices (0: never); the
#: global blocks check it per call, so it may be changed at run time
MAX_TOKENS = 256

_MATRICES: dict[tuple, tuple[Tensor, Tensor]] = {}
_MATRICES_MAX = 8


def use_dft(n_systems: int, n_tokens: int) -> bool:
    """Whether a batch of ``n_systems`` systems, ``n_tokens`` tokens in all, takes this path."""
    return n_systems == 1 and 0 < n_tokens <= MAX_TOKENS


def dft_matrices(n: int, circular: bool, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
    """The forward ``Φ`` ``[n, 2m]`` and inverse-and-read ``Ψ`` ``[2m, n]`` matrices (see module doc).

    Built in float64 from exact integer phases (``f t mod N``), then cast; cached per
    (n, mode, dtype, device). They are constants: no parameter or input enters them.
    """
    key = (n, bool(circular), dtype, str(device))
    hit = _MATRICES.get(key)
    if hit is not None:
        return hit
    big = n if circular else 2 * n - 1
    m = big // 2 + 1
    f = torch.arange(m, dtype=torch.int64)
    t = torch.arange(n, dtype=torch.int64)
    ang = (2 * math.pi / big) * torch.remainder(t.unsqueeze(1) * f.unsqueeze(0), big).double()  # [n, m]
    fwd = torch.stack([torch.cos(ang), -torch.sin(ang)], dim=-1).reshape(n, 2 * m)
    # inverse real DFT at N, read at (i + c) mod N: weight 1/N for f = 0 (and f = N/2), else 2/N
    read = torch.remainder(t + n // 2, big)  # [n]
    ang_i = (2 * math.pi / big) * torch.remainder(f.unsqueeze(1) * read.unsqueeze(0), big).double()  # [m, n]
    w = torch.full((m, 1), 2.0 / big, dtype=torch.float64)
    w[0] = 1.0 / big
    sin_i = torch.sin(ang_i)
    sin_i[0] = 0.0
    if big % 2 == 0:
        w[-1] = 1.0 / big
        sin_i[-1] = 0.0  # Nyquist: the imaginary part does not enter a real signal
    inv = torch.stack([w * torch.cos(ang_i), -w * sin_i], dim=1).reshape(2 * m, n)
    out = (fwd.to(device=device, dtype=dtype), inv.to(device=device, dtype=dtype))
    if len(_MATRICES) >= _MATRICES_MAX:
        _MATRICES.pop(next(iter(_MATRICES)))
    _MATRICES[key] = out
    return out


def dft_geometric_convs(
    q_s: Tensor,
    k_s: Tensor,
    q_m: Tensor,
    q_v: Tensor,
    k_v: Tensor,
    *,
    circular: bool,
    support: int | None = None,
    real_products: bool | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The four convolutions of one system (shapes in the module doc), differentiable by autograd.

    ``support`` (linear mode): the filters are taken as zero beyond ±support lags of the centre,
    as in :func:`~hyenamd.surrogate.geometric_conv.geometric_convs_cf`. Computed in float32 at
    least; outputs in the inputs' promoted dtype, as non-contiguous views.
    ``real_products``: multiply the spectra as (re, im) pairs of real tensors
    (:func:`_real_products`, the same sums) instead of complex tensors; None: only under
    ``torch.compile``, whose inductor generates no code for complex ops (eagerly the complex
    products dispatch fewer ops).
    """
    n, f = q_s.shape
    c = q_m.shape[1]
    if k_s.shape != (n, f) or q_m.shape != (n, c) or q_v.shape != (n, c, 3) or k_v.shape != (n, c, 3):
        raise ValueError(
            f"dft_geometric_convs: shapes {tuple(q_s.shape)}, {tuple(k_s.shape)}, {tuple(q_m.shape)}, "
            f"{tuple(q_v.shape)}, {tuple(k_v.shape)} do not match [n, F] / [n, C] / [n, C, 3]"
        )
    out_dt = torch.promote_types(q_s.dtype, k_v.dtype)
    dt = torch.float64 if out_dt == torch.float64 else torch.float32
    if not circular and support is not None and support < n // 2 + 1:
        lag = torch.arange(n, device=q_s.device) - n // 2
        keep = (lag.abs() <= support).to(k_s.dtype).unsqueeze(1)
        k_s, k_v = k_s * keep, k_v * keep.unsqueeze(-1)
    fwd, inv = dft_matrices(n, circular, dt, q_s.device)
    m = fwd.shape[1] // 2
    x = torch.cat([q_s, k_s, q_m, q_v.flatten(1), k_v.flatten(1)], dim=1).to(dt)  # [n, 2F + 7C]
    if real_products is None:
        real_products = torch.compiler.is_compiling()
    if real_products:
        prod = _real_products((x.T @ fwd).view(-1, m, 2), f, c)  # [F + 7C, m, 2]
    else:
        spec = torch.view_as_complex((x.T @ fwd).view(-1, m, 2))  # [2F + 7C, m], channel-first
        ss, ks, sm, sv, kv = torch.split(spec, [f, f, c, 3 * c, 3 * c])
        sv, kv = sv.view(c, 3, m), kv.view(c, 3, m)
        prod = torch.view_as_real(
            torch.cat(
                [
                    ss * ks,  # scalar ⊛ scalar
                    torch.linalg.cross(sv, kv, dim=1).flatten(0, 1),  # vector ⊛× vector
                    (sm.unsqueeze(1) * kv).flatten(0, 1),  # scalar ⊛ vector
                    (sv * kv).sum(1),  # vector ⊛· vector
                ]
            )
        )  # [F + 7C, m, 2]
    out = (prod.reshape(-1, 2 * m) @ inv).to(out_dt)  # [F + 7C, n]
    z_s, cross, z_m, z_d = torch.split(out, [f, 3 * c, 3 * c, c])
    return z_s.T, cross.view(c, 3, n).permute(2, 0, 1), z_m.view(c, 3, n).permute(2, 0, 1), z_d.T


def _cmul(a: Tensor, b: Tensor) -> Tensor:
    """Complex product of (re, im) pairs on the last axis ``[..., 2]``."""
    ar, ai = a.unbind(-1)
    br, bi = b.unbind(-1)
    return torch.stack([ar * br - ai * bi, ar * bi + ai * br], dim=-1)


def _real_products(spec: Tensor, f: int, c: int) -> Tensor:
    """The spectra products of :func:`dft_geometric_convs` on (re, im) pairs: ``[2F + 7C, m, 2]``
    (rows q_s | k_s | q_m | q_v | k_v) -> ``[F + 7C, m, 2]`` (rows z_s | p | z_m | z_d)."""
    m = spec.shape[1]
    ss, ks, sm, sv, kv = torch.split(spec, [f, f, c, 3 * c, 3 * c])
    sv, kv = sv.view(c, 3, m, 2), kv.view(c, 3, m, 2)
    (ax, ay, az), (bx, by, bz) = sv.unbind(1), kv.unbind(1)
    cross = torch.stack(
        [_cmul(ay, bz) - _cmul(az, by), _cmul(az, bx) - _cmul(ax, bz), _cmul(ax, by) - _cmul(ay, bx)], dim=1
    )  # [C, 3, m, 2]
    return torch.cat(
        [
            _cmul(ss, ks),  # scalar ⊛ scalar
            cross.flatten(0, 1),  # vector ⊛× vector
            _cmul(sm.unsqueeze(1), kv).flatten(0, 1),  # scalar ⊛ vector
            _cmul(sv, kv).sum(1),  # vector ⊛· vector
        ]
    )
