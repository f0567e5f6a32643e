"""The canonical kinetic-energy test: Gamma CDF, KS statistic and p-value (scipy as the oracle), thinning."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hyenamd.units import BOLTZMANN_EV_PER_K
from hyenamd.validate.canonical import (
    gamma_cdf,
    inefficiency,
    kinetic_energy_test,
    kolmogorov_p,
    ks_statistic,
)


def test_against_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    x = np.sort(rng.gamma(50.0, 0.01, size=80))
    assert np.allclose(gamma_cdf(x, 50.0, 0.01), stats.gamma.cdf(x, 50.0, scale=0.01), atol=1e-8)
    d = ks_statistic(x, gamma_cdf(x, 52.0, 0.01))
    ref = stats.kstest(x, stats.gamma(52.0, scale=0.01).cdf)
    assert d == pytest.approx(ref.statistic, abs=1e-8)  # gammainc of torch vs scipy
    for n in (12, 30, 100, 300):  # Stephens' approximation: a few % where it decides (p ~ 0.01)
        for dd in (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5):
            exact = stats.kstwo.sf(dd, n)
            assert kolmogorov_p(dd, n) == pytest.approx(exact, rel=0.1, abs=0.02)
            if 5e-3 < exact < 0.05:
                assert kolmogorov_p(dd, n) == pytest.approx(exact, rel=0.03)


def test_canonical_draws_pass_and_wrong_temperature_fails():
    rng = np.random.default_rng(1)
    n_atoms, t = 108, 90.0
    ke = rng.gamma(1.5 * n_atoms, BOLTZMANN_EV_PER_K * t, size=300)
    ok = kinetic_energy_test(ke, 3 * n_atoms, t)
    assert ok.p_value > 0.01 and ok.every == 1 and ok.n == 300
    cold = kinetic_energy_test(ke * 0.9, 3 * n_atoms, t)  # a 10 % too cold thermostat
    assert cold.p_value < 1e-6
    narrow = kinetic_energy_test(ke.mean() + 0.3 * (ke - ke.mean()), 3 * n_atoms, t)  # right mean, too narrow
    assert narrow.p_value < 0.01


def test_correlated_series_are_thinned():
    rng = np.random.default_rng(2)
    white = rng.normal(size=4000)
    assert inefficiency(white) < 1.3
    ar = np.zeros(4000)
    for k in range(1, 4000):  # AR(1), ρ = 0.9: g = (1 + ρ)/(1 − ρ) = 19
        ar[k] = 0.9 * ar[k - 1] + white[k]
    assert 12 < inefficiency(ar) < 28
    res = kinetic_energy_test(1.0 + 0.01 * ar, 300, 1.0 / BOLTZMANN_EV_PER_K * (1.0 / 150))
    assert res.every >= 2 * 12 - 1 and res.n == math.ceil(4000 / res.every)  # thinned by ~2g (module doc)
