"""MSD, diffusion coefficient and VACF against processes with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from hyenamd.validate.dynamics import (
    CorrelationAccumulator,
    diffusion_coefficient,
    frame_interval,
    green_kubo_diffusion,
)
from hyenamd.validate.trajectory import Unwrapper


def test_random_walk_diffusion_recovered_through_wrapping():
    """Gaussian steps of sd σ per axis every dt: D = σ² / (2 dt), here 0.625 Å²/ps."""
    rng = np.random.default_rng(0)
    n, n_frames, sigma, dt, box = 1000, 401, 0.05, 2.0, 15.0
    cell, pbc = np.eye(3) * box, np.ones(3, bool)
    x = rng.random((n, 3)) * box
    unwrap = Unwrapper()
    acc = CorrelationAccumulator("msd", np.zeros(n, int), max_lag=200, origin_every=10)
    for _ in range(n_frames):
        acc.update(unwrap(np.mod(x, box), cell, pbc))  # the analysis only ever sees wrapped positions
        x = x + rng.normal(0, sigma, x.shape)
    lags, msd = acc.result()
    d, _ = diffusion_coefficient(lags * dt, msd[0], fit=(0.0, 1.0))
    assert d == pytest.approx(sigma**2 / (2 * dt) * 1000, rel=0.03)


def test_ballistic_msd_is_exact_and_memory_bounded():
    """x = x0 + v t: MSD(τ) = <|v|²> τ² for every lag, whatever origins are used."""
    rng = np.random.default_rng(1)
    v = rng.normal(size=(50, 3))
    groups = np.repeat([0, 1], 25)
    acc = CorrelationAccumulator("msd", groups, max_lag=12, origin_every=3)
    for t in range(40):
        acc.update(v * t)
        assert len(acc._origins) <= 12 // 3 + 1
    lags, msd = acc.result()
    for g in (0, 1):
        np.testing.assert_allclose(msd[g], (v[groups == g] ** 2).sum(1).mean() * lags**2, rtol=1e-12)


def test_com_removal():
    v = np.ones((10, 3))  # everything drifts together: no diffusion once the COM is removed
    acc = CorrelationAccumulator("msd", np.zeros(10, int), 5, remove_com=True, masses=np.arange(1.0, 11.0))
    for t in range(10):
        acc.update(v * t)
    np.testing.assert_allclose(acc.result()[1], 0.0, atol=1e-20)


def test_vacf_of_ornstein_uhlenbeck_velocities():
    """v_{k+1} = a v_k + sqrt(1 − a²) s ξ: C(τ)/C(0) = a^τ; D = s² dt (1 + a) / (2 (1 − a)) per axis."""
    rng = np.random.default_rng(2)
    n, a, s, dt = 2000, 0.8, 0.01, 1.0
    v = rng.normal(0, s, (n, 3))
    acc = CorrelationAccumulator("vacf", np.zeros(n, int), max_lag=30, origin_every=5)
    for _ in range(400):
        acc.update(v)
        v = a * v + np.sqrt(1 - a**2) * rng.normal(0, s, v.shape)
    lags, c = acc.result()
    assert c[0, 0] == pytest.approx(3 * s**2, rel=0.02)
    np.testing.assert_allclose(c[0] / c[0, 0], a**lags, atol=0.01)
    # trapezoid rule of the exact discrete C: ∫ ≈ s² dt (1 + a) / (2 (1 − a)) per axis
    d_exact = s**2 * dt * (1 + a) / (2 * (1 - a)) * 1000
    assert green_kubo_diffusion(lags * dt, c[0]) == pytest.approx(d_exact, rel=0.05)


def test_diffusion_fit_of_exact_line():
    t = np.linspace(0, 1000, 101)
    msd = 6 * 2.5e-4 * t + 0.7
    d, c = diffusion_coefficient(t, msd)
    assert d == pytest.approx(0.25) and c == pytest.approx(0.7)
    with pytest.raises(ValueError, match="fit window"):
        diffusion_coefficient(t, msd, fit=(0.8, 0.2))


def test_frame_interval_requires_equal_spacing():
    assert frame_interval(np.arange(5) * 2.5) == 2.5
    with pytest.raises(ValueError, match="equally spaced"):
        frame_interval(np.array([0.0, 1.0, 3.0]))
    with pytest.raises(ValueError, match="two frames"):
        frame_interval(np.array([0.0]))


def test_unwrapper_refuses_frames_too_far_apart():
    cell, pbc = np.eye(3) * 10, np.ones(3, bool)
    u = Unwrapper()
    u(np.zeros((1, 3)), cell, pbc)
    with pytest.raises(ValueError, match="too far apart"):
        u(np.full((1, 3), 4.8), cell, pbc)


def test_diffusion_is_compared_on_the_shorter_runs_lag_window():
    """Two runs with the same curved MSD but different lengths: their own fits differ, the common one agrees."""
    from types import SimpleNamespace

    from hyenamd.validate.metrics import _common_window_diffusion

    def msd(t_fs):  # a liquid-like MSD: sub-linear at short lags, slope 6 D at long lags (D = 0.1 Å²/ps)
        return 0.6e-3 * t_fs + 1.5 * (1 - np.exp(-t_fs / 800.0))

    long_t, short_t = np.arange(0, 5001, 40.0), np.arange(0, 2501, 40.0)
    ref = SimpleNamespace(lag_times=long_t, msd={"all": msd(long_t)})
    sur = SimpleNamespace(lag_times=short_t, msd={"all": msd(short_t)})
    own = [diffusion_coefficient(st.lag_times, st.msd["all"], (0.2, 0.8))[0] for st in (ref, sur)]
    assert abs(own[1] / own[0] - 1) > 0.1  # the systematic error of fitting different windows
    d_ref, d_sur = _common_window_diffusion(ref, sur, "all", (0.2, 0.8), *own)
    assert d_ref == pytest.approx(d_sur, rel=1e-12)


def test_diffusion_fit_window_in_picoseconds():
    """fit_ps selects absolute lags (clipped to the longest lag); the fraction window is then ignored."""
    t = np.arange(0, 10001, 40.0)  # fs
    msd = np.where(t < 1000, 1e-3 * t, 6 * 2.5e-4 * t + 2.5)  # only lags >= 1 ps are a line of slope 6D
    d, c = diffusion_coefficient(t, msd, fit=(0.0, 0.1), fit_ps=(1.0, 4.0))
    assert d == pytest.approx(0.25) and c == pytest.approx(2.5)
    short = diffusion_coefficient(t[:60], msd[:60], fit_ps=(1.0, 4.0))[0]  # a 2.36-ps run
    assert short == pytest.approx(0.25)
    with pytest.raises(ValueError, match="too few lags"):
        diffusion_coefficient(t[:20], msd[:20], fit_ps=(1.0, 4.0))  # shorter than the window's start
    with pytest.raises(ValueError, match="fit_ps"):
        diffusion_coefficient(t, msd, fit_ps=(4.0, 1.0))


def test_msd_fit_ps_bounds_the_lags_and_is_validated(tmp_path):
    from hyenamd.validate import ValidateConfig

    with pytest.raises(ValueError, match="msd_fit_ps"):
        ValidateConfig(msd_fit_ps=(2.0, 1.0))
    with pytest.raises(ValueError, match="msd_fit_ps"):
        ValidateConfig(msd_fit_ps=(0.0, float("inf")))
    assert ValidateConfig(msd_fit_ps=(1.0, 4.0)).msd_fit_ps == (1.0, 4.0)
