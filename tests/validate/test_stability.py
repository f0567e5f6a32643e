"""Bond inference, bond excursions (> 0.5 Å flagged), H detachment and blow-up detection."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hyenamd.validate import ArrayTrajectory, ValidateConfig
from hyenamd.validate.analysis import analyze_trajectory
from hyenamd.validate.stability import BondMonitor, _radii, blowup_reason, infer_bonds

WATER = np.array([[0.0, 0.0, 0.0], [0.757, 0.586, 0.0], [-0.757, 0.586, 0.0]])
CELL = np.eye(3) * 9.0
PBC = np.ones(3, bool)


def waters() -> tuple[np.ndarray, np.ndarray]:
    """Three waters, the third split across the periodic boundary."""
    x = np.concatenate([WATER + np.array(c) for c in ([2, 2, 2], [5, 5, 5], [0.2, 4, 4])])
    return np.mod(x, 9.0), np.tile([8, 1, 1], 3)


def test_covalent_radii_are_ases():
    from ase.data import covalent_radii

    assert _radii(np.array([1, 8, 18])).tolist() == [covalent_radii[1], covalent_radii[8], covalent_radii[18]]


def test_infer_bonds_of_water_across_the_boundary():
    x, z = waters()
    bonds, lengths = infer_bonds(x, z, CELL, PBC)
    want = [[0, 1], [0, 2], [3, 4], [3, 5], [6, 7], [6, 8]]
    np.testing.assert_array_equal(bonds, want)
    np.testing.assert_allclose(lengths, np.linalg.norm(WATER[1]), atol=1e-12)
    # without periodicity the split water loses one O–H bond
    assert len(infer_bonds(x, z, None, np.zeros(3, bool))[0]) == 5


@pytest.mark.parametrize(("stretch", "flagged"), [(0.6, True), (0.4, False)])
def test_stretched_bond_is_flagged(stretch, flagged):
    x, z = waters()
    bonds, lengths = infer_bonds(x, z, CELL, PBC)
    mon = BondMonitor(bonds, lengths, z)
    mon.update(x, CELL, PBC, 0.0)
    y = x.copy()
    u = (y[7] - y[6]) / np.linalg.norm(y[7] - y[6])
    y[7] += stretch * u
    mon.update(y, CELL, PBC, 10.0)
    r = mon.result()
    assert r["broken_bonds"] == int(flagged)
    assert r["max_excursion"] == pytest.approx(stretch)
    assert r["first_excursion_time"] == (10.0 if flagged else math.inf)
    # O–H of 0.96 + 0.6 Å is beyond 1.5 (r_O + r_H) = 1.455 Å from any O: detached; + 0.4 Å is not
    assert r["max_detached_h"] == int(flagged)


def test_h_detachment_and_proton_transfer():
    x, z = waters()
    bonds, lengths = infer_bonds(x, z, CELL, PBC)
    mon = BondMonitor(bonds, lengths, z)
    far = x.copy()
    far[1] += [0.0, 0.0, 3.0]  # an H pulled 3 Å away from every O
    mon.update(far, CELL, PBC, 5.0)
    hop = x.copy()
    hop[1] = x[3] + [0.0, 0.0, -1.0]  # the H moved onto another oxygen: a transfer, not a detachment
    mon.update(hop, CELL, PBC, 6.0)
    r = mon.result()
    np.testing.assert_array_equal(r["detached"], [1, 0])
    assert r["first_detach_time"] == 5.0 and r["n_hydrogens"] == 6


def test_blowup_reason():
    x = np.zeros((2, 3))
    assert blowup_reason(x) is None
    assert "positions" in blowup_reason(np.array([[0.0, np.nan, 0.0]]))
    assert "velocities" in blowup_reason(x, np.array([[np.inf, 0, 0], [0, 0, 0]]))
    assert "temperature" in blowup_reason(x, None, 2000.0, 1500.0)


def _walk(n_frames=20, seed=0):
    x, z = waters()
    rng = np.random.default_rng(seed)
    pos = np.array([x + rng.normal(0, 0.01, x.shape) for _ in range(n_frames)])
    return pos, z


def test_blowup_time_is_found_and_analysis_stops_there():
    pos, z = _walk()
    pos[13, 4, 1] = np.nan
    traj = ArrayTrajectory(pos, z, dt=2.0, cell=CELL)
    cfg = ValidateConfig(progress=False)
    st = analyze_trajectory(traj, cfg, bonds=infer_bonds(pos[0], z, CELL, PBC))
    assert st.blowup_time == pytest.approx(26.0)
    assert st.n_frames == 13 and "non-finite positions" in st.blowup_reason
    assert st.bonds["broken_bonds"] == 0  # the frames before the blow-up are fine


def test_overheating_counts_as_blowup():
    pos, z = _walk()
    vel = np.full(pos.shape, 1e-3)
    vel[7:] = 0.5  # Å/fs: thousands of kelvin
    traj = ArrayTrajectory(pos, z, dt=1.0, cell=CELL, velocities=vel)
    st = analyze_trajectory(traj, ValidateConfig(progress=False), max_temperature=1000.0)
    assert st.blowup_time == pytest.approx(7.0) and "temperature" in st.blowup_reason
    assert np.isinf(analyze_trajectory(traj, ValidateConfig(progress=False)).blowup_time)
