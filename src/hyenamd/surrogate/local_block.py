"""The local block: PaiNN-like equivariant message passing within the cutoff.

Symmetry types — in: scalars ``s`` ``[N, F]`` (parity +1), vectors ``v`` ``[N, C, 3]`` (true
vectors, parity -1) and pair geometry; out: the same types. Only products "scalar × vector"
and "vector · vector" appear, so the block is O(3)-equivariant (reflections included) and no
pseudovector is ever formed.

Pair geometry comes from :func:`hyenamd.geometry.edge_vectors`: ``r_ij = x_j - x_i + S_ij @ cell``
(minimum image and triclinic cells through the lattice shifts ``S`` of the neighbour list),
``r = |r_ij|``, ``r̂ = r_ij / r``; a radial basis ``b(r)`` ``[P, K]`` and envelope ``u(r)`` (see
:mod:`hyenamd.surrogate.radial`). With ``ν`` the neighbour normalisation (``avg_neighbors``):

Message (sum over the pairs ``(i, j)`` of the full list)::

    W_ij = (W b(r_ij) + w0) u(r_ij)                       [P, F + 2C]   (filter, 0 at r_c)
    φ_j  = MLP_φ(s_j)                                      [P, F + 2C]
    (Δs, Δvv, Δvs)_ij = φ_j ⊙ W_ij                         split F | C | C
    s_i += (1/ν) Σ_j Δs_ij
    v_i += (1/ν) Σ_j (Δvv_ij ⊙ v_j + Δvs_ij ⊗ r̂_ij)

Update (per atom)::

    U v, V v                                               [N, C, 3]   (channel mixing, no bias)
    (a_ss, a_sv, a_vv) = MLP_a([s, |V v|])                 split F | C | C
    s += a_ss + L(a_sv ⊙ <U v, V v>)                        L: C -> F, no bias
    v += a_vv ⊙ U v

Deviation from PaiNN: ``F`` and ``C`` may differ (PaiNN ties them), hence the linear map ``L``;
the norm is the smooth ``sqrt(|x|² + ε²) - ε`` so gradients exist at ``v = 0``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from hyenamd.surrogate.equivariant import ScalarMLP, VectorLinear, vector_norm

__all__ = ["Edges", "LocalBlock", "local_message", "local_update", "make_edges"]


@dataclass(frozen=True)
class Edges:
    """Pair geometry shared by every local block of one forward pass.

    i, j: ``[P]`` int64 (messages flow j -> i); unit: ``[P, 3]`` r̂_ij (true vectors);
    basis: ``[P, K]`` radial basis; envelope: ``[P]`` smooth cutoff (0 beyond the cutoff).
    """

    i: Tensor
    j: Tensor
    unit: Tensor
    basis: Tensor
    envelope: Tensor


def make_edges(i: Tensor, j: Tensor, vectors: Tensor, radial: nn.Module) -> Edges:
    """Build :class:`Edges` from pair vectors ``[P, 3]`` Å and a :class:`RadialEmbedding`."""
    r = vectors.norm(dim=-1)
    basis, env = radial(r)
    return Edges(i, j, vectors / r.unsqueeze(-1), basis, env)


def local_message(
    s: Tensor,
    v: Tensor,
    edges: Edges,
    phi: nn.Module,
    filter_net: nn.Linear,
    avg_neighbors: float,
) -> tuple[Tensor, Tensor]:
    """The message step (see module doc): returns the updated ``(s [N, F], v [N, C, 3])``."""
    n_f, n_c = s.shape[1], v.shape[1]
    w = filter_net(edges.basis) * edges.envelope.unsqueeze(-1)  # [P, F + 2C]
    x = phi(s)[edges.j] * w
    ds, dvv, dvs = torch.split(x, [n_f, n_c, n_c], dim=-1)
    dv = dvv.unsqueeze(-1) * v[edges.j] + dvs.unsqueeze(-1) * edges.unit.unsqueeze(1)  # [P, C, 3]
    scale = 1.0 / avg_neighbors
    s = s + scale * torch.zeros_like(s).index_add_(0, edges.i, ds)
    v = v + scale * torch.zeros_like(v).index_add_(0, edges.i, dv)
    return s, v


def local_update(
    s: Tensor, v: Tensor, u_lin: VectorLinear, v_lin: VectorLinear, mlp: nn.Module, mix: nn.Linear
) -> tuple[Tensor, Tensor]:
    """The update step (see module doc): returns the updated ``(s [N, F], v [N, C, 3])``."""
    n_f, n_c = s.shape[1], v.shape[1]
    uv, vv = u_lin(v), v_lin(v)
    a = mlp(torch.cat([s, vector_norm(vv)], dim=-1))
    a_ss, a_sv, a_vv = torch.split(a, [n_f, n_c, n_c], dim=-1)
    s = s + a_ss + mix(a_sv * (uv * vv).sum(-1))
    v = v + a_vv.unsqueeze(-1) * uv
    return s, v


class LocalBlock(nn.Module):
    """PaiNN-like message + update. In/out: scalars ``[N, F]``, vectors ``[N, C, 3]``; uses :class:`Edges`.

    Parameters only; the maths is :func:`local_message` and :func:`local_update`.
    """

    def __init__(self, n_scalar: int, n_vector: int, n_rbf: int, *, avg_neighbors: float = 10.0) -> None:
        super().__init__()
        if avg_neighbors <= 0:
            raise ValueError(f"avg_neighbors must be positive, got {avg_neighbors}")
        width = n_scalar + 2 * n_vector
        self.n_scalar, self.n_vector, self.avg_neighbors = n_scalar, n_vector, float(avg_neighbors)
        self.phi = ScalarMLP(n_scalar, n_scalar, width)
        self.filter = nn.Linear(n_rbf, width)
        self.u = VectorLinear(n_vector, n_vector)
        self.v = VectorLinear(n_vector, n_vector)
        self.update_mlp = ScalarMLP(n_scalar + n_vector, n_scalar, width)
        self.mix = nn.Linear(n_vector, n_scalar, bias=False)
        nn.init.normal_(self.mix.weight, std=1.0 / math.sqrt(n_vector))

    def forward(self, s: Tensor, v: Tensor, edges: Edges) -> tuple[Tensor, Tensor]:
        s, v = local_message(s, v, edges, self.phi, self.filter, self.avg_neighbors)
        return local_update(s, v, self.u, self.v, self.update_mlp, self.mix)

    def extra_repr(self) -> str:
        return f"n_scalar={self.n_scalar}, n_vector={self.n_vector}, avg_neighbors={self.avg_neighbors}"
