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

__all__ = [
    "NORM_EPS_INIT",
    "GatedEquivariantMLP",
    "ScalarMLP",
    "SmoothNorm",
    "VectorLinear",
    "vector_linear",
    "vector_linear_pair",
    "vector_norm",
    "zero_last_layer_",
]

#: Initial floor ε of the smooth vector norms (and the ε of the global pre-norm). It is set to
#: the scale of the vector features a fresh model produces on condensed-phase systems (median
#: |w| = 1.7e-3 on a TIP3P-density water box, preset S), so the invariant ``⟨w⟩`` responds to
#: them with slope ≈ 0.9 instead of ≈ 0.002 under the former absolute floor ε = 1. The floors of
#: :class:`SmoothNorm` are learned per channel from there (see docs/model.md, "Norms").
NORM_EPS_INIT = 1e-3


def vector_linear(v: Tensor, weight: Tensor) -> Tensor:
    """Mix vector channels without bias: ``[..., C_in, 3] -> [..., C_out, 3]``; weight ``[C_out, C_in]``.

    Equivariant because it acts on the channel axis only (no bias, no nonlinearity).
    One matrix product ``W [C_out, C_in] @ v [C_in, (..., 3)]`` (channels moved to the front,
    one copy) and a view back: the same numbers as ``einsum("oc,...cx->...ox")``, with a
    third of its dispatched ops (the 108-atom MD step runs 12 of these per call).
    """
    lead = v.shape[:-2]
    out = weight @ v.movedim(-2, 0).reshape(v.shape[-2], -1)  # [C_out, (..., 3)]
    return out.view(weight.shape[0], *lead, v.shape[-1]).movedim(0, -2)


def vector_linear_pair(v: Tensor, w1: Tensor, w2: Tensor) -> tuple[Tensor, Tensor]:
    """``(vector_linear(v, w1), vector_linear(v, w2))`` by one matrix product (stacked weights).

    Two channel mixings of the same vectors (the local update's ``U v, V v``, the gated MLP's
    ``U v, W v``) share the copy of ``v`` and the product: fewer ops forward and backward.
    """
    both = vector_linear(v, torch.cat([w1, w2]))
    return torch.split(both, [w1.shape[0], w2.shape[0]], dim=-2)


def vector_norm(v: Tensor, eps: float | Tensor = 1e-8) -> Tensor:
    """Smooth norm of vectors ``[..., C, 3] -> [..., C]``: ``sqrt(|v|² + eps²) - eps``.

    0 at v = 0, C∞ there (≈ |v|²/(2 eps) below eps, ≈ |v| above), 1-Lipschitz for any eps.
    ``eps``: a float or a per-channel tensor ``[C]`` (broadcast over the leading dims).
    """
    return torch.sqrt(v.pow(2).sum(-1) + eps * eps) - eps


def zero_last_layer_(seq: nn.Sequential) -> nn.Sequential:
    """Zero the weight and bias of the last ``nn.Linear`` of ``seq`` in place (residual branches start at 0)."""
    last = seq[-1]
    nn.init.zeros_(last.weight)
    if last.bias is not None:
        nn.init.zeros_(last.bias)
    return seq


class SmoothNorm(nn.Module):
    """``[..., C, 3] -> [..., C]``: :func:`vector_norm` with a learned floor per channel.

    ``eps_c = exp(log_eps_c)`` (always positive: the norm stays C∞ at v = 0, so the energy has no
    cone where a feature vanishes by symmetry), initialised at ``eps_init``: the scale of the
    features, not an absolute 1.
    """

    def __init__(self, n_channels: int, eps_init: float = NORM_EPS_INIT) -> None:
        super().__init__()
        if not eps_init > 0:
            raise ValueError(f"eps_init must be positive, got {eps_init}")
        self.log_eps = nn.Parameter(torch.full((n_channels,), math.log(eps_init)))

    def eps(self) -> Tensor:
        """The floors ``[C]``."""
        return torch.exp(self.log_eps)

    def forward(self, v: Tensor) -> Tensor:
        return vector_norm(v, self.eps())


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

    ``u, w = U v, W v``; ``a = MLP([LN(s), ⟨w⟩])`` (``⟨w⟩ = sqrt(|w|² + ε²) - ε``, a
    :class:`SmoothNorm`: learned ε per channel, smooth at 0) gives a scalar update ``a_s`` and
    per-channel gates ``a_v``; ``s' = s + a_s``, ``v' = v + a_v ⊙ u``. Norms and gates are
    invariant, so the vector update is equivariant (and keeps parity: a scalar times a vector).
    The MLP's last layer starts at zero, so the block starts as the identity.
    """

    def __init__(self, n_scalar: int, n_vector: int, hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden or n_scalar
        self.u = VectorLinear(n_vector, n_vector)
        self.w = VectorLinear(n_vector, n_vector)
        self.mlp = zero_last_layer_(ScalarMLP(n_scalar + n_vector, hidden, n_scalar + n_vector))
        self.norm = nn.LayerNorm(n_scalar)
        self.vnorm = SmoothNorm(n_vector)
        self.n_scalar = n_scalar

    def forward(self, s: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        u, w = vector_linear_pair(v, self.u.weight, self.w.weight)
        # a positive floor keeps ⟨w⟩ smooth at w = 0 (a vanishing one puts a cone |w| in the
        # energy of symmetric environments, i.e. a jump of the forces there)
        a = self.mlp(torch.cat([self.norm(s), self.vnorm(w)], dim=-1))
        a_s, a_v = torch.split(a, [self.n_scalar, a.shape[-1] - self.n_scalar], dim=-1)
        return s + a_s, torch.addcmul(v, a_v.unsqueeze(-1), u)
