"""Bad input to the data contract (System) and to the neighbour search: a clear
InvalidSystemError naming the problem, before any work (no crash in vesin, no hang)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hyenamd import InvalidSystemError, System
from hyenamd.errors import HyenaError
from hyenamd.geometry import neighbor_list

POS = torch.tensor([[0.0, 0.0, 0.0], [1.5, 0.0, 0.0]], dtype=torch.float64)
SP = torch.tensor([1, 8])
BOX = torch.eye(3, dtype=torch.float64) * 10.0

SYSTEM_CASES = {
    # name: (kwargs, words the message must contain)
    "positions None": (dict(positions=None, species=SP), "positions is None"),
    "positions string": (dict(positions="0 0 0", species=SP), "positions must be an array of numbers"),
    "positions list of strings": (dict(positions=[["a", "b", "c"]] * 2, species=SP), "positions must be"),
    "positions complex": (dict(positions=POS.to(torch.complex128), species=SP), "complex"),
    "positions bool": (dict(positions=torch.ones(2, 3, dtype=torch.bool), species=SP), "booleans"),
    "positions ragged": (dict(positions=[[0, 0, 0], [1, 1]], species=SP), "positions must be"),
    "positions NaN": (dict(positions=POS * math.nan, species=SP), "NaN"),
    "positions inf": (dict(positions=POS + math.inf, species=SP), "inf"),
    "positions 1e6 Å": (dict(positions=POS * 1e6, species=SP), "beyond"),
    "positions -2e5 Å": (dict(positions=POS - 2e5, species=SP), "beyond"),
    "positions wrong shape": (dict(positions=torch.zeros(2, 2), species=SP), "shape"),
    "positions empty": (
        dict(positions=torch.zeros(0, 3), species=torch.zeros(0, dtype=torch.int64)),
        "at least one",
    ),
    "species None": (dict(positions=POS, species=None), "species is None"),
    "species strings": (dict(positions=POS, species=["H", "O"]), "species must be"),
    "species float": (dict(positions=POS, species=[1.0, 8.0]), "integer atomic numbers"),
    "species bool": (dict(positions=POS, species=[True, True]), "species must be"),
    "species complex": (dict(positions=POS, species=torch.tensor([1, 8], dtype=torch.complex64)), "complex"),
    "species zero": (dict(positions=POS, species=[0, 8]), "atomic numbers"),
    "species 200": (dict(positions=POS, species=[1, 200]), "atomic numbers"),
    "species count": (dict(positions=POS, species=[1, 8, 8]), "species has shape"),
    "masses negative": (dict(positions=POS, species=SP, masses=[1.0, -1.0]), "positive"),
    "masses NaN": (dict(positions=POS, species=SP, masses=[1.0, math.nan]), "NaN"),
    "masses string": (dict(positions=POS, species=SP, masses="heavy"), "masses must be"),
    "cell NaN": (dict(positions=POS, species=SP, cell=BOX * math.nan, pbc=True), "NaN"),
    "cell 1e7 Å": (dict(positions=POS, species=SP, cell=BOX * 1e6, pbc=True), "beyond"),
    "cell zero periodic": (dict(positions=POS, species=SP, cell=torch.zeros(3, 3), pbc=True), "zero"),
    "cell singular": (
        dict(positions=POS, species=SP, cell=[[1, 0, 0], [2, 0, 0], [0, 0, 1.0]], pbc=True),
        "singular",
    ),
    "cell left-handed": (dict(positions=POS, species=SP, cell=-BOX, pbc=True), "left-handed"),
    "cell complex": (dict(positions=POS, species=SP, cell=BOX.to(torch.complex128), pbc=True), "complex"),
    "cell string": (dict(positions=POS, species=SP, cell="10 10 10", pbc=True), "cell must be"),
    "pbc without cell": (dict(positions=POS, species=SP, pbc=True), "no cell"),
    "pbc string": (dict(positions=POS, species=SP, cell=BOX, pbc="yes"), "pbc must be"),
    "pbc float": (dict(positions=POS, species=SP, cell=BOX, pbc=[0.5, 1.0, 1.0]), "pbc must be booleans"),
    "velocities complex": (dict(positions=POS, species=SP, velocities=POS.to(torch.complex128)), "complex"),
    "velocities NaN": (dict(positions=POS, species=SP, velocities=POS * math.nan), "NaN"),
    "order not a permutation": (dict(positions=POS, species=SP, order=[0, 0]), "permutation"),
}


@pytest.mark.parametrize("name", list(SYSTEM_CASES))
def test_bad_system_input_is_refused_with_a_clear_error(name):
    kwargs, words = SYSTEM_CASES[name]
    with pytest.raises(InvalidSystemError) as e:
        System(**kwargs)
    assert words in str(e.value)
    assert isinstance(e.value, HyenaError) and isinstance(e.value, ValueError)


def _nl_case(name):
    rng = np.random.default_rng(0)
    pos = torch.tensor(rng.random((6, 3)), dtype=torch.float64)
    periodic = torch.tensor([True, True, True])
    return {
        # a cell of 1e-3 Å: searched ~1e12 images of each atom (the neighbour list never returned)
        "tiny periodic cell": (
            pos * 1e-3,
            torch.eye(3, dtype=torch.float64) * 1e-3,
            periodic,
            5.0,
            "too narrow",
        ),
        # a nearly flat cell (volume 2.5e-5 Å³)
        "flat periodic cell": (
            pos,
            torch.diag(torch.tensor([10.0, 10.0, 2.5e-7], dtype=torch.float64)),
            periodic,
            5.0,
            "too narrow",
        ),
        # one atom 1e6 Å away from the rest: vesin died with SIGFPE
        "atom 1e6 Å away": (
            torch.cat([pos, torch.tensor([[1e6, 0, 0]], dtype=torch.float64)]),
            None,
            None,
            5.0,
            "span",
        ),
        "extent/cutoff 2e5": (
            torch.cat([pos, torch.tensor([[1e5, 0, 0]], dtype=torch.float64)]),
            None,
            None,
            0.5,
            "span",
        ),
        "NaN positions": (pos * math.nan, None, None, 5.0, "NaN"),
        "dense periodic": (
            torch.tensor(rng.random((3000, 3)), dtype=torch.float64) * 2.0,
            torch.eye(3, dtype=torch.float64) * 2.0,
            periodic,
            10.0,
            "neighbour pairs",
        ),
        "slab narrow periodic axis": (
            pos,
            torch.diag(torch.tensor([1e-4, 10.0, 0.0], dtype=torch.float64)),
            torch.tensor([True, True, False]),
            5.0,
            "too narrow",
        ),
    }[name]


@pytest.mark.parametrize(
    "name",
    ["tiny periodic cell", "flat periodic cell", "atom 1e6 Å away", "extent/cutoff 2e5", "NaN positions",
     "dense periodic", "slab narrow periodic axis"],
)  # fmt: skip
def test_neighbour_search_refuses_what_would_crash_or_hang(name):
    pos, cell, pbc, cutoff, words = _nl_case(name)
    with pytest.raises(InvalidSystemError) as e:
        neighbor_list(pos, cell, pbc, cutoff)
    assert words in str(e.value)


def test_small_but_valid_cells_still_work():
    """The limits leave ordinary small cells alone: 2 atoms in a 3 Å box with a 5 Å cutoff."""
    pos = torch.tensor([[0.0, 0.0, 0.0], [1.5, 1.5, 1.5]], dtype=torch.float64)
    nb = neighbor_list(pos, torch.eye(3, dtype=torch.float64) * 3.0, torch.tensor([True] * 3), 5.0)
    assert len(nb.i) > 0
