"""Hyena's implicit positional filter, measured in tokens: ``PositionalEmbedding → MLP(sin) → ExponentialModulation``.

The filter is a function of the integer lag ``ℓ`` (tokens along the canonical order) only, one
value per channel:

    h_c(ℓ) = MLP_c(z(ℓ)) · exp(-α_c |ℓ|),       z(ℓ) = [ℓ/K, sin(ω_k ℓ), cos(ω_k ℓ)]_k,

with sine activations ``sin(f ⊙ (W x + b))`` (learned frequencies ``f``, Hyena's ``Sin``), band
frequencies ``ω_k`` geometric from π/2 to π/(2 w_cap) rad/token, and decay rates
``α_c = 1/w_cap + exp(ρ_c)`` (learned ``ρ``) so every e-folding length ``1/α_c`` stays below
``w_cap`` tokens. Beyond ``|ℓ| > K = ⌈efolds · w_cap⌉`` the filter is exactly zero (there
``exp(-α|ℓ|) < e^-efolds ≈ 1e-13`` anyway).

Why tokens, not fractions of the sequence (as Hyena does): the same lag then means the same
spatial scale (a Hilbert-curve window of atoms) for 10 or 10⁷ atoms, so a model trained on
small systems transfers to large ones, and the effective window is bounded.

Normalisation: each system divides ``h`` by its L1 mass over the lags it actually has
(:func:`filter_on_tokens`), so ``Σ_ℓ |h̃_c(ℓ)| = 1``: a convolution with ``h̃`` is a weighted
mean and activations stay O(1) from N = 10 to 10⁷ (correlated inputs keep their scale,
uncorrelated ones shrink by at most ~1/√w_cap).

The maths are pure functions; :class:`ImplicitFilter` only holds the parameters.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor, nn

__all__ = [
    "ImplicitFilter",
    "exponential_modulation",
    "filter_on_tokens",
    "implicit_filter",
    "positional_embedding",
    "sine_mlp",
]


def positional_embedding(lags: Tensor, n_bands: int, k_max: int, w_cap: float) -> Tensor:
    """``z(ℓ)`` ``[M, 1 + 2 n_bands]`` for integer lags ``[M]``: ``[ℓ/K, sin(ω_k ℓ), cos(ω_k ℓ)]``.

    ``ω_k`` (rad/token) runs geometrically from π/2 (period 4 tokens) to π/(2 w_cap).
    """
    t = lags.unsqueeze(-1)
    if n_bands > 1:
        omega = (math.pi / 2) * torch.logspace(
            0.0, -math.log10(w_cap), n_bands, dtype=t.dtype, device=t.device
        )
    else:
        omega = torch.full((n_bands,), math.pi / 2, dtype=t.dtype, device=t.device)
    return torch.cat([t / max(k_max, 1), torch.sin(omega * t), torch.cos(omega * t)], dim=-1)


def sine_mlp(z: Tensor, weights: list[Tensor], biases: list[Tensor], freqs: list[Tensor]) -> Tensor:
    """``Linear → Sin → ... → Linear``: hidden layers ``sin(f ⊙ (W x + b))``, last layer linear.

    z ``[M, D]``; returns ``[M, C]`` laid out channel-major (a transposed view of ``[C, M]``): the
    per-channel window and normalisation that follow, and the channel-first global block that
    reads the filter, then run on contiguous rows, forward and backward (mixed layouts made the
    filter's backward 3× slower at 16 384 lags, 80 channels).
    """
    x = z
    for w, b, f in zip(weights[:-1], biases[:-1], freqs):
        x = torch.sin(f * (x @ w.T + b))
    return torch.addmm(biases[-1].unsqueeze(1), weights[-1], x.T).T


#: ``exp`` arguments below this are taken as 0: ``exp(-87) = 1.6e-38`` is the last normal float32
#: the window needs; CPU ``exp`` takes a ~30× slower path for arguments whose result is
#: subnormal (-103.9 < x < -87.3) and ~10× for ones that underflow to 0 (measured)
_EXP_FLOOR = -87.0


def exponential_modulation(h: Tensor, lags: Tensor, rates: Tensor) -> Tensor:
    """``h_c(ℓ) exp(-α_c |ℓ|)``; h ``[M, C]``, lags ``[M]``, rates α ``[C]`` (1/token).

    The window is exactly 0 where ``α|ℓ| > 87`` (its value there is below 1.7e-38): the same
    filter to within 1.7e-38 absolute, at a third of the forward cost on long sequences (a
    16 384-lag, 80-channel filter: 14.5 → 8.8 ms), because ``exp`` never sees those arguments.
    """
    x = (rates.unsqueeze(1) * -lags.abs().unsqueeze(0)).T  # channel-major, as sine_mlp lays out h
    return h * torch.where(x >= _EXP_FLOOR, torch.exp(x.clamp(min=_EXP_FLOOR)), 0.0)


def implicit_filter(
    lags: Tensor,
    weights: list[Tensor],
    biases: list[Tensor],
    freqs: list[Tensor],
    rates: Tensor,
    *,
    n_bands: int,
    k_max: int,
    w_cap: float,
    within_support: bool = False,
) -> Tensor:
    """The unnormalised filter ``h`` ``[M, C]`` at integer lags ``[M]`` (zero where ``|ℓ| > k_max``),
    laid out channel-major (see :func:`sine_mlp`). ``within_support``: the caller guarantees
    ``|ℓ| ≤ k_max`` for every lag, so the cut is not applied (it would multiply by ones)."""
    lags = lags.to(weights[0].dtype)
    h = exponential_modulation(
        sine_mlp(positional_embedding(lags, n_bands, k_max, w_cap), weights, biases, freqs), lags, rates
    )
    return h if within_support else h * (lags.abs() <= k_max).unsqueeze(-1).to(h.dtype)


def filter_on_tokens(h: Tensor, lag0: int, lengths: Tensor, length: int, eps: float = 1e-12) -> Tensor:
    """Lay the filter on each system's tokens and L1-normalise it per system and channel.

    h: ``[M, C]`` filter at lags ``lag0 .. lag0 + M - 1`` (covering every lag of the batch).
    Returns ``[B, length, C]``: token ``m`` of system b holds ``h(m - c_b) / Σ_ℓ |h(ℓ)|`` with
    ``c_b = lengths[b] // 2`` and the sum over that system's lags ``[-c_b, n_b - 1 - c_b]``; zero
    on padding. This is the positional part of the key filter ``b = h̃ ⊙ k``.
    """
    m_ = h.shape[0]
    if lengths.numel() == 1 and m_ == length and lag0 == -(length // 2) and int(lengths[0]) == length:
        return (h / (h.abs().sum(0) + eps)).unsqueeze(0)  # one unpadded system, filter covers it exactly
    centre = torch.div(lengths, 2, rounding_mode="floor")
    tok = torch.arange(length, device=h.device)
    idx = tok.unsqueeze(0) - centre.unsqueeze(1) - lag0  # [B, L] index into h
    valid = (tok.unsqueeze(0) < lengths.unsqueeze(1)) & (idx >= 0) & (idx < m_)
    seq = h[idx.clamp(0, m_ - 1)] * valid.unsqueeze(-1).to(h.dtype)  # [B, L, C]
    mass = seq.abs().sum(1, keepdim=True)  # [B, 1, C]: L1 over the system's own lags
    return seq / (mass + eps)


class ImplicitFilter(nn.Module):
    """Parameters of :func:`implicit_filter` for ``n_channels`` channels.

    order: hidden width of the sine MLP (Hyena's ``filter_order``); depth: hidden layers;
    n_bands: sin/cos bands of the embedding; w_min, w_init: initial e-folding lengths (tokens),
    log-spaced over the channels; w_cap: largest e-folding length ever (tokens); efolds: the
    filter is cut (exactly zero) beyond ``K = ⌈efolds · w_cap⌉`` lags.
    """

    def __init__(
        self,
        n_channels: int,
        *,
        order: int = 16,
        depth: int = 2,
        n_bands: int = 8,
        w_min: float = 2.0,
        w_init: float = 512.0,
        w_cap: float = 2048.0,
        efolds: float = 30.0,
    ) -> None:
        super().__init__()
        if not 0 < w_min <= w_init < w_cap:
            raise ValueError(
                f"ImplicitFilter needs 0 < w_min <= w_init < w_cap, got {w_min}, {w_init}, {w_cap}"
            )
        self.n_channels, self.n_bands, self.w_cap = n_channels, n_bands, float(w_cap)
        self.k_max = math.ceil(efolds * w_cap)
        dims = [1 + 2 * n_bands] + [order] * depth + [n_channels]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for a, b in itertools.pairwise(dims):
            bound = 1.0 / math.sqrt(a)
            self.weights.append(nn.Parameter(torch.empty(b, a).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(b).uniform_(-bound, bound)))
        self.freqs = nn.ParameterList([nn.Parameter(torch.ones(order)) for _ in range(depth)])
        windows = (
            torch.logspace(math.log10(w_min), math.log10(w_init), n_channels)
            if n_channels > 1
            else torch.tensor([w_min])
        )
        self.log_rate = nn.Parameter(torch.log(1.0 / windows - 1.0 / w_cap))

    def rates(self) -> Tensor:
        """Decay rates ``α`` ``[C]`` (1/token), always ``> 1/w_cap``."""
        return 1.0 / self.w_cap + torch.exp(self.log_rate)

    def forward(self, lags: Tensor) -> Tensor:
        """Unnormalised filter ``[M, C]`` at integer lags ``[M]`` (channel-major layout)."""
        return self._filter(lags, False)

    def on_lags(self, lo: int, hi: int, device: torch.device | None = None) -> Tensor:
        """``forward(arange(lo, hi + 1))`` for lags inside the support (``|lo|, |hi| ≤ K``, as
        :meth:`lag_range` gives): the cut at ±K, all ones there, is skipped."""
        if max(-lo, hi) > self.k_max:
            raise ValueError(f"on_lags: lags {lo}..{hi} reach beyond the support ±{self.k_max}")
        return self._filter(torch.arange(lo, hi + 1, device=device), True)

    def _filter(self, lags: Tensor, within_support: bool) -> Tensor:
        return implicit_filter(
            lags,
            list(self.weights),
            list(self.biases),
            list(self.freqs),
            self.rates(),
            n_bands=self.n_bands,
            k_max=self.k_max,
            w_cap=self.w_cap,
            within_support=within_support,
        )

    def lag_range(self, length: int) -> tuple[int, int]:
        """Lags ``(lo, hi)`` a batch whose longest system has ``length`` tokens needs (cut at ±K)."""
        return max(-(length // 2), -self.k_max), min((length + 1) // 2 - 1, self.k_max)
