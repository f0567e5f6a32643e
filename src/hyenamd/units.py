"""Internal units and the conversions at the boundaries.

Inside hyenamd every quantity is in one unit system (ASE's, with femtoseconds for time):

=============  ==============  ============================================
quantity       internal unit   note
=============  ==============  ============================================
length         Å
energy         eV
time           fs              ASE's own time unit is Å·sqrt(amu/eV) ≈ 10.18 fs
mass           amu (Da)
velocity       Å/fs
force          eV/Å
stress         eV/Å³           ASE's sign convention: negative when compressed
temperature    K
=============  ==============  ============================================

OpenMM works in nm, kJ/mol, ps; those are converted only at the OpenMM boundary with the
named constants below (``x_openmm * NM_TO_ANGSTROM``...). Constants are derived from the
CODATA 2018 exact SI values; ``tests/test_units.py`` checks them against ``ase.units`` and
``openmm.unit``.
"""

from __future__ import annotations

import math

# --- CODATA 2018 (exact or recommended SI values) -----------------------------------------
ELEMENTARY_CHARGE_C = 1.602176634e-19  # C (exact); 1 eV = this many J
AVOGADRO = 6.02214076e23  # 1/mol (exact)
BOLTZMANN_J_PER_K = 1.380649e-23  # J/K (exact)
AMU_KG = 1.66053906660e-27  # kg

# --- energy ---------------------------------------------------------------------------------
EV_TO_KJ_PER_MOL = ELEMENTARY_CHARGE_C * AVOGADRO / 1000.0  # 96.485332...
KJ_PER_MOL_TO_EV = 1.0 / EV_TO_KJ_PER_MOL
EV_TO_KCAL_PER_MOL = EV_TO_KJ_PER_MOL / 4.184
KCAL_PER_MOL_TO_EV = 1.0 / EV_TO_KCAL_PER_MOL
BOLTZMANN_EV_PER_K = BOLTZMANN_J_PER_K / ELEMENTARY_CHARGE_C  # k_B in eV/K

# --- length and time ------------------------------------------------------------------------
NM_TO_ANGSTROM = 10.0
ANGSTROM_TO_NM = 0.1
PS_TO_FS = 1000.0
FS_TO_PS = 1e-3
#: one ASE time unit (Å·sqrt(amu/eV)) in fs (≈ 10.1805)
FS_PER_ASE_TIME = 1e-10 * math.sqrt(AMU_KG / ELEMENTARY_CHARGE_C) * 1e15
#: one fs in ASE time units (= ``ase.units.fs``)
ASE_TIME_PER_FS = 1.0 / FS_PER_ASE_TIME

# --- derived --------------------------------------------------------------------------------
#: nm/ps (OpenMM velocity) -> Å/fs
NM_PER_PS_TO_ANGSTROM_PER_FS = NM_TO_ANGSTROM / PS_TO_FS
ANGSTROM_PER_FS_TO_NM_PER_PS = 1.0 / NM_PER_PS_TO_ANGSTROM_PER_FS
#: kJ/mol/nm (OpenMM force) -> eV/Å
KJ_PER_MOL_NM_TO_EV_PER_ANGSTROM = KJ_PER_MOL_TO_EV / NM_TO_ANGSTROM
EV_PER_ANGSTROM_TO_KJ_PER_MOL_NM = 1.0 / KJ_PER_MOL_NM_TO_EV_PER_ANGSTROM
#: acceleration of force/mass: (eV/Å)/amu -> Å/fs²  (≈ 9.6485e-3)
EV_PER_ANGSTROM_AMU_TO_ANGSTROM_PER_FS2 = 1.0 / FS_PER_ASE_TIME**2
#: kinetic energy of m·v²: amu·(Å/fs)² -> eV  (≈ 103.64)
AMU_ANGSTROM2_PER_FS2_TO_EV = FS_PER_ASE_TIME**2
#: eV/Å³ -> GPa (≈ 160.2177)
EV_PER_ANGSTROM3_TO_GPA = ELEMENTARY_CHARGE_C / 1e-30 / 1e9


def kinetic_energy_ev(masses_amu, velocities_angstrom_per_fs):
    """Kinetic energy ½ Σ m v² in eV.

    masses_amu: ``[n_atoms]`` amu; velocities_angstrom_per_fs: ``[n_atoms, 3]`` Å/fs.
    Works on numpy arrays and torch tensors alike (returns a 0-d array/tensor).
    """
    v2 = (velocities_angstrom_per_fs**2).sum(-1)
    return 0.5 * AMU_ANGSTROM2_PER_FS2_TO_EV * (masses_amu * v2).sum()


def temperature_k(kinetic_energy_ev: float, n_dof: int) -> float:
    """Instantaneous temperature ``2 E_kin / (n_dof k_B)`` in K."""
    return 2.0 * float(kinetic_energy_ev) / (n_dof * BOLTZMANN_EV_PER_K)
