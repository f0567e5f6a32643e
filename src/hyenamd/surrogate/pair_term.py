"""A learned two-body energy to a longer range than the message passing: ``E₂ = ½ Σ_{i≠j} φ_{Z_i Z_j}(r_ij)``.

Why: a local equivariant model sees only pairs inside its message cutoff ``r_c``. In a
dispersion-bound liquid the pairs between ``r_c`` and the reference's own cutoff carry a smooth,
nearly pairwise force that no choice of weights can recover (measured on the demo's argon: the
force from pairs beyond 6 Å is 0.027 σ(F), beyond 7–7.5 Å 0.019 σ(F); docs/model.md, "Two-body
term"). A radial function per species pair reaches further at a cost of one basis evaluation and
a small MLP per pair, far below a message (no channels, no vectors), so the many-body part keeps
its short cutoff. Many MLIPs carry such a term (ACE's pair basis, Allegro's two-body energy,
ZBL-style repulsions); here it is learned, smooth and zero at start.

Maths (per pair of a full neighbour list, each unordered pair listed twice):

    b_k(r) = Bessel basis on [0, r₂]          (K functions, r₂ = pair cutoff)
    u(r)   = polynomial envelope, C^{p-1} at r₂ (exactly 0 beyond: superset lists give the same sum)
    φ_ab(r) = σ_E · u(r) · MLP(b(r))[p(a, b)]  (p: the unordered species-pair index; σ_E: the
                                                 model's energy scale, eV)
    E₂,i   = ½ Σ_j φ_{Z_i Z_j}(r_ij)           (per-atom share, eV; E₂ = Σ_i E₂,i)

Invariant under rotations, translations, reflections and permutations (a function of distances
and unordered species pairs); symmetric in i, j by construction of ``p``. The MLP's last layer
starts at zero, so a fresh model's energy is unchanged by switching the term on.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hyenamd.surrogate.equivariant import ScalarMLP, zero_last_layer_
from hyenamd.surrogate.radial import RadialEmbedding

__all__ = ["PairTerm", "pair_index_table"]


def pair_index_table(n_species: int) -> Tensor:
    """``[S, S]`` int64: the index of the unordered species pair ``{a, b}`` (symmetric, 0..S(S+1)/2-1)."""
    table = torch.empty(n_species, n_species, dtype=torch.int64)
    k = 0
    for a in range(n_species):
        for b in range(a, n_species):
            table[a, b] = table[b, a] = k
            k += 1
    return table


class PairTerm(nn.Module):
    """Learned pair energies: ``(r [P], i [P], j [P], species index [N]) -> per-atom energies [N]`` eV.

    ``cutoff``: r₂, Å. ``n_rbf``: K. ``hidden``: width of the radial MLP. ``p``: envelope exponent.
    The neighbour list must be full (both i→j and j→i); pairs beyond r₂ contribute exact zeros.
    """

    def __init__(self, n_species: int, cutoff: float, n_rbf: int = 16, hidden: int = 32, p: int = 6):
        super().__init__()
        self.radial = RadialEmbedding(cutoff, n_rbf, "bessel", p)
        self.register_buffer("pair_table", pair_index_table(n_species))
        n_pairs = n_species * (n_species + 1) // 2
        self.mlp = zero_last_layer_(ScalarMLP(n_rbf, hidden, n_pairs))

    @property
    def cutoff(self) -> float:
        return self.radial.cutoff

    def pair_energies(self, r: Tensor, si: Tensor, sj: Tensor, scale: Tensor | float = 1.0) -> Tensor:
        """``φ_{s_i s_j}(r)`` ``[P]`` eV for distances ``r [P]`` Å and species indices ``si, sj [P]``."""
        basis, env = self.radial(r)
        phi = self.mlp(basis)  # [P, n_pairs]
        col = self.pair_table[si, sj]
        return scale * env * phi.gather(1, col.unsqueeze(1)).squeeze(1)

    def forward(
        self, r: Tensor, i: Tensor, j: Tensor, species_index: Tensor, scale: Tensor | float = 1.0
    ) -> Tensor:
        e = self.pair_energies(r, species_index[i], species_index[j], scale)
        return e.new_zeros(species_index.shape[0]).index_add(0, i, 0.5 * e)

    def extra_repr(self) -> str:
        return f"cutoff={self.cutoff}, pairs={self.pair_table.max().item() + 1}"
