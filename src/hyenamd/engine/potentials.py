"""Classical potentials written in torch: Lennard-Jones, a harmonic tether and a zero potential.

They follow the *potential protocol* of :mod:`hyenamd.surrogate.forces` (an ``nn.Module`` with a
``cutoff`` in Å whose ``forward(batch, neighbors=None)`` returns ``"energy"`` ``[n_systems]`` and
``"energies"`` ``[n_atoms]`` in eV, differentiable in positions and cell), so the integrators,
the ASE calculator and the OpenMM plugin treat them exactly like the G-Hyena surrogate. They
are the test bed of the engine (exact physics, no training needed).

They also implement the engine's optional fast path ``energy_and_forces(batch, neighbors)``
with analytic forces (no autograd); the tests check it against
:func:`~hyenamd.surrogate.forces.compute_forces` and against the O(N²) oracle
:func:`lennard_jones_reference`. A potential with ``cutoff == 0`` needs no neighbour list.

Lennard-Jones (one atom type), with OpenMM's switching function so that it matches a
``NonbondedForce`` with ``setUseSwitchingFunction(True)`` term by term::

    e(r)  = 4 ε [(σ/r)^12 − (σ/r)^6] · S(r)                      r < r_c
    S(r)  = 1                                                    r ≤ r_on
          = 1 − 6 x^5 + 15 x^4 − 10 x^3,  x = (r − r_on)/(r_c − r_on)   r_on < r < r_c
    E     = ½ Σ_i Σ_{j≠i} e(r_ij)                           (full neighbour list)

With ``switch_on=None`` the pair energy is instead shifted, ``e(r) − e(r_c)`` (no switching).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hyenamd.geometry import Neighbors, brute_force_neighbor_list, edge_vectors
from hyenamd.system import Batch

__all__ = [
    "Harmonic",
    "LennardJones",
    "ZeroPotential",
    "lennard_jones_pair",
    "lennard_jones_reference",
]


def lennard_jones_pair(
    r: Tensor, sigma: float, epsilon: float, cutoff: float, switch_on: float | None
) -> tuple[Tensor, Tensor]:
    """Pair energy ``e(r)`` (eV) and its derivative ``de/dr`` (eV/Å) for distances ``r`` (Å).

    Pairs at ``r >= cutoff`` get zero. See the module docstring for the functional form.
    """
    inside = r < cutoff
    rs = torch.where(inside, r, torch.full_like(r, cutoff))
    inv = sigma / rs
    sr2 = inv * inv
    sr6 = sr2 * sr2 * sr2
    lj = 4.0 * epsilon * (sr6 * sr6 - sr6)
    dlj = 4.0 * epsilon * (-12.0 * sr6 * sr6 + 6.0 * sr6) / rs
    if switch_on is None:
        src6 = (sigma / cutoff) ** 6
        e = lj - 4.0 * epsilon * (src6 * src6 - src6)
        de = dlj
    else:
        x = ((rs - switch_on) / (cutoff - switch_on)).clamp(min=0.0)
        x2 = x * x
        s = 1.0 + x2 * x * (-10.0 + x * (15.0 - 6.0 * x))  # 1 - 10x³ + 15x⁴ - 6x⁵
        ds = x2 * (-30.0 + x * (60.0 - 30.0 * x)) / (cutoff - switch_on)
        e = lj * s
        de = dlj * s + lj * ds
    zero = torch.zeros_like(r)
    return torch.where(inside, e, zero), torch.where(inside, de, zero)


class LennardJones(nn.Module):
    """Single-type Lennard-Jones fluid (defaults: argon, σ = 3.405 Å, ε = 0.0103 eV ≈ 119.8 K k_B).

    sigma (Å), epsilon (eV), cutoff (Å), switch_on (Å; None: energy-shifted instead).
    """

    def __init__(
        self,
        sigma: float = 3.405,
        epsilon: float = 0.010323,
        cutoff: float = 8.5,
        switch_on: float | None = 7.5,
    ) -> None:
        super().__init__()
        self.uses_order = False  # classical: no canonical order needed
        self.needs_exact_neighbors = False  # e(r) = 0 for r >= cutoff: a superset list is fine
        if sigma <= 0 or epsilon < 0 or cutoff <= 0:
            raise ValueError(f"need sigma > 0, epsilon >= 0, cutoff > 0; got {sigma}, {epsilon}, {cutoff}")
        if switch_on is not None and not 0 < switch_on < cutoff:
            raise ValueError(f"switch_on must lie in (0, cutoff={cutoff}) Å, got {switch_on}")
        self.sigma, self.epsilon, self.cutoff, self.switch_on = (
            float(sigma),
            float(epsilon),
            float(cutoff),
            None if switch_on is None else float(switch_on),
        )

    def _pairs(self, batch: Batch, neighbors: Neighbors | None) -> tuple[Neighbors, Tensor, Tensor]:
        if neighbors is None:
            from hyenamd.geometry import batch_neighbor_list

            neighbors = batch_neighbor_list(batch.positions, batch.cell, batch.pbc, batch.ptr, self.cutoff)
        rij = edge_vectors(batch.positions, batch.cell, neighbors, batch.batch)
        return neighbors, rij, rij.norm(dim=-1)

    def _per_atom(self, batch: Batch, nb: Neighbors, e: Tensor) -> tuple[Tensor, Tensor]:
        half = 0.5 if nb.full else 1.0
        energies = torch.zeros(batch.n_atoms, dtype=e.dtype, device=e.device).index_add(0, nb.i, half * e)
        if not nb.full:  # a half list gives each atom of the pair half of e
            energies = 0.5 * energies + 0.5 * torch.zeros_like(energies).index_add(0, nb.j, e)
        energy = torch.zeros(batch.n_systems, dtype=e.dtype, device=e.device).index_add(
            0, batch.batch, energies
        )
        return energy, energies

    def forward(self, batch: Batch, neighbors: Neighbors | None = None) -> dict[str, Tensor]:
        nb, _, r = self._pairs(batch, neighbors)
        e, _ = lennard_jones_pair(r, self.sigma, self.epsilon, self.cutoff, self.switch_on)
        energy, energies = self._per_atom(batch, nb, e)
        return {"energy": energy, "energies": energies}

    @torch.no_grad()
    def energy_and_forces(self, batch: Batch, neighbors: Neighbors | None = None) -> dict[str, Tensor]:
        """Energies and analytic forces ``F_i = Σ_j e'(r_ij) r_ij / r_ij`` (no autograd)."""
        nb, rij, r = self._pairs(batch, neighbors)
        e, de = lennard_jones_pair(r, self.sigma, self.epsilon, self.cutoff, self.switch_on)
        energy, energies = self._per_atom(batch, nb, e)
        fij = (de / r.clamp(min=1e-12)).unsqueeze(-1) * rij  # force on i from j
        forces = torch.zeros_like(batch.positions).index_add_(0, nb.i, fij)
        if not nb.full:
            forces.index_add_(0, nb.j, -fij)
        return {"energy": energy, "energies": energies, "forces": forces}


def lennard_jones_reference(
    positions: Tensor,
    cell: Tensor | None,
    pbc: Tensor | None,
    sigma: float,
    epsilon: float,
    cutoff: float,
    switch_on: float | None,
) -> Tensor:
    """O(N² · images) oracle: the LJ energy (eV, 0-d) of one system from every pair image."""
    nb = brute_force_neighbor_list(positions, cell, pbc, cutoff)
    c = torch.zeros(3, 3, dtype=positions.dtype) if cell is None else cell
    rij = positions[nb.j] - positions[nb.i] + nb.shifts.to(positions.dtype) @ c
    e, _ = lennard_jones_pair(rij.norm(dim=-1), sigma, epsilon, cutoff, switch_on)
    return 0.5 * e.sum()


class Harmonic(nn.Module):
    """A harmonic tether of every atom to an anchor: ``E = ½ k Σ_i |x_i − a_i|²``.

    k: spring constant, eV/Å² (a float or ``[n_atoms]``); anchors: ``[n_atoms, 3]`` Å. Each atom
    is an independent 3-D oscillator of angular frequency ``ω = sqrt(k / m · c)`` rad/fs with
    ``c = EV_PER_ANGSTROM_AMU_TO_ANGSTROM_PER_FS2``, which is what the tests check against.
    The displacement is not minimum-imaged (use it for open systems).
    """

    cutoff = 0.0
    uses_order = False

    def __init__(self, k: float | Tensor, anchors: Tensor) -> None:
        super().__init__()
        anchors = torch.as_tensor(anchors)
        if anchors.ndim != 2 or anchors.shape[1] != 3:
            raise ValueError(f"anchors must have shape [n_atoms, 3], got {tuple(anchors.shape)}")
        k = torch.as_tensor(k, dtype=anchors.dtype)
        if bool((k < 0).any()):
            raise ValueError("spring constant k must be >= 0 eV/Å²")
        self.register_buffer("anchors", anchors)
        self.register_buffer("k", k)

    def _check(self, batch: Batch) -> None:
        if batch.n_atoms != self.anchors.shape[0]:
            raise ValueError(
                f"Harmonic has {self.anchors.shape[0]} anchors but the batch has {batch.n_atoms} atoms"
            )

    def forward(self, batch: Batch, neighbors: Neighbors | None = None) -> dict[str, Tensor]:
        self._check(batch)
        d = batch.positions - self.anchors.to(batch.positions)
        energies = 0.5 * self.k.to(d) * (d * d).sum(-1)
        energy = torch.zeros(batch.n_systems, dtype=d.dtype, device=d.device).index_add(
            0, batch.batch, energies
        )
        return {"energy": energy, "energies": energies}

    @torch.no_grad()
    def energy_and_forces(self, batch: Batch, neighbors: Neighbors | None = None) -> dict[str, Tensor]:
        out = self.forward(batch)
        k = self.k.to(batch.positions)
        k = k.unsqueeze(-1) if k.ndim == 1 else k
        out["forces"] = -k * (batch.positions - self.anchors.to(batch.positions))
        return out


class ZeroPotential(nn.Module):
    """E = 0, F = 0 at no cost (no neighbour list): measures the engine's own overhead."""

    cutoff = 0.0
    uses_order = False

    def forward(self, batch: Batch, neighbors: Neighbors | None = None) -> dict[str, Tensor]:
        zero = batch.positions.sum() * 0.0  # keeps the protocol: differentiable in positions
        energies = torch.zeros(batch.n_atoms, dtype=batch.dtype, device=batch.device) + zero
        energy = torch.zeros(batch.n_systems, dtype=batch.dtype, device=batch.device) + zero
        return {"energy": energy, "energies": energies}

    def energy_and_forces(self, batch: Batch, neighbors: Neighbors | None = None) -> dict[str, Tensor]:
        """Zeros; the tensors are cached per shape (the engine never writes into them)."""
        key = (batch.n_systems, batch.n_atoms, batch.dtype, batch.device)
        if getattr(self, "_key", None) != key:
            self._key = key
            self._zeros = {
                "energy": torch.zeros(batch.n_systems, dtype=batch.dtype, device=batch.device),
                "energies": torch.zeros(batch.n_atoms, dtype=batch.dtype, device=batch.device),
                "forces": torch.zeros_like(batch.positions),
            }
        return dict(self._zeros)
