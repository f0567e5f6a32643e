"""NVE drift: a linear energy ramp gives its slope; ratios to the kinetic-energy fluctuation."""

from __future__ import annotations

import numpy as np
import pytest

from hyenamd.units import BOLTZMANN_EV_PER_K
from hyenamd.validate.energy import energy_drift, frame_kinetic_energy, linear_fit, temperature_series


def test_linear_ramp_gives_its_slope():
    t = np.arange(0.0, 5000.0, 10.0)  # fs, 5 ps
    n_atoms, slope = 300, 2e-5  # eV/fs
    e = -1234.5 + slope * t
    d = energy_drift(t, e, n_atoms)
    assert d.slope == pytest.approx(slope, rel=1e-9)
    assert d.drift == pytest.approx(slope / n_atoms * 1e3 * 1e3, rel=1e-9)  # meV/atom/ps
    assert d.total_change == pytest.approx(slope * 4990.0, rel=1e-9)
    assert np.isnan(d.drift_ratio)  # no kinetic energy given


def test_drift_with_noise_and_ratio_to_ke_fluctuation():
    rng = np.random.default_rng(0)
    t = np.arange(0.0, 10000.0, 5.0)
    ke = 3.0 + 0.2 * np.sin(t / 37.0)
    e = 7.0 - 1e-6 * t + rng.normal(0, 1e-3, t.shape)
    d = energy_drift(t, e, 100, ke)
    assert d.slope == pytest.approx(-1e-6, rel=0.05)
    assert d.ke_std == pytest.approx(np.std(ke))
    assert d.drift_ratio == pytest.approx(abs(d.slope) * (t[-1] - t[0]) / np.std(ke))
    assert d.noise_ratio == pytest.approx(1e-3 / np.std(ke), rel=0.1)


def test_linear_fit_skips_non_finite():
    t = np.arange(5.0)
    y = 2 * t + 1
    y[2] = np.nan
    assert linear_fit(t, y) == pytest.approx((2.0, 1.0))
    with pytest.raises(ValueError, match="two finite"):
        linear_fit(t[:1], y[:1])


def test_equipartition_temperature():
    rng = np.random.default_rng(1)
    n, temp = 5000, 300.0
    masses = rng.uniform(1, 40, n)
    from hyenamd.units import AMU_ANGSTROM2_PER_FS2_TO_EV

    sd = np.sqrt(BOLTZMANN_EV_PER_K * temp / (masses * AMU_ANGSTROM2_PER_FS2_TO_EV))  # Å/fs per axis
    v = rng.normal(size=(n, 3)) * sd[:, None]
    ke = frame_kinetic_energy(masses, v)
    assert temperature_series(np.array([ke]), n)[0] == pytest.approx(temp, rel=0.03)


def test_bad_input():
    with pytest.raises(ValueError, match="shape"):
        energy_drift(np.arange(3.0), np.arange(4.0), 10)
    with pytest.raises(ValueError, match="n_atoms"):
        energy_drift(np.arange(3.0), np.arange(3.0), 0)
