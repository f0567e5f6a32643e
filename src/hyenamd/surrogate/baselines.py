"""Baselines for accuracy and speed comparisons with the G-Hyena global block.

* :class:`EquivariantAttentionBlock`: the SE(3)-Hyena paper's equivariant vector
  self-attention, O(N²), in the same block structure and interface as
  :class:`~hyenamd.surrogate.global_block.GlobalBlock` (``forward(s, v, order, ptr)``).
  In: true scalars ``[N, F]``, true vectors ``[N, C, 3]``; out: the same (O(3)-equivariant,
  reflections included: the attention weights are invariant, values are vectors/scalars).
* :class:`EquivariantTransformer`: a tiny potential (species embedding → attention blocks →
  per-atom energies) for the paper tasks; follows the potential protocol (``cutoff = 0``).
* :class:`HyenaBlock` (ordinary, non-equivariant Hyena on flattened features) and
  :class:`TransformerBlock` (plain softmax attention on flattened features): same interface,
  NOT equivariant; baselines for issue 9.

Equivariant attention. Vector channels split into H heads of ``d = C/H`` channels each:

    C_ij = q_i × k_j  (per channel, pseudovectors),   ℓ_ij = ‖C_ij‖_F / √d,   A = softmax_j(ℓ_ij)

(the paper writes ``softmax(‖C_ij‖/√N)`` with N its feature width; we scale by the head's channel
count, like 1/√d_k in a transformer). ``‖C_ij‖_F² = Σ_c |q_ic|²|k_jc|² - (q_ic·k_jc)²`` (Lagrange's
identity) is one matmul of 10·d features, so neither mode materialises the ``[N, N, d, 3]``
cross products; ``mode="naive"`` materialises the ``[B, H, L, L]`` weights (O(N²) memory),
``mode="chunked"`` loops over query chunks (O(N·chunk) memory, also when training: each chunk's
weights are recomputed in the backward pass); both compute the same function.
Values: ``o_s = A u_s`` (scalars, F split over heads), ``o_v = A u_v`` (vectors).
Update: ``s₁ = s + σ(G_s ŝ) ⊙ O_s[o_s, |o_v|]``, ``v₁ = v + σ(G_v ŝ) ⊙ O_v o_v``, then the
equivariant gated MLP, as in the global block.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from hyenamd.surrogate.equivariant import GatedEquivariantMLP, ScalarMLP, VectorLinear, vector_norm
from hyenamd.surrogate.fftconv import from_sequences, lengths_from_ptr, long_conv, to_sequences
from hyenamd.surrogate.filters import ImplicitFilter
from hyenamd.surrogate.global_block import vector_rms_norm

__all__ = [
    "EquivariantAttentionBlock",
    "EquivariantTransformer",
    "HyenaBlock",
    "TransformerBlock",
    "cross_gram_features",
    "cross_norm_logits",
    "equivariant_attention",
]


def cross_gram_features(q: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
    """Features with ``A_i · B_j = Σ_c |q_ic × k_jc|²``: q, k ``[..., L, d, 3]`` -> ``[..., L, 10 d]``."""
    qq = torch.einsum("...cx,...cy->...cxy", q, q).flatten(-3)
    kk = torch.einsum("...cx,...cy->...cxy", k, k).flatten(-3)
    a = torch.cat([q.pow(2).sum(-1), -qq], dim=-1)
    b = torch.cat([k.pow(2).sum(-1), kk], dim=-1)
    return a, b


def cross_norm_logits(a: Tensor, b: Tensor, d: int, eps: float = 1e-4) -> Tensor:
    """``‖q_i × k_j‖_F / √d`` ``[..., Lq, Lk]`` from Gram features (smooth at 0: ``sqrt(x + eps²) - eps``)."""
    sq = (a @ b.transpose(-1, -2)).clamp_min(0.0)
    return (torch.sqrt(sq + eps * eps) - eps) / math.sqrt(d)


def _attend(fa: Tensor, fb: Tensor, u_s: Tensor, uv: Tensor, bias: Tensor, d: int) -> tuple[Tensor, Tensor]:
    """One block of queries: softmax weights ``[B, H, q, L]`` applied to the values."""
    w = torch.softmax(cross_norm_logits(fa, fb, d) + bias, dim=-1)
    return w @ u_s, w @ uv


def equivariant_attention(
    q: Tensor, k: Tensor, u_s: Tensor, u_v: Tensor, key_mask: Tensor, *, chunk: int | None = None
) -> tuple[Tensor, Tensor]:
    """Equivariant vector self-attention on padded sequences.

    q, k: ``[B, H, L, d, 3]`` vectors; u_s: ``[B, H, L, f]`` scalars; u_v: ``[B, H, L, d, 3]``
    vectors; key_mask: ``[B, L]`` True on real tokens. Returns ``(o_s [B, H, L, f], o_v [B, H, L, d, 3])``.
    ``chunk=None``: all queries at once (``[B, H, L, L]`` weights); else query chunks of that size.
    """
    b_, _, length, d, _ = q.shape
    fa, fb = cross_gram_features(q, k)
    bias = torch.zeros(b_, 1, 1, length, dtype=q.dtype, device=q.device).masked_fill(
        ~key_mask.view(b_, 1, 1, length), float("-inf")
    )
    uv = u_v.flatten(-2)
    step = length if chunk is None else max(int(chunk), 1)
    # chunked + autograd: recompute each chunk's weights in the backward pass (activation
    # checkpointing), so training memory stays O(N·chunk) too instead of saving all N² weights
    remat = chunk is not None and torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, u_s, u_v))
    outs_s, outs_v = [], []
    for i0 in range(0, length, step):
        args = (fa[:, :, i0 : i0 + step], fb, u_s, uv, bias, d)
        o_s, o_v = checkpoint(_attend, *args, use_reentrant=False) if remat else _attend(*args)
        outs_s.append(o_s)
        outs_v.append(o_v)
    o_s = torch.cat(outs_s, dim=2)
    o_v = torch.cat(outs_v, dim=2).unflatten(-1, (d, 3))
    return o_s, o_v


class EquivariantAttentionBlock(nn.Module):
    """Equivariant vector self-attention block (baseline). Same I/O types and call as ``GlobalBlock``.

    mode: ``"naive"`` (O(N²) memory) or ``"chunked"`` (query chunks of ``chunk_size``).
    n_heads must divide both n_scalar and n_vector.
    """

    def __init__(
        self,
        n_scalar: int,
        n_vector: int,
        *,
        n_heads: int = 1,
        mode: str = "naive",
        chunk_size: int = 512,
        mlp_hidden: int | None = None,
    ) -> None:
        super().__init__()
        if mode not in ("naive", "chunked"):
            raise ValueError(f"EquivariantAttentionBlock mode must be 'naive' or 'chunked', got {mode!r}")
        if n_scalar < 1 or n_vector < 1 or n_scalar % n_heads or n_vector % n_heads:
            raise ValueError(
                f"n_heads={n_heads} must divide n_scalar={n_scalar} and n_vector={n_vector} (both ≥ 1)"
            )
        f, c = n_scalar, n_vector
        self.n_scalar, self.n_vector, self.n_heads = f, c, n_heads
        self.mode, self.chunk_size = mode, chunk_size
        self.norm_s = nn.LayerNorm(f)
        self.proj_s = nn.Linear(f, f)
        self.proj_v = VectorLinear(c, 3 * c)
        self.gate = nn.Linear(f, f + c)
        self.out_s = nn.Linear(f + c, f)
        self.out_v = VectorLinear(c, c)
        self.mlp = GatedEquivariantMLP(f, c, mlp_hidden)

    def forward(self, s: Tensor, v: Tensor, order: Tensor, ptr: Tensor) -> tuple[Tensor, Tensor]:
        f, c, h = self.n_scalar, self.n_vector, self.n_heads
        if s.shape[1:] != (f,) or v.shape[1:] != (c, 3) or v.shape[0] != s.shape[0]:
            raise ValueError(
                f"EquivariantAttentionBlock(F={f}, C={c}) got s {tuple(s.shape)}, v {tuple(v.shape)}"
            )
        sn = self.norm_s(s)
        pv = self.proj_v(vector_rms_norm(v))
        per_atom = torch.cat([self.proj_s(sn), pv.flatten(1)], dim=1)  # one gather to sequences
        seq, mask = to_sequences(per_atom, order, ptr)
        b_, length = seq.shape[:2]
        u_s = seq[..., :f].view(b_, length, h, f // h).transpose(1, 2)
        vec = seq[..., f:].view(b_, length, 3, h, c // h, 3).permute(2, 0, 3, 1, 4, 5)  # [3, B, H, L, d, 3]
        chunk = None if self.mode == "naive" else self.chunk_size
        o_s, o_v = equivariant_attention(vec[0], vec[1], u_s, vec[2], mask, chunk=chunk)
        o_s = o_s.transpose(1, 2).reshape(b_, length, f)
        o_v = o_v.permute(0, 2, 1, 3, 4).reshape(b_, length, c, 3)
        o_s, o_v = from_sequences(o_s, order, ptr), from_sequences(o_v, order, ptr)
        g = torch.sigmoid(self.gate(sn))
        ds = g[:, :f] * self.out_s(torch.cat([o_s, vector_norm(o_v)], dim=-1))
        dv = g[:, f:].unsqueeze(-1) * self.out_v(o_v)
        return self.mlp(s + ds, v + dv)


class EquivariantTransformer(nn.Module):
    """Tiny equivariant-attention potential: species embedding → attention blocks → per-atom energies.

    Vectors start from positions centred per system (translation invariant, rotation/reflection
    equivariant), so it suits open systems (the paper tasks), not periodic ones. Follows the
    potential protocol: ``forward(batch)`` → ``{"energy" [B] eV, "energies" [N] eV}``; ``cutoff = 0``
    (no neighbour list). Cost O(N²).
    """

    def __init__(
        self,
        n_scalar: int = 32,
        n_vector: int = 8,
        n_blocks: int = 2,
        *,
        n_heads: int = 1,
        mode: str = "chunked",
        chunk_size: int = 512,
        max_z: int = 118,
    ) -> None:
        super().__init__()
        self.cutoff = 0.0
        self.embed = nn.Embedding(max_z + 1, n_scalar)
        self.vec_in = VectorLinear(1, n_vector)
        self.blocks = nn.ModuleList(
            EquivariantAttentionBlock(n_scalar, n_vector, n_heads=n_heads, mode=mode, chunk_size=chunk_size)
            for _ in range(n_blocks)
        )
        self.head = ScalarMLP(n_scalar, n_scalar, 1)

    def forward(self, batch, neighbors=None) -> dict[str, Tensor]:
        x = batch.positions
        n_sys = batch.n_systems
        counts = batch.counts.to(x.dtype).clamp_min(1).unsqueeze(1)
        centre = torch.zeros(n_sys, 3, dtype=x.dtype, device=x.device).index_add(0, batch.batch, x) / counts
        s = self.embed(batch.species).to(x.dtype)
        v = self.vec_in((x - centre[batch.batch]).unsqueeze(1))
        order = batch.order if batch.order is not None else torch.arange(x.shape[0], device=x.device)
        for blk in self.blocks:
            s, v = blk(s, v, order, batch.ptr)
        energies = self.head(s).squeeze(-1)
        energy = torch.zeros(n_sys, dtype=x.dtype, device=x.device).index_add(0, batch.batch, energies)
        return {"energy": energy, "energies": energies}


def _flatten(s: Tensor, v: Tensor) -> Tensor:
    return torch.cat([s, v.flatten(1)], dim=1)


def _unflatten(x: Tensor, f: int, c: int) -> tuple[Tensor, Tensor]:
    return x[:, :f], x[:, f:].reshape(-1, c, 3)


class HyenaBlock(nn.Module):
    """Ordinary (non-equivariant) Hyena, order 2, on flattened features ``x = [s, vec(v)]`` (D = F + 3C).

    ``y = x₂ ⊙ (h ⊛ (x₁ ⊙ u))`` with ``x₁, x₂, u`` linear projections of ``LN(x)`` and ``h`` the
    implicit filter over lags ``-K..K`` (non-causal, L1-normalised over all its lags, so it does
    not depend on the system size; ``efolds`` sets that range, ``K = efolds · w_cap``, and the
    cost of evaluating the filter); then an output projection, residual, and an MLP with residual.
    NOT equivariant (it mixes Cartesian components as features): a baseline only.
    """

    def __init__(
        self,
        n_scalar: int,
        n_vector: int,
        *,
        filter_order: int = 16,
        w_init: float = 64.0,
        w_cap: float = 256.0,
        efolds: float = 30.0,
    ) -> None:
        super().__init__()
        self.n_scalar, self.n_vector = n_scalar, n_vector
        d = n_scalar + 3 * n_vector
        self.norm = nn.LayerNorm(d)
        self.proj = nn.Linear(d, 3 * d)
        self.filter = ImplicitFilter(
            d, order=filter_order, w_min=1.0, w_init=w_init, w_cap=w_cap, efolds=efolds
        )
        self.out = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d)
        self.mlp = ScalarMLP(d, 2 * d, d)

    def forward(self, s: Tensor, v: Tensor, order: Tensor, ptr: Tensor) -> tuple[Tensor, Tensor]:
        x = _flatten(s, v)
        x1, x2, u = self.proj(self.norm(x)).chunk(3, dim=-1)
        seq, _ = to_sequences(x1 * u, order, ptr)
        k = min(self.filter.k_max, max(seq.shape[1] - 1, 0))
        h = self.filter(torch.arange(-self.filter.k_max, self.filter.k_max + 1, device=x.device)).to(x.dtype)
        h = h / (h.abs().sum(0) + 1e-12)  # L1 over all lags: independent of the system size
        h = h[self.filter.k_max - k : self.filter.k_max + k + 1]
        y = x2 * from_sequences(long_conv(seq, h, lengths_from_ptr(ptr)), order, ptr)
        x = x + self.out(y)
        x = x + self.mlp(self.norm2(x))
        return _unflatten(x, self.n_scalar, self.n_vector)


class TransformerBlock(nn.Module):
    """Plain pre-norm softmax self-attention + MLP on flattened features ``[s, vec(v)]``, per system.

    NOT equivariant: a baseline only. ``n_heads`` must divide ``F + 3C``.
    """

    def __init__(self, n_scalar: int, n_vector: int, *, n_heads: int = 1) -> None:
        super().__init__()
        d = n_scalar + 3 * n_vector
        if d % n_heads:
            raise ValueError(f"n_heads={n_heads} must divide F + 3C = {d}")
        self.n_scalar, self.n_vector, self.n_heads = n_scalar, n_vector, n_heads
        self.norm = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d)
        self.mlp = ScalarMLP(d, 2 * d, d)

    def forward(self, s: Tensor, v: Tensor, order: Tensor, ptr: Tensor) -> tuple[Tensor, Tensor]:
        x = _flatten(s, v)
        seq, mask = to_sequences(self.qkv(self.norm(x)), order, ptr)
        b_, length, _ = seq.shape
        q, k, u = (t.view(b_, length, self.n_heads, -1).transpose(1, 2) for t in seq.chunk(3, dim=-1))
        bias = torch.zeros(b_, 1, 1, length, dtype=x.dtype, device=x.device).masked_fill(
            ~mask.view(b_, 1, 1, length), float("-inf")
        )
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]) + bias, dim=-1)
        y = (att @ u).transpose(1, 2).reshape(b_, length, -1)
        x = x + self.out(from_sequences(y, order, ptr))
        x = x + self.mlp(self.norm2(x))
        return _unflatten(x, self.n_scalar, self.n_vector)
