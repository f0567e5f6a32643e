"""A stochastic large-step head: a per-atom heteroscedastic Gaussian over the stride's outcome.

The deterministic :class:`~hyenamd.surrogate.heads.DynamicsHead` trained by MSE on Langevin
pairs learns their conditional mean, which is too cold (the thermostat's noise is
unpredictable from ``(x, v)``). This head predicts the noise as well: per atom ``i``::

    Δx_i ~ N(μˣ_i, σˣ_i² I₃),      v'_i ~ N(μᵛ_i, σᵛ_i² I₃)
    μˣ_i, μᵛ_i  = the DynamicsHead's displacement and velocities       (true vectors: equivariant)
    log σˣ_i, log σᵛ_i = MLP(s_i) + b_{Z_i}                              (invariant scalars)

and is trained by the Gaussian negative log-likelihood (:func:`gaussian_nll`), so it can be fit
directly on Langevin data: at the optimum ``3 σ²`` is the conditional variance of the target.
Its *noise fraction* (:func:`noise_fraction`) — predicted variance over the target's variance —
is what the replica measurement of the demo's argon puts at 0.24 for the 200-fs velocities.

    ==========  =========================================  ======
    symbol      variable                                   unit
    ==========  =========================================  ======
    s           scalars ``[N, F]`` of the stack (invariant)  —
    v           vectors ``[N, C, 3]`` of the stack           Å
    u           input velocities ``[N, 3]``                  Å/fs
    μˣ, σˣ      ``displacement``, ``exp(log_sigma_x)``       Å
    μᵛ, σᵛ      ``velocities``, ``exp(log_sigma_v)``         Å/fs
    b_Z         ``log_sigma_shift[Z]`` (per species)         —
    ==========  =========================================  ======

Isotropic per atom (one σ for the three components) keeps σ invariant; an anisotropic
covariance would need an equivariant rank-2 output. The x and v draws are independent (no
cross-covariance): the benchmark ``benchmarks/stochastic_head.py`` measures how correlated the
held-out residuals actually are. Sampling: :func:`sample_stride`.

In the model: ``GHyenaConfig(heads=("energy", "stochastic_dynamics"))`` puts this head in
``model.dynamics_head`` (its log σ MLP starts at zero, so a fresh head has σ = exp(b_Z)); the
model's outputs gain ``log_sigma_x``/``log_sigma_v``, ``task: dynamics`` trains it with
:func:`~hyenamd.surrogate.losses.stochastic_dynamics_loss` (the Gaussian NLL), and
:class:`~hyenamd.engine.LearnedPropagator` draws Φ from it with ``sample=True``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from hyenamd.surrogate.equivariant import ScalarMLP, zero_last_layer_
from hyenamd.surrogate.heads import DynamicsHead

__all__ = ["StochasticDynamicsHead", "gaussian_nll", "noise_fraction", "sample_stride"]

LOG_SIGMA_RANGE = (-20.0, 5.0)  # clamp of log σ (in the target's unit) for a finite NLL


class StochasticDynamicsHead(nn.Module):
    """``(s, v, u, species_index) -> dict`` of means ``[N, 3]`` and invariant ``log σ`` ``[N]`` (module doc).

    log_sigma_x0, log_sigma_v0: initial log σ (Å and Å/fs), e.g. from the targets' spread.
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
        self.log_sigma = zero_last_layer_(ScalarMLP(n_scalar, n_scalar, 2))  # starts at σ = exp(b_Z)
        shift = torch.tensor([log_sigma_x0, log_sigma_v0]).expand(n_species, 2).clone()
        self.log_sigma_shift = nn.Parameter(shift)

    @property
    def horizon_fs(self) -> float:
        return self.mean.horizon_fs

    def forward(self, s: Tensor, v: Tensor, velocities: Tensor, species_index: Tensor) -> dict[str, Tensor]:
        disp, vel = self.mean(s, v, velocities)
        ls = (self.log_sigma(s) + self.log_sigma_shift[species_index].to(s.dtype)).clamp(*LOG_SIGMA_RANGE)
        return {"displacement": disp, "velocities": vel, "log_sigma_x": ls[:, 0], "log_sigma_v": ls[:, 1]}


def gaussian_nll(mean: Tensor, target: Tensor, log_sigma: Tensor) -> Tensor:
    """Mean per-component NLL of ``target ~ N(mean, σ² I₃)`` per atom, constant ``½ log 2π`` dropped.

    mean, target ``[N, 3]``; log_sigma ``[N]`` (log of the target's unit). Returns a scalar:
    ``mean_{i,α} ( (t − μ)² / (2 σ_i²) + log σ_i )``.
    """
    r2 = (target - mean).pow(2)
    return (0.5 * r2 * torch.exp(-2.0 * log_sigma).unsqueeze(-1) + log_sigma.unsqueeze(-1)).mean()


def noise_fraction(log_sigma: Tensor, target: Tensor) -> Tensor:
    """Predicted noise variance over the target's variance: ``mean σ² / var(target)`` (per component)."""
    var = (target - target.mean(0, keepdim=True)).pow(2).mean()
    return torch.exp(2.0 * log_sigma).mean() / var


def sample_stride(out: dict[str, Tensor], generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """One draw ``(Δx, v')`` ``[N, 3]`` from the head's Gaussians (independent per atom and quantity)."""
    d, v = out["displacement"], out["velocities"]
    xi = torch.randn((2, *d.shape), generator=generator, dtype=d.dtype, device=d.device)
    sx = torch.exp(out["log_sigma_x"]).unsqueeze(-1)
    sv = torch.exp(out["log_sigma_v"]).unsqueeze(-1)
    return d + sx * xi[0], v + sv * xi[1]
