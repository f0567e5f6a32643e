"""H5MD unit strings → factors to hyenamd's internal units (Å, fs, eV, amu, K).

The H5MD 1.1 units module (https://www.nongnu.org/h5md/modules/units.html) writes a unit as
space-separated factors: at most one leading number, then symbols with an optional signed
integer power (``"kJ mol-1 nm-1"``, ``"1e-3 ps"``, ``"Angstrom fs-1"``). Writers in the wild
also use a slash form (``"eV/Angstrom"``, ``"kJ/(mol*nm)"``), which is accepted too.

:func:`unit_factor` returns the number ``f`` such that ``value_internal = f * value_stored`` and
checks the dimension (a length where a length is expected...). Pure Python, no h5py.
"""

from __future__ import annotations

import re

from hyenamd.io.schema import SchemaError
from hyenamd.units import AVOGADRO, ELEMENTARY_CHARGE_C

__all__ = ["DIMENSIONS", "unit_factor"]

# dimension exponents: (length, time, energy, mass, temperature); "mol" is a count (N_A)
_L, _T, _E, _M, _K = (
    (1, 0, 0, 0, 0),
    (0, 1, 0, 0, 0),
    (0, 0, 1, 0, 0),
    (0, 0, 0, 1, 0),
    (0, 0, 0, 0, 1),
)
_J_IN_EV = 1.0 / ELEMENTARY_CHARGE_C
_KG_IN_AMU = 1.0 / 1.66053906660e-27

#: symbol -> (factor to internal units, dimension)
_SYMBOLS: dict[str, tuple[float, tuple[int, ...]]] = {
    # length (internal: Å)
    "Angstrom": (1.0, _L), "angstrom": (1.0, _L), "A": (1.0, _L), "Å": (1.0, _L),
    "nm": (10.0, _L), "pm": (1e-2, _L), "fm": (1e-5, _L), "um": (1e4, _L), "m": (1e10, _L),
    "bohr": (0.529177210903, _L), "Bohr": (0.529177210903, _L),
    # time (internal: fs); AKMA: CHARMM's time unit, 48.88821 fs (MDAnalysis' value)
    "fs": (1.0, _T), "ps": (1e3, _T), "ns": (1e6, _T), "us": (1e9, _T), "s": (1e15, _T),
    "sec": (1e15, _T), "second": (1e15, _T), "AKMA": (48.88821, _T),
    # energy (internal: eV)
    "eV": (1.0, _E), "meV": (1e-3, _E), "J": (_J_IN_EV, _E), "kJ": (1e3 * _J_IN_EV, _E),
    "cal": (4.184 * _J_IN_EV, _E), "kcal": (4.184e3 * _J_IN_EV, _E),
    "Hartree": (27.211386245988, _E), "Ha": (27.211386245988, _E),
    # force: Newton = J/m
    "N": (_J_IN_EV / 1e10, (-1, 0, 1, 0, 0)), "Newton": (_J_IN_EV / 1e10, (-1, 0, 1, 0, 0)),
    # mass (internal: amu)
    "amu": (1.0, _M), "u": (1.0, _M), "Da": (1.0, _M), "g": (1e-3 * _KG_IN_AMU, _M),
    "kg": (_KG_IN_AMU, _M),
    # temperature, amount of substance (a count: mol = N_A particles)
    "K": (1.0, _K), "mol": (AVOGADRO, (0, 0, 0, 0, 0)),
}  # fmt: skip

#: dimension of each quantity a store reads
DIMENSIONS: dict[str, tuple[int, ...]] = {
    "position": _L,
    "box": _L,
    "time": _T,
    "velocity": (1, -1, 0, 0, 0),
    "force": (-1, 0, 1, 0, 0),
    "energy": _E,
    "mass": _M,
    "temperature": _K,
}

_POWER = re.compile(r"^(.+?)(\^?)([+-]?\d+)$")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def _symbol(token: str, unit: str) -> tuple[float, tuple[int, ...], int]:
    """(factor, dimension, power) of one unit factor such as ``nm-1`` or ``Angstrom``."""
    if token in _SYMBOLS:
        f, d = _SYMBOLS[token]
        return f, d, 1
    m = _POWER.match(token)
    if m and m.group(1) in _SYMBOLS and int(m.group(3)) != 0:
        f, d = _SYMBOLS[m.group(1)]
        return f, d, int(m.group(3))
    raise SchemaError(f"unknown unit symbol {token!r} in {unit!r}")


def _h5md_tokens(unit: str) -> list[str]:
    """The slash notation (``eV/Angstrom``, ``kJ/(mol*nm)``) rewritten as H5MD factors."""
    if "/" not in unit and "*" not in unit:
        return unit.split()
    num, _, den = unit.partition("/")
    out = [t for t in re.split(r"[\s*()]+", num) if t]
    for t in re.split(r"[\s*()]+", den):
        if not t:
            continue
        m = _POWER.match(t)
        base, p = (m.group(1), int(m.group(3))) if m and m.group(1) in _SYMBOLS else (t, 1)
        out.append(f"{base}{-p}")
    return out


def unit_factor(unit: str | bytes | None, quantity: str) -> float:
    """Factor from a stored ``unit`` to the internal unit of ``quantity`` (see :data:`DIMENSIONS`).

    ``None`` or an empty string means "no unit attribute": the value is taken as already in
    internal units (factor 1). Raises :class:`SchemaError` for an unknown symbol or a unit of
    the wrong dimension (e.g. ``"nm"`` for a force).
    """
    if isinstance(unit, bytes):
        unit = unit.decode()
    if unit is None or not str(unit).strip():
        return 1.0
    unit = str(unit).strip()
    tokens = _h5md_tokens(unit)
    factor, dims = 1.0, [0] * 5
    for i, tok in enumerate(tokens):
        if i == 0 and _NUMBER.match(tok):
            factor *= float(tok)
            continue
        f, d, p = _symbol(tok, unit)
        factor *= f**p
        dims = [a + p * b for a, b in zip(dims, d, strict=True)]
    want = DIMENSIONS[quantity]
    if tuple(dims) != want:
        raise SchemaError(f"unit {unit!r} is not a unit of {quantity}")
    return factor
