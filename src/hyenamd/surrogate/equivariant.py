"""Equivariant building blocks shared by the local and global blocks.

Symmetry types used throughout the surrogate (see ``docs/model.md``):

* scalars ``s`` ``[n_atoms, F]``: invariant under O(3) (true scalars, parity +1);
* vectors ``v`` ``[n_atoms, C, 3]``: rotate with R and change sign under inversion (true
  vectors, parity -1): ``v -> v @ R.T`` for any orthogonal R, ``det R = ±1``.

Only these two types travel between blocks. Pseudovectors (``a × b``) and pseudoscalars
(``(a × b) · c``) may appear inside a block but are converted back before leaving it
(pseudovector × vector → vector, pseudovector · pseudovector → scalar), so energies are
invariant under the full O(3), reflections included.

Maths as pure functions on tensors; the modules below only hold parameters.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["GatedEquivariantMLP", "ScalarMLP", "VectorLinear", "vector_linear", "vector_norm"]


def vector_linear(v: Tensor, weight: Tensor) -> Tensor:
    """Mix vector channels without bias: ``[..., C_in, 3] -> [..., C_out, 3]``; weight ``[C_out, C_in]``.

    Equivariant because it acts on the channel axis only (no bias, no nonlinearity).
    """
    return torch.einsum("oc,...cx->...ox", weight, v)


def vector_norm(v: Tensor, eps: float = 1e-8) -> Tensor:
    """Smooth norm of vectors ``[..., C, 3] -> [..., C]``: ``sqrt(|v|² + eps²) - eps`` (0 at v = 0, differentiable)."""
    return torch.sqrt(v.pow(2).sum(-1) + eps * eps) - eps


class VectorLinear(nn.Module):
    """Channel mixing of vectors ``[..., C_in, 3] -> [..., C_out, 3]`` (no bias). In: vectors; out: vectors."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in) / math.sqrt(max(c_in, 1)))

    def forward(self, v: Tensor) -> Tensor:
        return vector_linear(v, self.weight)


class ScalarMLP(nn.Sequential):
    """``Linear -> SiLU -> Linear`` on scalars ``[..., F_in] -> [..., F_out]``. In/out: scalars."""

    def __init__(self, f_in: int, f_hidden: int, f_out: int) -> None:
        super().__init__(nn.Linear(f_in, f_hidden), nn.SiLU(), nn.Linear(f_hidden, f_out))


class GatedEquivariantMLP(nn.Module):
    """Equivariant gated MLP (PaiNN's gated equivariant block), with residuals.

    In: scalars ``s`` ``[N, F]``, vectors ``v`` ``[N, C, 3]``. Out: the same types and shapes.

    ``u, w = U v, W v``; ``a = MLP([s, |w|₁])`` (``|w|₁ = sqrt(|w|² + 1) - 1``, smooth at 0)
    gives a scalar update ``a_s`` and per-channel gates ``a_v``; ``s' = s + a_s``,
    ``v' = v + a_v ⊙ u``. Norms and gates are invariant, so the vector update is equivariant
    (and keeps parity: a scalar times a vector).
    """

    def __init__(self, n_scalar: int, n_vector: int, hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden or n_scalar
        self.u = VectorLinear(n_vector, n_vector)
        self.w = VectorLinear(n_vector, n_vector)
        self.mlp = ScalarMLP(n_scalar + n_vector, hidden, n_scalar + n_vector)
        self.norm = nn.LayerNorm(n_scalar)
        self.n_scalar = n_scalar

    def forward(self, s: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        u, w = self.u(v), self.w(v)
        # floor 1: smooth at w = 0 (a tiny floor puts a cone |w| in the energy of symmetric
        # environments, i.e. a jump of the forces there)
        a = self.mlp(torch.cat([self.norm(s), vector_norm(w, eps=1.0)], dim=-1))
        a_s, a_v = a[..., : self.n_scalar], a[..., self.n_scalar :]
        return s + a_s, v + a_v.unsqueeze(-1) * u
