"""Output heads of G-Hyena: energy, direct forces, dynamics (and the velocity input embedding).

Symmetry types: every head reads the final scalars ``s`` ``[N, F]`` (invariant) and vectors
``v`` ``[N, C, 3]`` (true vectors) of the stack.

* :class:`EnergyHead` — per-atom energies ``E_i = σ · MLP(s_i) + μ_{Z_i}`` (eV), invariant; the
  total ``E = Σ_i E_i``. ``σ`` (``energy_scale``) and ``μ`` (``energy_shift``, one per species) are
  buffers, set from the training data and saved in checkpoints. Forces and stress come from
  ``compute_forces`` (autograd of ``E``: conservative).
* :class:`VectorHead` — one true vector per atom ``y_i = Σ_c g_c(s_i) (W v_i)_c`` ``[N, 3]``:
  invariant gates times equivariant channels, so ``y`` rotates and reflects like a vector.
  The gates' last layer starts at zero: a fresh direct-force head predicts 0 and a fresh
  dynamics head the ballistic step (the energy head keeps its random init: see docs/model.md).
  The direct force head (output ``"direct_forces"``, eV/Å, *not* conservative) and the
  dynamics head are built from it.
* :class:`DynamicsHead` — a learned large time step over the horizon ``Δτ`` (fs): with input
  velocities ``u_i`` (Å/fs), ``displacement_i = u_i Δτ + y^d_i`` (Å) and
  ``velocities_i = u_i + y^v_i / Δτ`` (Å/fs): the ballistic step plus learned corrections.
  Translation invariant (no absolute position enters), rotation/reflection equivariant.
* :class:`VelocityEmbedding` — the dynamics model's initial vectors
  ``v⁰_ic = w_{Z_i, c} · u_i Δτ`` (Å): velocities enter the vector stream as true vectors.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from hyenamd.surrogate.equivariant import ScalarMLP, VectorLinear, zero_last_layer_

__all__ = ["DynamicsHead", "EnergyHead", "VectorHead", "VelocityEmbedding"]


class EnergyHead(nn.Module):
    """``s [N, F]`` , species index ``[N]`` -> per-atom energies ``[N]`` eV (invariant)."""

    def __init__(self, n_scalar: int, n_species: int, shifts: Tensor | None = None, scale: float = 1.0):
        super().__init__()
        self.mlp = ScalarMLP(n_scalar, n_scalar, 1)
        shift = torch.zeros(n_species, dtype=torch.float64)
        if shifts is not None:
            shift = torch.as_tensor(shifts, dtype=torch.float64)
        if shift.shape != (n_species,):
            raise ValueError(
                f"energy shifts need one value per species ({n_species}), got {tuple(shift.shape)}"
            )
        self.register_buffer("energy_shift", shift.clone())
        self.register_buffer("energy_scale", torch.tensor(float(scale), dtype=torch.float64))

    def forward(self, s: Tensor, species_index: Tensor) -> Tensor:
        return self.energy_scale * self.mlp(s).squeeze(-1) + self.energy_shift[species_index]


class VectorHead(nn.Module):
    """``(s [N, F], v [N, C, 3]) -> [N, 3]``: ``Σ_c g_c(s) (W v)_c`` (a true vector per atom)."""

    def __init__(self, n_scalar: int, n_vector: int):
        super().__init__()
        self.gate = zero_last_layer_(ScalarMLP(n_scalar, n_scalar, n_vector))  # starts at y = 0
        self.mix = VectorLinear(n_vector, n_vector)

    def forward(self, s: Tensor, v: Tensor) -> Tensor:
        return (self.gate(s).unsqueeze(-1) * self.mix(v)).sum(dim=1)


class DynamicsHead(nn.Module):
    """Displacement ``[N, 3]`` Å and new velocities ``[N, 3]`` Å/fs after ``horizon_fs`` (see module doc)."""

    def __init__(self, n_scalar: int, n_vector: int, horizon_fs: float):
        super().__init__()
        if not horizon_fs > 0:
            raise ValueError(f"dynamics horizon must be positive (fs), got {horizon_fs}")
        self.horizon_fs = float(horizon_fs)
        self.displacement = VectorHead(n_scalar, n_vector)
        self.velocity = VectorHead(n_scalar, n_vector)

    def forward(self, s: Tensor, v: Tensor, velocities: Tensor) -> tuple[Tensor, Tensor]:
        dt = self.horizon_fs
        disp = velocities * dt + self.displacement(s, v)
        vel = velocities + self.velocity(s, v) / dt
        return disp, vel

    def extra_repr(self) -> str:
        return f"horizon_fs={self.horizon_fs}"


class VelocityEmbedding(nn.Module):
    """Initial vectors ``[N, C, 3]`` Å from velocities ``[N, 3]`` Å/fs: ``w_{Z_i, c} · u_i Δτ``."""

    def __init__(self, n_species: int, n_vector: int, horizon_fs: float):
        super().__init__()
        self.horizon_fs = float(horizon_fs)
        self.weight = nn.Parameter(torch.randn(n_species, n_vector) / math.sqrt(n_vector))

    def forward(self, velocities: Tensor, species_index: Tensor) -> Tensor:
        return self.weight[species_index].unsqueeze(-1) * (velocities * self.horizon_fs).unsqueeze(1)
