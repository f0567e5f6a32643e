"""Training objectives of the surrogate: pure functions on tensors.

Force field (energy + forces)::

    L = w_E · mean_b ((E_b − E*_b) / (n_b σ_E))² + w_F · mean_i,α ((F_iα − F*_iα) / σ_F)²

Large step (the dynamics head, horizon Δτ = k · dt)::

    L = w_x · mean_i,α ((Δx_iα − Δx*_iα) / σ_x)² + w_v · mean_i,α ((v_iα − v*_iα) / σ_v)²

==========  ===========================================  ======
symbol      variable                                     unit
==========  ===========================================  ======
E, E*       predicted / reference energy per system      eV
n_b         atoms of system b                            —
σ_E         per-atom energy scale (σ_F · 1 Å)            eV
F, F*       predicted (−∂E/∂x) / reference forces        eV/Å
σ_F         force scale (RMS of the reference forces)    eV/Å
Δx, Δx*     predicted / reference displacement          Å
v, v*       predicted / reference velocities at t + Δτ   Å/fs
σ_x, σ_v    RMS of the reference displacement, velocity  Å, Å/fs
==========  ===========================================  ======

Stochastic large step (the ``"stochastic_dynamics"`` head: per atom and component a 2-D
Gaussian of (Δx, v) with σˣ, σᵛ and correlation ρ), its negative log-likelihood in the same
normalised units (constant ``log 2π`` dropped), split into the marginal of Δx* and the
conditional of v* given Δx* (:mod:`hyenamd.surrogate.stochastic_head`)::

    L = w_x · mean_i,α ( rˣ² / (2 σˣ²) + log(σˣ / σ_x) ) + w_v · mean_i,α ( rᵛ² / (2 s²) + log(s / σ_v) )
    rˣ = Δx − Δx*,   rᵛ = μᵛ + ρ σᵛ (Δx* − Δx)/σˣ − v*,   s = σᵛ sqrt(1 − ρ²)

(w_x = w_v = 1 is the exact joint NLL.)

Every term is dimensionless, so the weights are comparable across systems and units (the NLL
terms can be negative: their minimum is ``½ + log(σ_resid / σ_x)``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from hyenamd.surrogate.stochastic_head import conditional_velocity, gaussian_nll, noise_fraction

__all__ = ["dynamics_loss", "energy_least_squares_shifts", "force_field_loss", "stochastic_dynamics_loss"]


def force_field_loss(
    energy: Tensor,
    energy_ref: Tensor | None,
    n_atoms: Tensor,
    forces: Tensor,
    forces_ref: Tensor | None,
    *,
    energy_weight: float,
    force_weight: float,
    energy_scale: float,
    force_scale: float,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Weighted, normalised energy + force loss (module doc); returns ``(loss, parts)``.

    energy, energy_ref ``[B]`` eV; n_atoms ``[B]``; forces, forces_ref ``[N, 3]`` eV/Å. A
    missing reference (None) drops its term. ``parts`` holds the unweighted terms and the
    RMSEs in physical units (``energy_rmse`` eV/atom, ``force_rmse`` eV/Å), detached.
    """
    loss = forces.new_zeros(())
    parts: dict[str, Tensor] = {}
    if energy_ref is not None and energy_weight > 0:
        de = (energy - energy_ref) / n_atoms.to(energy.dtype)
        term = (de / energy_scale).pow(2).mean()
        loss = loss + energy_weight * term
        parts["energy"] = term.detach()
        parts["energy_rmse"] = de.detach().pow(2).mean().sqrt()
    if forces_ref is not None and force_weight > 0:
        df = forces - forces_ref
        term = (df / force_scale).pow(2).mean()
        loss = loss + force_weight * term
        parts["forces"] = term.detach()
        parts["force_rmse"] = df.detach().pow(2).mean().sqrt()
    return loss, parts


def dynamics_loss(
    displacement: Tensor,
    displacement_ref: Tensor,
    velocities: Tensor,
    velocities_ref: Tensor,
    *,
    position_weight: float,
    velocity_weight: float,
    position_scale: float,
    velocity_scale: float,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Large-step loss (module doc): displacements ``[N, 3]`` Å, velocities ``[N, 3]`` Å/fs.

    ``parts``: the unweighted terms and ``position_rmse`` (Å), ``velocity_rmse`` (Å/fs).
    """
    dx = displacement - displacement_ref
    dv = velocities - velocities_ref
    tx = (dx / position_scale).pow(2).mean()
    tv = (dv / velocity_scale).pow(2).mean()
    loss = position_weight * tx + velocity_weight * tv
    parts = {
        "position": tx.detach(),
        "velocity": tv.detach(),
        "position_rmse": dx.detach().pow(2).mean().sqrt(),
        "velocity_rmse": dv.detach().pow(2).mean().sqrt(),
    }
    return loss, parts


def stochastic_dynamics_loss(
    displacement: Tensor,
    displacement_ref: Tensor,
    velocities: Tensor,
    velocities_ref: Tensor,
    log_sigma_x: Tensor,
    log_sigma_v: Tensor,
    rho_xv: Tensor | None = None,
    *,
    position_weight: float,
    velocity_weight: float,
    position_scale: float,
    velocity_scale: float,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Gaussian NLL of the stochastic large step (module doc); returns ``(loss, parts)``.

    displacement(_ref) ``[N, 3]`` Å, velocities(_ref) ``[N, 3]`` Å/fs, log_sigma_x ``[N]`` (ln Å),
    log_sigma_v ``[N]`` (ln Å/fs), rho_xv ``[N]`` (None: ρ = 0, independent). ``parts``: the NLL
    terms (``position``, ``velocity``: the conditional one), the RMSEs of the means (Å, Å/fs),
    ``position_sigma2``/``velocity_sigma2`` (mean predicted marginal variance per component,
    Å², Å²/fs²), ``velocity_noise_fraction`` (mean σᵛ² over the batch's per-component variance
    of v*) and ``xv_correlation`` (mean ρ), detached.
    """
    tx = gaussian_nll(
        displacement / position_scale,
        displacement_ref / position_scale,
        log_sigma_x - math.log(position_scale),
    )
    out = {"displacement": displacement, "velocities": velocities, "log_sigma_x": log_sigma_x}
    out["log_sigma_v"] = log_sigma_v
    if rho_xv is not None:
        out["rho_xv"] = rho_xv
    mean_v, ls_v = conditional_velocity(out, displacement_ref)
    tv = gaussian_nll(
        mean_v / velocity_scale, velocities_ref / velocity_scale, ls_v - math.log(velocity_scale)
    )
    loss = position_weight * tx + velocity_weight * tv
    with torch.no_grad():
        parts = {
            "position": tx.detach(),
            "velocity": tv.detach(),
            "position_rmse": (displacement - displacement_ref).pow(2).mean().sqrt(),
            "velocity_rmse": (velocities - velocities_ref).pow(2).mean().sqrt(),
            "position_sigma2": torch.exp(2.0 * log_sigma_x).mean(),
            "velocity_sigma2": torch.exp(2.0 * log_sigma_v).mean(),
            "velocity_noise_fraction": noise_fraction(log_sigma_v, velocities_ref),
            "xv_correlation": rho_xv.mean() if rho_xv is not None else log_sigma_v.new_zeros(()),
        }
    return loss, parts


def energy_least_squares_shifts(counts: Tensor, energies: Tensor) -> Tensor:
    """Per-species energy shifts ``μ [S]`` eV minimising ``Σ_b (E_b − Σ_Z c_bZ μ_Z)²``.

    counts ``[B, S]``: atoms of each species per structure; energies ``[B]`` eV. Rank-deficient
    cases (e.g. every structure has the same composition) get the minimum-norm solution, which
    still removes the composition-dependent part of the energy exactly.
    """
    if counts.ndim != 2 or energies.shape != counts.shape[:1]:
        raise ValueError(
            f"counts must be [B, S] and energies [B], got {tuple(counts.shape)} and {tuple(energies.shape)}"
        )
    if counts.shape[0] == 0:
        raise ValueError("energy shifts need at least one structure with a reference energy")
    a = counts.to(torch.float64)
    return torch.linalg.lstsq(a, energies.to(torch.float64).unsqueeze(-1), driver="gelsd").solution.squeeze(
        -1
    )
