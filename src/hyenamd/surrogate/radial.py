"""Radial basis functions and the smooth cutoff envelope of the local blocks.

All functions are pure maths on tensors (differentiable, any dtype/device):

* :func:`bessel_basis` — ``b_k(r) = sqrt(2/r_c) · sin(k π r / r_c) / r``, ``k = 1..K`` (DimeNet);
  every member vanishes at ``r = r_c``.
* :func:`gaussian_basis` — ``b_k(r) = exp(-(r - μ_k)² / (2 w²))``, ``μ_k`` evenly spaced on
  ``[0, r_c]``, ``w = r_c / K`` (SchNet-style).
* :func:`polynomial_envelope` — ``u(d) = 1 - (p+1)(p+2)/2 d^p + p(p+2) d^(p+1) - p(p+1)/2 d^(p+2)``
  for ``d = r / r_c < 1`` and ``0`` beyond (DimeNet's envelope). ``u(1) = u'(1) = u''(1) = 0``:
  ``u'(d) = -p(p+1)(p+2)/2 · d^(p-1) (1 - d)²``, so energies built from ``u`` are C² in
  the positions as atoms cross the cutoff (forces continuous and differentiable).

Shapes: ``r`` ``[n_pairs]`` Å → basis ``[n_pairs, K]`` (1/Å for Bessel, dimensionless for
Gaussian), envelope ``[n_pairs]`` (dimensionless).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

__all__ = ["RadialEmbedding", "bessel_basis", "gaussian_basis", "polynomial_envelope"]

RadialKind = Literal["bessel", "gaussian"]


def bessel_basis(r: Tensor, cutoff: float, n_rbf: int) -> Tensor:
    """Spherical Bessel (order 0) basis ``sqrt(2/r_c) sin(k π r / r_c) / r``: ``[P] Å -> [P, K]`` (1/Å).

    ``r`` must be positive (pair distances of distinct atoms or periodic images are).
    """
    k = torch.arange(1, n_rbf + 1, dtype=r.dtype, device=r.device)
    return math.sqrt(2.0 / cutoff) * torch.sin(k * (math.pi / cutoff) * r.unsqueeze(-1)) / r.unsqueeze(-1)


def gaussian_basis(r: Tensor, cutoff: float, n_rbf: int) -> Tensor:
    """Gaussians centred on ``linspace(0, r_c, K)`` with width ``r_c / K``: ``[P] Å -> [P, K]``."""
    mu = torch.linspace(0.0, cutoff, n_rbf, dtype=r.dtype, device=r.device)
    width = cutoff / n_rbf
    return torch.exp(-0.5 * ((r.unsqueeze(-1) - mu) / width) ** 2)


def polynomial_envelope(r: Tensor, cutoff: float, p: int = 6) -> Tensor:
    """DimeNet's polynomial cutoff ``u(r / r_c)``: 1 at 0, C² zero at ``r_c``, 0 beyond. ``[P] -> [P]``."""
    if p < 2:
        raise ValueError(f"envelope exponent p must be >= 2 for a C² cutoff, got {p}")
    d = r / cutoff
    a = (p + 1) * (p + 2) / 2.0
    b = p * (p + 2.0)
    c = p * (p + 1) / 2.0
    dp = d.pow(p)
    u = 1.0 - a * dp + b * dp * d - c * dp * d * d
    return torch.where(d < 1.0, u, torch.zeros_like(u))


class RadialEmbedding(nn.Module):
    """Basis and envelope of the pair distances (no parameters; holds the settings).

    ``forward(r [P] Å) -> (basis [P, K], envelope [P])``. The learned filters of the local
    blocks are ``Linear(basis) * envelope``, so every message vanishes C²-smoothly at the cutoff.
    """

    def __init__(self, cutoff: float, n_rbf: int, kind: RadialKind = "bessel", p: int = 6) -> None:
        super().__init__()
        if cutoff <= 0 or n_rbf < 1:
            raise ValueError(f"need cutoff > 0 and n_rbf >= 1, got cutoff={cutoff}, n_rbf={n_rbf}")
        if kind not in ("bessel", "gaussian"):
            raise ValueError(f"unknown radial basis {kind!r}; choose 'bessel' or 'gaussian'")
        self.cutoff, self.n_rbf, self.kind, self.p = float(cutoff), int(n_rbf), kind, int(p)

    def forward(self, r: Tensor) -> tuple[Tensor, Tensor]:
        fn = bessel_basis if self.kind == "bessel" else gaussian_basis
        return fn(r, self.cutoff, self.n_rbf), polynomial_envelope(r, self.cutoff, self.p)

    def extra_repr(self) -> str:
        return f"cutoff={self.cutoff}, n_rbf={self.n_rbf}, kind={self.kind!r}, p={self.p}"
