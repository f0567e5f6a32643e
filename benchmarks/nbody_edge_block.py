"""EGNN-style local block for the n-body task: messages from an MLP of both ends, the distance and ``q_i q_j``.

The PaiNN-like :class:`hyenamd.surrogate.local_block.LocalBlock` forms a message as
``φ(s_j) ⊙ W b(r)``: it never sees the receiving particle's features and the distance enters
only through a linear filter, so a pair term like ``q_i q_j f(r)`` (the n-body task's Coulomb
force) must be built by later multiplicative updates. EGNN's edge function sees
``(h_i, h_j, |x_i − x_j|², q_i q_j)`` directly; this block does the same, equivariantly.

Symmetry types — in: scalars ``s`` ``[N, F]``, vectors ``v`` ``[N, C, 3]``, the pairs ``(i, j)``
with ``r_ij = x_j − x_i`` ``[P, 3]`` and invariant pair attributes ``a_ij`` ``[P, A]`` (here
``q_i q_j``); out: the same types. Message and update::

    m_ij  = MLP_e([s_i, s_j, b(r_ij), a_ij])                          [P, H]   (SiLU, both layers)
    (Δs, g_v, g_r)_ij = Linear(m_ij)                                  split F | C | C (starts at 0)
    s_i  += (1/ν) Σ_j Δs_ij
    v_i  += (1/ν) Σ_j (g_v,ij ⊙ v_j + g_r,ij ⊗ r̂_ij)
    then the PaiNN update :func:`hyenamd.surrogate.local_block.local_update`.

Gates are invariant and multiply true vectors, so the block is O(3)-equivariant; it is
permutation-equivariant (a sum over pairs), with ``b(r)`` the bounded pair features of
:class:`nbody_model.PairFeatures` (no envelope: the graph is complete).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from hyenamd.surrogate.equivariant import ScalarMLP, SmoothNorm, VectorLinear, zero_last_layer_
from hyenamd.surrogate.local_block import Edges, local_update

__all__ = ["EdgeBlock"]


class EdgeBlock(nn.Module):
    """EGNN-style message (MLP of ``s_i, s_j, b(r), a_ij``) + PaiNN update. See the module doc.

    n_scalar F, n_vector C; ``radial``: ``r [P] -> (b [P, K], envelope [P])`` with ``n_rbf = K``;
    n_attr: A, the number of invariant pair attributes; avg_neighbors: ν; hidden: H (default F).
    """

    def __init__(
        self,
        n_scalar: int,
        n_vector: int,
        radial: nn.Module,
        *,
        n_attr: int = 1,
        avg_neighbors: float = 4.0,
        hidden: int | None = None,
    ) -> None:
        super().__init__()
        if avg_neighbors <= 0:
            raise ValueError(f"avg_neighbors must be positive, got {avg_neighbors}")
        hidden = int(hidden or n_scalar)
        self.n_scalar, self.n_vector, self.n_attr = n_scalar, n_vector, int(n_attr)
        self.avg_neighbors = float(avg_neighbors)
        self.radial = radial
        self.edge_mlp = nn.Sequential(
            nn.Linear(2 * n_scalar + radial.n_rbf + self.n_attr, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
        )
        self.edge_out = nn.Linear(hidden, n_scalar + 2 * n_vector)
        nn.init.zeros_(self.edge_out.weight)
        nn.init.zeros_(self.edge_out.bias)
        width = n_scalar + 2 * n_vector
        self.u = VectorLinear(n_vector, n_vector)
        self.v = VectorLinear(n_vector, n_vector)
        self.update_mlp = zero_last_layer_(ScalarMLP(n_scalar + n_vector, n_scalar, width))
        self.vnorm = SmoothNorm(n_vector)
        self.mix = nn.Linear(n_vector, n_scalar, bias=False)
        nn.init.normal_(self.mix.weight, std=1.0 / math.sqrt(n_vector))

    def forward(self, s: Tensor, v: Tensor, edges: Edges, attr: Tensor) -> tuple[Tensor, Tensor]:
        """s ``[N, F]``, v ``[N, C, 3]``, edges (P pairs), attr ``[P, A]`` → ``(s, v)`` of the same shapes."""
        if attr.shape != (len(edges), self.n_attr):
            raise ValueError(f"EdgeBlock: attr {tuple(attr.shape)}, expected ({len(edges)}, {self.n_attr})")
        i, j, vec = edges.i, edges.j, edges.vectors
        r = vec.norm(dim=-1)
        basis, env = self.radial(r)
        m = self.edge_mlp(torch.cat([s[i], s[j], basis * env.unsqueeze(-1), attr], dim=-1))
        ds, gv, gr = torch.split(self.edge_out(m), [self.n_scalar, self.n_vector, self.n_vector], dim=-1)
        dv = gv.unsqueeze(-1) * v[j] + gr.unsqueeze(-1) * (vec / r.unsqueeze(-1)).unsqueeze(1)
        scale = 1.0 / self.avg_neighbors
        s = s + scale * torch.zeros_like(s).index_add_(0, i, ds)
        v = v + scale * torch.zeros_like(v).index_add_(0, i, dv)
        return local_update(s, v, self.u, self.v, self.update_mlp, self.mix, self.vnorm)

    def extra_repr(self) -> str:
        return f"n_scalar={self.n_scalar}, n_vector={self.n_vector}, n_attr={self.n_attr}, avg_neighbors={self.avg_neighbors}"
