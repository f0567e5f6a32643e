"""A stochastic large-step head: a per-atom heteroscedastic Gaussian over the stride's outcome.

The deterministic :class:`~hyenamd.surrogate.heads.DynamicsHead` trained by MSE on Langevin
pairs learns their conditional mean, which is too cold (the thermostat's noise is
unpredictable from ``(x, v)``). This head predicts the noise as well: per atom ``i`` and
Cartesian component ``α`` the pair (displacement, new velocity) is a correlated 2-D Gaussian::

    (Δx_iα, v'_iα) ~ N((μˣ_iα, μᵛ_iα), Σ_i),   Σ_i = [[σˣ_i², ρ_i σˣ_i σᵛ_i], [ρ_i σˣ_i σᵛ_i, σᵛ_i²]]
    μˣ_i, μᵛ_i  = the DynamicsHead's displacement and velocities          (true vectors: equivariant)
    (log σˣ_i, log σᵛ_i, atanh(ρ_i / ρ_max)) = MLP(s_i) + b_{Z_i}          (invariant scalars)

and is trained by the Gaussian negative log-likelihood, written as the marginal of Δx times
the conditional of v' given Δx (:func:`gaussian_nll` twice, :func:`conditional_velocity`)::

    v' | Δx ~ N(μᵛ + ρ σᵛ (Δx − μˣ)/σˣ,  σᵛ² (1 − ρ²))

so it can be fit directly on Langevin data: at the optimum Σ is the conditional covariance of
the targets. Its *noise fraction* (:func:`noise_fraction`: marginal σᵛ² over the target's
variance) is what the replica measurement of the demo's argon puts at 0.24 for the 200-fs
velocities. The correlation matters: over 200 fs the thermostat's kicks move the atoms too,
so the position and velocity noise are strongly correlated (replicas: ρ ≈ 0.7; see
``benchmarks/stochastic_head.py``); independent draws would decouple them.

    ==========  ============================================  ======
    symbol      variable                                      unit
    ==========  ============================================  ======
    s           scalars ``[N, F]`` of the stack (invariant)    —
    v           vectors ``[N, C, 3]`` of the stack             Å
    u           input velocities ``[N, 3]``                    Å/fs
    μˣ, σˣ      ``displacement``, ``exp(log_sigma_x)``         Å
    μᵛ, σᵛ      ``velocities``, ``exp(log_sigma_v)``           Å/fs
    ρ           ``rho_xv`` ``[N]`` (|ρ| ≤ ρ_max = 0.99)       —
    b_Z         ``noise_shift[Z]`` ``[S, 3]`` (per species)    —
    ==========  ============================================  ======

Isotropic per atom (one Σ for the three components) keeps Σ invariant; an anisotropic
covariance would need an equivariant rank-2 output. Sampling: :func:`sample_stride`.

In the model: ``GHyenaConfig(heads=("energy", "stochastic_dynamics"))`` puts this head in
``model.dynamics_head`` (its noise MLP starts at zero, so a fresh head has Σ from b_Z alone);
the model's outputs gain ``log_sigma_x``, ``log_sigma_v`` and ``rho_xv``; ``task: dynamics``
trains it with :func:`~hyenamd.surrogate.losses.stochastic_dynamics_loss`, and
:class:`~hyenamd.engine.LearnedPropagator` draws Φ from it with ``sample=True``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from hyenamd.surrogate.equivariant import ScalarMLP, zero_last_layer_
from hyenamd.surrogate.heads import DynamicsHead

__all__ = [
    "StochasticDynamicsHead",
    "conditional_velocity",
    "gaussian_nll",
    "noise_fraction",
    "sample_stride",
]

LOG_SIGMA_RANGE = (-20.0, 5.0)  # clamp of log σ (in the target's unit) for a finite NLL
RHO_MAX = 0.99  # |ρ| bound: keeps 1 − ρ² ≥ 0.0199 (a finite conditional NLL)


class StochasticDynamicsHead(nn.Module):
    """``(s, v, u, species_index) -> dict`` of means ``[N, 3]``, invariant ``log σ`` and ``ρ`` ``[N]`` (module doc).

    log_sigma_x0, log_sigma_v0: initial log σ (Å and Å/fs), e.g. from the targets' spread
    (the trainer sets them per species from the data); the initial ρ is 0.
    """

    def __init__(
        self,
        n_scalar: int,
        n_vector: int,
        horizon_fs: float,
        n_species: int,
        *,
        log_sigma_x0: float = math.log(0.1),
        log_sigma_v0: float = math.log(1e-3),
    ) -> None:
        super().__init__()
        self.mean = DynamicsHead(n_scalar, n_vector, horizon_fs)
        self.noise = zero_last_layer_(ScalarMLP(n_scalar, n_scalar, 3))  # starts at Σ(b_Z)
        shift = torch.tensor([log_sigma_x0, log_sigma_v0, 0.0]).expand(n_species, 3).clone()
        self.noise_shift = nn.Parameter(shift)

    @property
    def horizon_fs(self) -> float:
        return self.mean.horizon_fs

    def forward(self, s: Tensor, v: Tensor, velocities: Tensor, species_index: Tensor) -> dict[str, Tensor]:
        disp, vel = self.mean(s, v, velocities)
        raw = self.noise(s) + self.noise_shift[species_index].to(s.dtype)
        ls = raw[:, :2].clamp(*LOG_SIGMA_RANGE)
        return {
            "displacement": disp,
            "velocities": vel,
            "log_sigma_x": ls[:, 0],
            "log_sigma_v": ls[:, 1],
            "rho_xv": RHO_MAX * torch.tanh(raw[:, 2]),
        }


def gaussian_nll(mean: Tensor, target: Tensor, log_sigma: Tensor) -> Tensor:
    """Mean per-component NLL of ``target ~ N(mean, σ² I₃)`` per atom, constant ``½ log 2π`` dropped.

    mean, target ``[N, 3]``; log_sigma ``[N]`` (log of the target's unit). Returns a scalar:
    ``mean_{i,α} ( (t − μ)² / (2 σ_i²) + log σ_i )``.
    """
    r2 = (target - mean).pow(2)
    return (0.5 * r2 * torch.exp(-2.0 * log_sigma).unsqueeze(-1) + log_sigma.unsqueeze(-1)).mean()


def conditional_velocity(out: dict[str, Tensor], displacement: Tensor) -> tuple[Tensor, Tensor]:
    """Mean ``[N, 3]`` and log σ ``[N]`` of ``v' | Δx`` (module doc) for a given displacement ``[N, 3]`` Å.

    ``out``: the head's outputs; without ``rho_xv`` (ρ = 0) the marginal of v' is returned.
    """
    rho = out.get("rho_xv")
    if rho is None:
        return out["velocities"], out["log_sigma_v"]
    z = (displacement - out["displacement"]) * torch.exp(-out["log_sigma_x"]).unsqueeze(-1)
    mean = out["velocities"] + (rho * torch.exp(out["log_sigma_v"])).unsqueeze(-1) * z
    return mean, out["log_sigma_v"] + 0.5 * torch.log1p(-rho * rho)


def noise_fraction(log_sigma: Tensor, target: Tensor) -> Tensor:
    """Predicted noise variance over the target's variance: ``mean σ² / var(target)`` (per component)."""
    var = (target - target.mean(0, keepdim=True)).pow(2).mean()
    return torch.exp(2.0 * log_sigma).mean() / var


def sample_stride(out: dict[str, Tensor], generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """One draw ``(Δx, v')`` ``[N, 3]`` from the head's Gaussians (independent per atom and component).

    With ``ζ₁, ζ₂ ~ N(0, 1)`` (one ``[2, N, 3]`` block from ``generator``):
    ``Δx = μˣ + σˣ ζ₁``, ``v' = μᵛ + σᵛ (ρ ζ₁ + sqrt(1 − ρ²) ζ₂)`` (ρ = 0 without ``rho_xv``).
    """
    d, v = out["displacement"], out["velocities"]
    zeta = torch.randn((2, *d.shape), generator=generator, dtype=d.dtype, device=d.device)
    sx = torch.exp(out["log_sigma_x"]).unsqueeze(-1)
    sv = torch.exp(out["log_sigma_v"]).unsqueeze(-1)
    rho = out.get("rho_xv")
    if rho is None:
        return d + sx * zeta[0], v + sv * zeta[1]
    rho = rho.unsqueeze(-1)
    return d + sx * zeta[0], v + sv * (rho * zeta[0] + torch.sqrt(1.0 - rho * rho) * zeta[1])
