"""Is a trajectory canonical? Kinetic energies against Gamma(n_dof/2, k_B T), by a Kolmogorov–Smirnov test.

In the canonical ensemble the kinetic energy of ``n_dof`` quadratic degrees of freedom is
Gamma-distributed::

    K ~ Gamma(shape = n_dof / 2, scale = k_B T),     F(K) = P(n_dof / 2, K / (k_B T))

(``P``: the regularised lower incomplete gamma function, ``torch.special.gammainc``). The test
statistic is ``D = sup |F_n(K) − F(K)|`` of the empirical CDF ``F_n``; its p-value is the
asymptotic Kolmogorov distribution with Stephens' small-sample correction
``λ = (√n + 0.12 + 0.11/√n) D``, ``p = 2 Σ_{k≥1} (−1)^{k−1} exp(−2 k² λ²)`` (within 3 % of the
exact p-value where it decides, 0.005 < p < 0.05, for n ≥ 12; ``scipy.stats.kstwo`` is the oracle
in the tests when installed: scipy is not a dependency of hyenamd, torch's ``gammainc`` and
numpy suffice).

Frames of a trajectory are correlated; the KS p-value assumes independent draws. So the series
is first thinned by its statistical inefficiency ``g = 1 + 2 Σ_t ρ(t)`` (autocorrelation summed
to its first non-positive value), and the test runs on every ``round(1 + THIN_FACTOR · (g − 1))``-th
frame (uncorrelated frames, g = 1, are all kept).
``THIN_FACTOR = 2`` is measured, not derived: g is the inefficiency of the *mean*, and thinning by
g alone left exact OpenMM runs of the demo's argon (108 atoms, Langevin 90 K, 5–50 ps, 29 runs)
failing p ≥ 0.01 in 21 % of runs; thinning by 2g gave 4 % (p < 0.05: 7 %, p < 0.2: 21 %, close
to uniform). ``benchmarks/validation_scatter.py`` re-measures it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from hyenamd.units import BOLTZMANN_EV_PER_K

#: thin by this many statistical inefficiencies before the KS test (module doc: measured calibration)
THIN_FACTOR = 2.0

__all__ = [
    "THIN_FACTOR",
    "KineticTest",
    "gamma_cdf",
    "inefficiency",
    "kinetic_energy_test",
    "kolmogorov_p",
    "ks_statistic",
]


def gamma_cdf(x: np.ndarray, shape: float, scale: float) -> np.ndarray:
    """CDF of Gamma(shape, scale) at ``x`` (float64)."""
    z = torch.as_tensor(np.maximum(np.asarray(x, dtype=np.float64), 0.0) / scale)
    return torch.special.gammainc(torch.full_like(z, float(shape)), z).numpy()


def ks_statistic(sample: np.ndarray, cdf_values_sorted: np.ndarray) -> float:
    """``D = max_i max(i/n − F(x_(i)), F(x_(i)) − (i−1)/n)`` for the CDF at the *sorted* sample."""
    n = len(sample)
    i = np.arange(1, n + 1)
    return float(max(np.max(i / n - cdf_values_sorted), np.max(cdf_values_sorted - (i - 1) / n)))


def kolmogorov_p(d: float, n: int) -> float:
    """Asymptotic p-value of the one-sample KS statistic ``d`` for ``n`` draws (Stephens' correction)."""
    if n < 1 or not math.isfinite(d):
        return math.nan
    sn = math.sqrt(n)
    lam = (sn + 0.12 + 0.11 / sn) * d
    if lam < 0.2:
        return 1.0
    p = 2.0 * sum((-1) ** (k - 1) * math.exp(-2.0 * k * k * lam * lam) for k in range(1, 101))
    return min(max(p, 0.0), 1.0)


def inefficiency(series: np.ndarray) -> float:
    """Statistical inefficiency ``g = 1 + 2 Σ ρ(t)`` (ρ summed while positive), ≥ 1."""
    x = np.asarray(series, dtype=np.float64)
    x = x - x.mean()
    var = float(np.dot(x, x))
    if len(x) < 3 or var == 0:
        return 1.0
    g = 1.0
    for t in range(1, len(x) - 1):
        rho = float(np.dot(x[:-t], x[t:])) / var * len(x) / (len(x) - t)
        if rho <= 0:
            break
        g += 2.0 * rho * (1.0 - t / len(x))
    return max(g, 1.0)


@dataclass(frozen=True)
class KineticTest:
    """Result of :func:`kinetic_energy_test`: KS ``statistic`` and ``p_value``, frames used ``n``
    (after thinning by ``every``), the Gamma ``shape`` (n_dof/2) and ``scale`` (k_B T, eV)."""

    statistic: float
    p_value: float
    n: int
    every: int
    shape: float
    scale: float


def kinetic_energy_test(kinetic_ev: np.ndarray, n_dof: float, temperature_k: float) -> KineticTest:
    """KS test of kinetic energies ``[n_frames]`` eV against Gamma(n_dof/2, k_B T) (module doc)."""
    ke = np.asarray(kinetic_ev, dtype=np.float64)
    ke = ke[np.isfinite(ke)]
    if len(ke) < 2 or n_dof <= 0 or temperature_k <= 0:
        return KineticTest(math.nan, math.nan, len(ke), 1, n_dof / 2, BOLTZMANN_EV_PER_K * temperature_k)
    every = max(1, round(1.0 + THIN_FACTOR * (inefficiency(ke) - 1.0)))
    sample = np.sort(ke[::every])
    shape, scale = n_dof / 2.0, BOLTZMANN_EV_PER_K * temperature_k
    d = ks_statistic(sample, gamma_cdf(sample, shape, scale))
    return KineticTest(d, kolmogorov_p(d, len(sample)), len(sample), every, shape, scale)
