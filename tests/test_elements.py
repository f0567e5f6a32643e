"""The element table shipped with hyenamd equals ASE's."""

from __future__ import annotations

import pytest

from hyenamd.elements import MASSES, MAX_Z, SYMBOLS, atomic_number


def test_table_equals_ase():
    from ase.data import atomic_masses, chemical_symbols

    assert MAX_Z == 118
    assert list(SYMBOLS) == list(chemical_symbols)
    assert list(MASSES[1:]) == pytest.approx(list(atomic_masses[1:]), rel=1e-12)


def test_atomic_number():
    assert atomic_number("O") == 8 and atomic_number("Og") == 118
    with pytest.raises(ValueError, match="unknown chemical symbol 'Xx'"):
        atomic_number("Xx")
