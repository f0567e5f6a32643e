"""Unit constants against ase.units and openmm.unit."""

from __future__ import annotations

import math

import pytest

from hyenamd import units as u


def test_against_ase_units():
    import ase.units as a

    rel = 1e-6  # ASE uses CODATA 2014, hyenamd CODATA 2018
    assert u.EV_TO_KJ_PER_MOL == pytest.approx(a.mol / a.kJ, rel=rel)
    assert u.EV_TO_KCAL_PER_MOL == pytest.approx(a.mol / a.kcal, rel=rel)
    assert u.ASE_TIME_PER_FS == pytest.approx(a.fs, rel=rel)
    assert u.BOLTZMANN_EV_PER_K == pytest.approx(a.kB, rel=rel)
    assert u.EV_PER_ANGSTROM3_TO_GPA == pytest.approx(1 / a.GPa, rel=rel)
    assert u.NM_TO_ANGSTROM == pytest.approx(a.nm, rel=1e-15)


def test_against_openmm_unit():
    from openmm import unit

    rel = 1e-7
    ev = (1 * unit.elementary_charge * unit.volt * unit.AVOGADRO_CONSTANT_NA).value_in_unit(
        unit.kilojoule_per_mole
    )
    assert u.EV_TO_KJ_PER_MOL == pytest.approx(ev, rel=rel)
    assert u.NM_TO_ANGSTROM == (1 * unit.nanometer).value_in_unit(unit.angstrom)
    assert u.PS_TO_FS == (1 * unit.picosecond).value_in_unit(unit.femtosecond)
    v = (1 * unit.nanometer / unit.picosecond).value_in_unit(unit.angstrom / unit.femtosecond)
    assert u.NM_PER_PS_TO_ANGSTROM_PER_FS == pytest.approx(v, rel=1e-14)
    f = (1 * unit.kilojoule_per_mole / unit.nanometer).value_in_unit(unit.kilojoule_per_mole / unit.angstrom)
    assert u.KJ_PER_MOL_NM_TO_EV_PER_ANGSTROM == pytest.approx(f / ev, rel=rel)
    kb = (unit.BOLTZMANN_CONSTANT_kB * unit.AVOGADRO_CONSTANT_NA).value_in_unit(
        unit.kilojoule_per_mole / unit.kelvin
    )
    assert u.BOLTZMANN_EV_PER_K == pytest.approx(kb / ev, rel=rel)


def test_inverse_pairs_and_dynamics_constants():
    assert u.KJ_PER_MOL_TO_EV * u.EV_TO_KJ_PER_MOL == pytest.approx(1.0, rel=1e-15)
    assert u.ANGSTROM_PER_FS_TO_NM_PER_PS == pytest.approx(100.0)
    # a = F/m: 1 eV/Å on 1 amu in Å/fs² equals 1/(ASE time unit in fs)²
    assert u.EV_PER_ANGSTROM_AMU_TO_ANGSTROM_PER_FS2 == pytest.approx(9.648533e-3, rel=1e-6)
    assert u.AMU_ANGSTROM2_PER_FS2_TO_EV * u.EV_PER_ANGSTROM_AMU_TO_ANGSTROM_PER_FS2 == pytest.approx(1.0)
    assert math.isclose(u.FS_PER_ASE_TIME, 10.1805, rel_tol=1e-5)


def test_kinetic_energy_and_temperature():
    import numpy as np

    m = np.array([1.0, 2.0])
    v = np.array([[0.01, 0, 0], [0, 0.02, 0]])
    ke = u.kinetic_energy_ev(m, v)
    assert ke == pytest.approx(0.5 * u.AMU_ANGSTROM2_PER_FS2_TO_EV * (1e-4 + 2 * 4e-4))
    assert u.temperature_k(u.BOLTZMANN_EV_PER_K * 1.5, 3) == pytest.approx(1.0)
