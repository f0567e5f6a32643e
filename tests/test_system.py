"""The data contract: System / Batch construction, validation errors, conversions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hyenamd import Batch, InvalidSystemError, Labels, System
from hyenamd.elements import MASSES

DT = torch.float64


def water(n_mol: int = 2, seed: int = 0) -> System:
    rng = np.random.default_rng(seed)
    pos = rng.uniform(0, 5, (3 * n_mol, 3))
    return System(
        positions=torch.tensor(pos, dtype=DT),
        species=torch.tensor([8, 1, 1] * n_mol),
        cell=torch.eye(3, dtype=DT) * 5,
        pbc=True,
        velocities=torch.tensor(rng.normal(0, 0.01, (3 * n_mol, 3)), dtype=DT),
        labels=Labels(torch.arange(n_mol).repeat_interleave(3), atom_names=("OW", "HW1", "HW2") * n_mol),
    )


def test_defaults_and_properties():
    s = System(positions=[[0.0, 0, 0], [1.0, 0, 0]], species=[1, 8])
    assert s.n_atoms == 2 and len(s) == 2
    assert s.positions.dtype == torch.get_default_dtype()
    assert torch.allclose(s.masses, torch.tensor([MASSES[1], MASSES[8]], dtype=s.dtype))
    assert s.pbc.tolist() == [False, False, False]
    assert s.cell is None and s.volume is None and s.velocities is None
    c = System(positions=torch.zeros(1, 3), species=[18], cell=[2.0, 3.0, 4.0], pbc=True)
    assert c.cell.shape == (3, 3) and abs(c.volume - 24.0) < 1e-5


def test_to_device_dtype_keeps_integer_fields():
    s = water()
    f = s.to(dtype=torch.float32)
    assert f.positions.dtype == torch.float32 and f.cell.dtype == torch.float32
    assert f.velocities.dtype == torch.float32 and f.masses.dtype == torch.float32
    assert f.species.dtype == torch.int64
    assert s.positions.dtype == DT  # the original is untouched
    with pytest.raises(InvalidSystemError, match="dtype"):
        s.to(dtype=torch.int32)


def test_ase_round_trip_is_exact():
    s = water(3)
    atoms = s.to_ase()
    assert atoms.get_chemical_symbols()[:3] == ["O", "H", "H"]
    back = System.from_ase(atoms)
    for name in ("positions", "species", "masses", "cell", "pbc"):
        assert torch.equal(getattr(back, name), getattr(s, name)), name
    assert torch.allclose(back.velocities, s.velocities, rtol=1e-14, atol=0)
    assert torch.equal(back.labels.residue_index, s.labels.residue_index)
    assert back.labels.atom_names == s.labels.atom_names


def test_from_ase_velocity_units():
    import ase.units
    from ase import Atoms

    atoms = Atoms("Ar", positions=[[0, 0, 0]])
    atoms.set_velocities([[1.0, 0, 0]])  # 1 Å per ASE time unit
    s = System.from_ase(atoms)
    assert float(s.velocities[0, 0]) == pytest.approx(ase.units.fs, rel=1e-6)  # 0.0982 Å/fs


def test_batch_round_trip_and_indices():
    systems = [water(1, 0), water(3, 1), water(2, 2)]
    systems = [s.replace(order=torch.arange(s.n_atoms).flip(0)) for s in systems]
    b = Batch.from_systems(systems)
    assert b.n_systems == 3 and b.n_atoms == 18
    assert b.ptr.tolist() == [0, 3, 12, 18]
    assert b.batch.tolist() == [0] * 3 + [1] * 9 + [2] * 6
    assert b.cell.shape == (3, 3, 3) and b.pbc.shape == (3, 3)
    assert b.order[3:12].tolist() == list(range(11, 2, -1))
    for s, t in zip(systems, b.systems()):
        for name in ("positions", "species", "masses", "cell", "pbc", "velocities", "order"):
            assert torch.equal(getattr(s, name), getattr(t, name)), name
    assert b.system(-1).n_atoms == 6
    with pytest.raises(IndexError):
        b.system(3)


def test_batch_mixes_open_and_periodic():
    open_ = System(positions=torch.rand(4, 3, dtype=DT), species=[6] * 4)
    b = Batch.from_systems([open_, water(1).replace(velocities=None, labels=None)])
    assert b.system(0).cell is None and b.system(1).cell is not None
    assert torch.equal(b.cell[0], torch.zeros(3, 3, dtype=DT))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(positions=[[float("nan"), 0, 0]], species=[1]), "positions contains NaN"),
        (dict(positions=[[float("inf"), 0, 0]], species=[1]), "positions contains inf"),
        (dict(positions=[[0.0, 0.0]], species=[1]), r"positions must have shape \[n_atoms, 3\]"),
        (dict(positions=torch.zeros(1, 3, dtype=torch.float16), species=[1]), "float32 or float64"),
        (dict(positions=torch.zeros((0, 3)), species=[]), "at least one atom"),
        (dict(positions=torch.zeros(2, 3), species=[1]), "species has shape"),
        (dict(positions=torch.zeros(1, 3), species=[1.0]), "species must be integer"),
        (dict(positions=torch.zeros(2, 3), species=[0, 1]), "atomic numbers in 1..118"),
        (dict(positions=torch.zeros(1, 3), species=[119]), "atomic numbers in 1..118"),
        (dict(positions=torch.zeros(1, 3), species=[1], masses=[0.0]), "masses must be positive"),
        (dict(positions=torch.zeros(1, 3), species=[1], masses=[-1.0]), "masses must be positive"),
        (dict(positions=torch.zeros(1, 3), species=[1], masses=[1.0, 2.0]), "masses has shape"),
        (dict(positions=torch.zeros(1, 3), species=[1], pbc=True), "no cell was given"),
        (
            dict(
                positions=torch.zeros(1, 3), species=[1], cell=[[1.0, 0, 0], [2.0, 0, 0], [0, 0, 1]], pbc=True
            ),
            "singular",
        ),
        (
            dict(
                positions=torch.zeros(1, 3), species=[1], cell=[[1.0, 0, 0], [0, 0, 1], [0, 1, 0]], pbc=True
            ),
            "left-handed",
        ),
        (
            dict(
                positions=torch.zeros(1, 3), species=[1], cell=[[1.0, 0, 0], [0, 1, 0], [0, 0, 0]], pbc=True
            ),
            "pbc is True along axis 2",
        ),
        (dict(positions=torch.zeros(1, 3), species=[1], cell=torch.eye(2)), r"cell must have shape \[3, 3\]"),
        (dict(positions=torch.zeros(1, 3), species=[1], pbc=[True, False]), "pbc must be"),
        (
            dict(positions=torch.zeros(2, 3), species=[1, 1], velocities=torch.zeros(3, 3)),
            "velocities has shape",
        ),
        (
            dict(positions=torch.zeros(1, 3), species=[1], velocities=[[0.0, float("nan"), 0]]),
            "velocities contains NaN",
        ),
        (dict(positions=torch.zeros(2, 3), species=[1, 1], order=[0, 0]), "permutation"),
        (dict(positions=torch.zeros(2, 3), species=[1, 1], order=[0, 1, 2]), "order has shape"),
        (
            dict(positions=torch.zeros(2, 3), species=[1, 1], labels=Labels(torch.zeros(3))),
            "labels describe 3 atoms",
        ),
    ],
)
def test_bad_input_raises_named_error(kwargs, match):
    with pytest.raises(InvalidSystemError, match=match):
        System(**kwargs)


def test_labels_validation():
    with pytest.raises(InvalidSystemError, match="atom_names has 1 entries"):
        Labels(torch.zeros(2), atom_names=("CA",))
    with pytest.raises(InvalidSystemError, match="chain_index has shape"):
        Labels(torch.zeros(2), chain_index=torch.zeros(3))


def test_slab_cell_with_zero_vector_is_valid():
    s = System(
        positions=torch.zeros(1, 3),
        species=[1],
        cell=[[3.0, 0, 0], [0, 3, 0], [0, 0, 0]],
        pbc=[True, True, False],
    )
    assert s.volume is None


def test_batch_errors():
    with pytest.raises(InvalidSystemError, match="at least one"):
        Batch.from_systems([])
    a = water(1)
    with pytest.raises(InvalidSystemError, match="dtype"):
        Batch.from_systems([a, a.to(dtype=torch.float32)])
    with pytest.raises(InvalidSystemError, match="velocities"):
        Batch.from_systems([a, a.replace(velocities=None)])
    with pytest.raises(InvalidSystemError, match="not a hyenamd.System"):
        Batch.from_systems([a, "x"])
