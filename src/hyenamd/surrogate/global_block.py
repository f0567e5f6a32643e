"""The G-Hyena global block: geometric long convolutions along the canonical order, O(N log N).

Symmetry types. In: true scalars ``s`` ``[N, F]`` and true vectors ``v`` ``[N, C, 3]``. Out: the
same. Inside, the cross convolution makes pseudovectors ``p``; they leave only through
``p × vector`` (a vector) and the smooth norm ``⟨p⟩ = sqrt(|p|² + ε²) - ε`` (a scalar, learned
ε per channel), so the block is O(3)-equivariant, reflections included.

Forward pass (per system, tokens in canonical order; ``⊛`` = centred non-causal convolution of
:mod:`hyenamd.surrogate.fftconv`; ``h̃`` = L1-normalised implicit filter laid on the tokens):

=================================================  ==========================================
step                                               equation
=================================================  ==========================================
pre-norm                                           ``ŝ = LN(s)``, ``v̂ = g ⊙ v / sqrt(mean_c|v_c|² + ε²)``
projections (scalar Linear, vector no bias)        ``q_s, k_s, u_s, q_m = W_s ŝ + b``; ``q_v, k_v, u_v = W_v v̂``
keys become filters                                ``κ_s = h̃_s ⊙ k_s``, ``κ_v = h̃_v ⊙ k_v``
scalar long conv  (F)                              ``z_s = q_s ⊛ κ_s``
cross long conv   (C, pseudovector)                ``p   = q_v ⊛× κ_v``
mixed long convs  (C)                              ``z_m = q_m ⊛ κ_v`` (vector), ``z_d = q_v ⊛· κ_v`` (scalar)
value integration, scalars                         ``a = [u_s ⊙ z_s, z_d, ⟨p⟩, z_m · u_v]``
value integration, vectors                         ``w = [p × u_v, z_m, z_d ⊙ u_v]``
gates, output projection, residual                 ``s₁ = s + σ(G_s ŝ) ⊙ O_s a``, ``v₁ = v + σ(G_v ŝ) ⊙ O_v w``
equivariant gated MLP (its own residual)           ``s₂, v₂ = GatedEquivariantMLP(s₁, v₁)``
=================================================  ==========================================

``ε = NORM_EPS_INIT`` (1e-3): an equivariant RMS norm at the vectors' own scale with a learned
gain ``g`` ``[C]`` (init 1). The output projections ``O_s``, ``O_v`` start at zero (the residual
branch starts at 0; the gated MLP's last layer too).

All maths live in :func:`global_block_forward` (pure) and the FFT kernels; the module holds
parameters only. :mod:`hyenamd.surrogate.reference_global` re-implements the same pass with
the direct O(N²) sums as the test oracle.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from hyenamd.surrogate.channel_first import (
    cross_cf,
    from_channel_first,
    gated_mlp_cf,
    inverse_permutation,
    linear_cf,
    pad_channel_first,
    to_channel_first,
    token_slots,
    unpad_channel_first,
    vector_linear_cf,
    vector_norm_cf,
    vector_rms_norm_cf,
)
from hyenamd.surrogate.dft_conv import dft_geometric_convs, use_dft
from hyenamd.surrogate.equivariant import NORM_EPS_INIT, GatedEquivariantMLP, SmoothNorm, VectorLinear
from hyenamd.surrogate.fftconv import lengths_from_ptr
from hyenamd.surrogate.filters import ImplicitFilter, filter_on_tokens
from hyenamd.surrogate.geometric_conv import geometric_convs_cf

__all__ = ["ConvKind", "GlobalBlock", "global_block_forward", "vector_rms_norm"]

ConvKind = Literal["linear", "circular"]


def vector_rms_norm(v: Tensor, eps: float = 1.0, gain: Tensor | None = None) -> Tensor:
    """``g ⊙ v / sqrt(mean_c |v_c|² + eps²)`` per atom: ``[N, C, 3]``, equivariant (the norm is invariant).

    ``gain`` ``[C]`` (None: 1). The map is smooth (C∞) for any ``eps > 0``: below ``eps`` it is
    the linear ``v / eps``, so a vector that vanishes by symmetry leaves no kink. ``eps = 1``
    (the equivariant-transformer baseline) leaves small vectors almost unchanged; the global
    block uses ``eps`` at the features' own scale (``NORM_EPS_INIT``), so they come out O(1).
    """
    out = v / torch.sqrt(v.pow(2).sum(-1).mean(-1, keepdim=True) + eps * eps).unsqueeze(-1)
    return out if gain is None else out * gain.unsqueeze(-1)


def _split_projections(block: GlobalBlock, s: Tensor, v: Tensor) -> dict[str, Tensor]:
    """Pre-norm and the q/k/u projections of both streams (per atom; shared with the reference)."""
    f, c = block.n_scalar, block.n_vector
    sn = block.norm_s(s)
    ps = block.proj_s(sn)
    pv = block.proj_v(vector_rms_norm(v, block.prenorm_eps, block.prenorm_gain))
    # torch.split: one backward node that concatenates the pieces' gradients (slices would
    # each scatter into a zero tensor of the whole projection)
    q_s, k_s, u_s, q_m = torch.split(ps, [f, f, f, c], dim=1)
    q_v, k_v, u_v = torch.split(pv, [c, c, c], dim=1)
    return {"sn": sn, "q_s": q_s, "k_s": k_s, "u_s": u_s, "q_m": q_m, "q_v": q_v, "k_v": k_v, "u_v": u_v}


def _integrate(
    block: GlobalBlock, p: dict[str, Tensor], z_s: Tensor, cross: Tensor, z_m: Tensor, z_d: Tensor
):
    """Value integration, gates and output projections (per atom; shared with the reference).

    z_s ``[N, F]`` scalar; cross ``[N, C, 3]`` pseudovector; z_m ``[N, C, 3]`` vector; z_d ``[N, C]`` scalar.
    Returns the residual updates ``(ds [N, F], dv [N, C, 3])``.
    """
    u_v = p["u_v"]
    a = torch.cat([p["u_s"] * z_s, z_d, block.pnorm(cross), (z_m * u_v).sum(-1)], dim=-1)  # true scalars
    w = torch.cat(
        [torch.linalg.cross(cross, u_v, dim=-1), z_m, z_d.unsqueeze(-1) * u_v], dim=1
    )  # true vectors
    g_s, g_v = torch.split(torch.sigmoid(block.gate(p["sn"])), [block.n_scalar, block.n_vector], dim=1)
    ds = g_s * block.out_s(a)
    dv = g_v.unsqueeze(-1) * block.out_v(w)
    return ds, dv


#: entries per block of the no-gradient filter cache (lag ranges / token layouts of a few sizes)
_FILTER_CACHE_MAX = 4


def _weights_cached(block: GlobalBlock, tag: tuple, fn):
    """``fn()`` (a function of the implicit filter's weights only), cached when no gradient can
    flow to the weights.

    Without parameter gradients (inference switches the parameters' requires_grad off,
    :func:`hyenamd.surrogate.forces.compute_forces`) the value is computed once per (``tag``,
    weights version): the key holds each weight's storage pointer and version counter, which
    every in-place update (optimiser step, ``load_state_dict``) bumps, and ``.to()`` replaces.
    A few tags are kept per block (oldest dropped first).
    """
    # the live parameters (never a cached list): under torch.func.functional_call they are the
    # swapped-in (possibly vmap-stacked) tensors, which must not hit a cache keyed on others
    params = list(block.filter.parameters())
    grad = torch.is_grad_enabled() and any(p.requires_grad for p in params)
    # weights stacked over committee members under torch.func.vmap have no storage to key on
    stacked = any(torch._C._functorch.is_functorch_wrapped_tensor(p) for p in params)
    if grad or stacked:
        return fn()
    key = tuple((p.data_ptr(), p._version) for p in params)
    cache = block.__dict__.setdefault("_filter_cache", {})
    hit = cache.get(tag)
    if hit is not None and hit[0] == key:
        return hit[1]
    with torch.no_grad():
        value = fn()
    cache.pop(tag, None)
    if len(cache) >= _FILTER_CACHE_MAX:
        cache.pop(next(iter(cache)))
    cache[tag] = (key, value)
    return value


def _filter_values(block: GlobalBlock, lo: int, hi: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """The implicit filter at lags ``lo..hi`` ``[M, F + C]``, cached when no gradient can flow to it
    (per lags, dtype and weights version; see :func:`_weights_cached`)."""
    return _weights_cached(
        block,
        ("values", lo, hi, str(device), dtype),
        lambda: block.filter.on_lags(lo, hi, device).to(dtype),
    )


def _token_filter(
    block: GlobalBlock, n: int, device: torch.device, dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    """One unpadded system's normalised filter on its ``n`` tokens, split into the scalar part
    ``[n, F]`` and the vector part ``[n, C, 1]`` (:func:`filter_on_tokens`); cached as
    :func:`_filter_values` is (per size, dtype and weights version)."""

    def make() -> tuple[Tensor, Tensor]:
        lo, hi = block.filter.lag_range(n)
        lengths = torch.tensor([n], device=device)
        h = filter_on_tokens(_filter_values(block, lo, hi, device, dtype), lo, lengths, n)[0]
        return h[:, : block.n_scalar], h[:, block.n_scalar :].unsqueeze(-1)

    return _weights_cached(block, ("tokens", n, str(device), dtype), make)


def _small_convs(block: GlobalBlock, p: dict[str, Tensor], n: int) -> tuple[Tensor, ...]:
    """The four convolutions of one unpadded system of ``n`` tokens by DFT matrices
    (:mod:`hyenamd.surrogate.dft_conv`); same maths as the FFT path of :func:`global_block_forward`."""
    return dft_convs(block, p, *_token_filter(block, n, p["q_s"].device, p["q_s"].dtype))


def dft_convs(block: GlobalBlock, p: dict[str, Tensor], h_s: Tensor, h_v: Tensor) -> tuple[Tensor, ...]:
    """:func:`_small_convs` with the token filter given (``h_s`` ``[n, F]``, ``h_v`` ``[n, C, 1]``;
    the compiled path passes it in, :mod:`hyenamd.surrogate.compiled`)."""
    circular = block.conv == "circular"
    return dft_geometric_convs(
        p["q_s"],
        h_s * p["k_s"],
        p["q_m"],
        p["q_v"],
        h_v * p["k_v"],
        circular=circular,
        support=None if circular else block.filter.k_max,
    )


#: the filter laid on the tokens is cached up to this many numbers (``B·L·(F + C)``): 4 MiB of
#: float32. Larger ones are laid out per call (a few passes over ``[F + C, B, L]``, < 1 % of the
#: block's time at 10⁵ atoms) rather than kept resident: at 10⁶ atoms a cached copy per block
#: is 160 B/atom at preset S (the lean regime's whole budget is 6 kB/atom)
_TOKEN_FILTER_CACHE_MAX = 1 << 20


def _filter_channel_first(block: GlobalBlock, ptr: Tensor, length: int, device, dtype) -> Tensor:
    """The normalised filter on the padded tokens, channel-first ``[F + C, B, L]`` (cached as
    :func:`_filter_values` is, per batch layout, when small: :data:`_TOKEN_FILTER_CACHE_MAX`)."""

    def make() -> Tensor:
        lo, hi = block.filter.lag_range(length)
        h = filter_on_tokens(_filter_values(block, lo, hi, device, dtype), lo, lengths_from_ptr(ptr), length)
        return h.permute(2, 0, 1).contiguous()

    if (ptr.numel() - 1) * length * (block.n_scalar + block.n_vector) > _TOKEN_FILTER_CACHE_MAX:
        return make()
    layout = (length,) if ptr.numel() == 2 else tuple(ptr.tolist())
    return _weights_cached(block, ("channel_first", layout, str(device), dtype), make)


def _convs_channel_first(
    block: GlobalBlock, q_s: Tensor, k_s: Tensor, q_m: Tensor, q_v: Tensor, k_v: Tensor, ptr: Tensor
) -> tuple[Tensor, ...]:
    """The four convolutions on channel-first tokens: ``q_s, k_s`` ``[F, N]``, ``q_m`` ``[C, N]``,
    ``q_v, k_v`` ``[C, 3, N]`` in, ``z_s`` ``[F, N]``, ``p, z_m`` ``[C, 3, N]``, ``z_d`` ``[C, N]``
    out (the filter on the tokens lives only in here: not through the value integration)."""
    f = block.n_scalar
    lengths = lengths_from_ptr(ptr)
    length, n_systems = int(lengths.max()), lengths.numel()
    slots = token_slots(ptr, length)  # where each token sits in the padded layout (None: one system)
    # keys become data-controlled filters, modulated by the implicit positional filter
    h = _filter_channel_first(block, ptr, length, q_s.device, q_s.dtype)  # [F + C, B, L]

    def conv_in(x: Tensor, filt: Tensor | None = None) -> Tensor:  # [.., N] -> the kernels' [B, .., L]
        x = pad_channel_first(x, slots, n_systems, length)
        return (x if filt is None else filt * x).movedim(-2, 0)

    circular = block.conv == "circular"
    convs = geometric_convs_cf(
        conv_in(q_s),
        conv_in(k_s, h[:f]),
        conv_in(q_m),
        conv_in(q_v),
        conv_in(k_v, h[f:].unsqueeze(1)),
        lengths,
        circular=circular,
        support=None if circular else block.filter.k_max,
    )
    return tuple(unpad_channel_first(z.movedim(0, -2), slots) for z in convs)


def _fft_block_forward(block: GlobalBlock, s: Tensor, v: Tensor, order: Tensor, ptr: Tensor):
    """The block on the FFT kernels, channel-first (:mod:`hyenamd.surrogate.channel_first`):
    vectors ``[C, 3, N]`` from entry to exit, scalars in token rows ``[N, F]``, the convolutions'
    inputs and outputs ``[F, N]`` / ``[C, 3, N]`` (``[.., B, L]`` padded for several systems).
    Same maths as :func:`_split_projections`, :func:`_integrate` and :func:`block_tail`.

    Split in functions so each phase's temporaries are freed before the next starts (the
    projections, convolutions and value integration before the gated MLP): the peak of a
    forward without gradients (the lean regime's) is that of one phase.
    """
    s1, v1 = _global_update_cf(block, s, v, order, ptr)
    s2, v2 = gated_mlp_cf(block.mlp, s1, v1)
    del s1, v1
    inv = inverse_permutation(order)
    s_out = s2.index_select(0, inv)
    del s2
    return s_out, from_channel_first(v2, inv)


def _global_update_cf(block: GlobalBlock, s: Tensor, v: Tensor, order: Tensor, ptr: Tensor):
    """Tokens in, projections, convolutions, value integration, gates and residual: ``s₁`` ``[N, F]``
    (token rows) and ``v₁`` ``[C, 3, N]`` (see :func:`_fft_block_forward`)."""
    f, c = block.n_scalar, block.n_vector
    s_t = s.index_select(0, order)  # [N, F] tokens
    v_c = to_channel_first(v, order)  # [C, 3, N] tokens
    sn = block.norm_s(s_t)
    q_s, k_s, u_s, q_m = torch.split(linear_cf(sn, block.proj_s.weight, block.proj_s.bias), [f, f, f, c])
    v_hat = vector_rms_norm_cf(v_c, block.prenorm_eps, block.prenorm_gain)
    q_v, k_v, u_v = torch.split(vector_linear_cf(v_hat, block.proj_v.weight), [c, c, c])
    del v_hat
    convs = _convs_channel_first(block, q_s, k_s, q_m, q_v, k_v, ptr)
    return _integrate_cf(block, s_t, v_c, sn, u_s, u_v, *convs)


def _integrate_cf(
    block: GlobalBlock,
    s_t: Tensor,
    v_c: Tensor,
    sn: Tensor,
    u_s: Tensor,
    u_v: Tensor,
    z_s: Tensor,
    cross: Tensor,
    z_m: Tensor,
    z_d: Tensor,
) -> tuple[Tensor, Tensor]:
    """:func:`_integrate` and the residual, channel-first: true scalars ``a`` ``[F + 3C, N]``, then
    true vectors ``w`` ``[3C, 3, N]`` (one at a time); returns ``s₁`` ``[N, F]``, ``v₁`` ``[C, 3, N]``."""
    f = block.n_scalar
    gw, gb = block.gate.weight, block.gate.bias
    a = torch.cat([u_s * z_s, z_d, vector_norm_cf(cross, block.pnorm.eps()), (z_m * u_v).sum(1)])
    g_s = torch.sigmoid(torch.addmm(gb[:f], sn, gw[:f].T))  # [N, F]
    s1 = torch.addcmul(s_t, g_s, torch.addmm(block.out_s.bias, a.T, block.out_s.weight.T))
    del a, g_s
    w = torch.cat([cross_cf(cross, u_v), z_m, z_d.unsqueeze(1) * u_v])
    g_v = torch.sigmoid(linear_cf(sn, gw[f:], gb[f:]))  # [C, N]
    return s1, torch.addcmul(v_c, g_v.unsqueeze(1), vector_linear_cf(w, block.out_v.weight))


def global_block_forward(
    block: GlobalBlock, s: Tensor, v: Tensor, order: Tensor, ptr: Tensor
) -> tuple[Tensor, Tensor]:
    """The fast (FFT) forward pass of :class:`GlobalBlock`; see the module docstring for the maths.

    Atoms are permuted into canonical order once on the way in and back once on the way out.
    The FFT kernels run channel-first (:func:`_fft_block_forward`). One system of at most
    :data:`hyenamd.surrogate.dft_conv.MAX_TOKENS` tokens takes the DFT-matrix convolutions in
    token layout instead (same maths, fewer ops; not under ``torch.func`` transforms, whose
    committee path keeps the FFT kernels' vmap rule).
    """
    if not use_dft(ptr.shape[0] - 1, s.shape[0]) or torch._C._functorch.is_functorch_wrapped_tensor(s):
        return _fft_block_forward(block, s, v, order, ptr)
    s_t, v_t = s[order], v[order]  # tokens
    p = _split_projections(block, s_t, v_t)
    return block_tail(block, s_t, v_t, p, _small_convs(block, p, s.shape[0]), order)  # DFT matrices


def block_tail(
    block: GlobalBlock,
    s_t: Tensor,
    v_t: Tensor,
    p: dict[str, Tensor],
    convs: tuple[Tensor, ...],
    order: Tensor,
) -> tuple[Tensor, Tensor]:
    """Everything after the convolutions (per token): value integration, gates, residual, gated
    MLP, and the permutation back to atom order. ``s_t`` ``[N, F]``, ``v_t`` ``[N, C, 3]``: the
    block's inputs in token order; ``p``: :func:`_split_projections` of them."""
    ds, dv = _integrate(block, p, *convs)
    s_o, v_o = block.mlp(s_t + ds, v_t + dv)
    return torch.empty_like(s_o).index_put((order,), s_o), torch.empty_like(v_o).index_put((order,), v_o)


class GlobalBlock(nn.Module):
    """G-Hyena operator block. In/out: scalars ``[N, F]``, vectors ``[N, C, 3]`` (true types).

    ``forward(s, v, order, ptr)``: ``order`` ``[N]`` global canonical order (``Batch.order``
    convention), ``ptr`` ``[B+1]`` system offsets. Cost O(N log N) time, O(N) memory.

    filter_order: hidden width of the implicit filter's sine MLP; filter_depth, filter_bands,
    w_min, w_init, w_cap: see :class:`hyenamd.surrogate.filters.ImplicitFilter` (lengths in
    tokens); mlp_hidden: width of the gated equivariant MLP (default F); conv: "circular" (each
    system's length-n circular convolution, every token sees every token) or "linear"
    (zero-padded, chain ends do not couple); see :mod:`hyenamd.surrogate.fftconv`.
    """

    def __init__(
        self,
        n_scalar: int,
        n_vector: int,
        *,
        filter_order: int = 16,
        filter_depth: int = 2,
        filter_bands: int = 8,
        w_min: float = 2.0,
        w_init: float = 512.0,
        w_cap: float = 2048.0,
        mlp_hidden: int | None = None,
        conv: ConvKind = "circular",
    ) -> None:
        super().__init__()
        if conv not in ("linear", "circular"):
            raise ValueError(f"conv must be 'linear' or 'circular', got {conv!r}")
        self.conv = conv
        if n_scalar < 1 or n_vector < 1:
            raise ValueError(f"GlobalBlock needs n_scalar >= 1 and n_vector >= 1, got {n_scalar}, {n_vector}")
        f, c = n_scalar, n_vector
        self.n_scalar, self.n_vector = f, c
        self.norm_s = nn.LayerNorm(f)
        self.prenorm_eps = NORM_EPS_INIT
        self.prenorm_gain = nn.Parameter(torch.ones(c))
        self.proj_s = nn.Linear(f, 3 * f + c)
        self.proj_v = VectorLinear(c, 3 * c)
        self.filter = ImplicitFilter(
            f + c,
            order=filter_order,
            depth=filter_depth,
            n_bands=filter_bands,
            w_min=w_min,
            w_init=w_init,
            w_cap=w_cap,
        )
        self.gate = nn.Linear(f, f + c)
        self.pnorm = SmoothNorm(c)
        self.out_s = nn.Linear(f + 3 * c, f)
        self.out_v = VectorLinear(3 * c, c)
        for w in (self.out_s.weight, self.out_s.bias, self.out_v.weight):  # residual branch starts at 0
            nn.init.zeros_(w)
        self.mlp = GatedEquivariantMLP(f, c, mlp_hidden)

    def forward(self, s: Tensor, v: Tensor, order: Tensor, ptr: Tensor) -> tuple[Tensor, Tensor]:
        n = s.shape[0]
        if s.shape != (n, self.n_scalar) or v.shape != (n, self.n_vector, 3):
            raise ValueError(
                f"GlobalBlock(F={self.n_scalar}, C={self.n_vector}) got s {tuple(s.shape)}, v {tuple(v.shape)}"
            )
        if order.shape != (n,) or ptr.ndim != 1 or int(ptr[-1]) != n:
            raise ValueError(
                f"GlobalBlock: order {tuple(order.shape)} / ptr[-1]={int(ptr[-1])} do not match {n} atoms"
            )
        return global_block_forward(self, s, v, order, ptr)

    def extra_repr(self) -> str:
        return f"n_scalar={self.n_scalar}, n_vector={self.n_vector}, conv={self.conv!r}"
