"""The ASE calculator's per-call caches never return a stale answer.

What a :class:`HyenaCalculator` keeps between calls (the static tensors of
:class:`~hyenamd.engine.static_inputs.StaticInputs`, the orders read from the atoms, the
species check, the cell volume, the Verlet list) is keyed on the atoms' content. The oracle of
every test is a *fresh* calculator (nothing kept) on a copy of the same atoms: after a
changed cell, numbers, pbc, masses, a swapped atom order or an edited order array — also
edited in place — the kept calculator gives the fresh answer (float64, 1e-10), and along an
MD run where only positions change the static tensors are made once.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import units
from ase.md.verlet import VelocityVerlet as AseVelocityVerlet

from hyenamd.engine import HyenaCalculator
from hyenamd.engine.static_inputs import StaticInputs, same_bits
from hyenamd.surrogate import GHyena, GHyenaConfig
from hyenamd.workflows.demo import liquid_like_system


@pytest.fixture(scope="module")
def model() -> GHyena:
    """float64, argon and neon, local + global blocks (an order-dependent energy), pair term on."""
    model = GHyena(
        GHyenaConfig(
            species=(18, 10), cutoff=3.0, pair_cutoff=3.5, n_scalar=8, n_vector=2, n_rbf=4,
            pattern=("local", "global", "local"), filter_order=4, filter_bands=2, avg_neighbors=8.0,
            residual_init="default", dtype="float64", seed=1,
        )
    )  # fmt: skip
    with torch.no_grad():
        for p in model.pair_term.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(2), dtype=p.dtype))
    return model


def atoms_of(n: int = 27, seed: int = 0):
    system = liquid_like_system(n, 0.05, seed=seed).to(dtype=torch.float64)
    atoms = system.replace(species=torch.where(torch.arange(n) % 5 == 0, 10, 18)).to_ase()
    rng = np.random.default_rng(seed)
    atoms.set_momenta(rng.normal(0.0, 0.3, (n, 3)) * atoms.get_masses()[:, None] ** 0.5)
    return atoms


def results(atoms) -> dict[str, np.ndarray]:
    out = {"energy": np.array([atoms.get_potential_energy()]), "forces": atoms.get_forces()}
    if atoms.pbc.all():
        out["stress"] = atoms.get_stress()
    return out


def fresh(model, atoms) -> dict[str, np.ndarray]:
    """The oracle: a new calculator (no caches) on a copy of ``atoms`` (its order array kept)."""
    a = atoms.copy()
    a.calc = HyenaCalculator(model)
    return results(a)


def assert_fresh(model, atoms, *, same_as: dict | None = None) -> dict:
    got = results(atoms)
    want = fresh(model, atoms)
    assert set(got) == set(want)
    for k in want:
        assert np.abs(got[k] - want[k]).max() <= 1e-10 * max(1.0, np.abs(want[k]).max()), k
    if same_as is not None:  # the change must matter: not the previous answer
        assert np.abs(got["forces"] - same_as["forces"]).max() > 1e-6
    return got


def test_an_md_run_makes_the_static_tensors_once_and_matches_fresh_calculators(model):
    atoms = atoms_of()
    atoms.calc = calc = HyenaCalculator(model, skin=0.3)
    dyn = AseVelocityVerlet(atoms, timestep=2.0 * units.fs)
    for _ in range(6):
        dyn.run(3)
        assert_fresh(model, atoms)
    assert calc.runner.static.n_made == 1 and calc.runner.n_calls == 19
    assert calc.runner.neighbor_list.n_builds > 1  # the reuse path and rebuilds both ran


@pytest.mark.parametrize(
    "change",
    ["cell", "cell_in_place", "numbers", "numbers_in_place", "pbc", "masses", "permuted", "order_edited"],
)
def test_a_changed_input_between_calls_gives_the_fresh_answer(model, change):
    atoms = atoms_of(seed=3)
    atoms.calc = calc = HyenaCalculator(model)
    atoms.get_forces()  # the first call writes the order: the next one fills every cache
    atoms.positions[0, 0] += 0.01
    before = assert_fresh(model, atoms)
    if change == "cell":
        atoms.set_cell(atoms.cell.array * 1.03, scale_atoms=False)
    elif change == "cell_in_place":
        atoms.cell.array[2, 2] *= 1.03  # no ASE setter: the same array object, edited
    elif change == "numbers":
        atoms.numbers = np.roll(atoms.numbers, 1)
    elif change == "numbers_in_place":
        atoms.numbers[[1, 2]] = 10
    elif change == "pbc":
        atoms.pbc = [True, False, True]
    elif change == "masses":
        atoms.set_masses(atoms.get_masses() * 2.0)  # not an energy input: a move makes a call
        atoms.positions[0, 0] += 0.01
    elif change == "permuted":
        perm = np.random.default_rng(4).permutation(len(atoms))
        atoms = atoms[perm]  # the sequence ranks travel with the atoms
        atoms.calc = calc
    elif change == "order_edited":
        ranks = atoms.arrays["hyenamd_order"]
        ranks[[0, 7]] = ranks[[7, 0]]  # in place: two atoms swap their sequence positions
    if change in ("masses", "permuted"):  # (nearly) the same physics: the check is the bookkeeping
        got = assert_fresh(model, atoms)
        if change == "permuted":
            assert got["energy"][0] == pytest.approx(before["energy"][0], rel=1e-12)
            assert np.abs(got["forces"] - before["forces"][perm]).max() < 1e-10
        else:
            assert calc.runner.static.n_made == 2  # the masses changed: the tensors were made again
    else:
        assert_fresh(model, atoms, same_as=before)


def test_unknown_species_are_refused_also_after_a_cached_call(model):
    atoms = atoms_of()
    atoms.calc = HyenaCalculator(model)
    atoms.get_forces()
    atoms.numbers[3] = 6  # carbon: the model knows argon and neon
    with pytest.raises(ValueError, match=r"species \[6\] are not known"):
        atoms.get_forces()


def test_static_inputs_follow_content_and_in_place_tensor_edits():
    static = StaticInputs(torch.device("cpu"), torch.float64)
    species, masses = np.array([18, 18, 10]), np.array([39.9, 39.9, 20.2])
    cell, pbc = np.eye(3) * 9.0, np.array([True, True, True])
    t = static(species, masses, cell, pbc)
    assert static(species.copy(), masses.copy(), cell.copy(), pbc.copy()) is t  # equal content: reused
    cell[1, 1] = 9.5  # the caller's array, edited in place: compared with the copy kept
    t2 = static(species, masses, cell, pbc)
    assert t2 is not t and float(t2.cell[0, 1, 1]) == 9.5 and static.n_made == 2
    t2.cell.mul_(2.0)  # a kept tensor edited in place: made afresh
    assert float(static(species, masses, cell, pbc).cell[0, 1, 1]) == 9.5 and static.n_made == 3
    assert static(species, None, None, pbc).has_cell.tolist() == [False]
    assert same_bits(np.zeros(3), np.zeros(3)) and not same_bits(np.zeros(3), np.zeros(3, np.float32))
    assert not same_bits(np.zeros(3), None) and same_bits(None, None)
