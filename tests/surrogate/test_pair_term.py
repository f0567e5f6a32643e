"""The learned two-body term (surrogate/pair_term.py): oracle, symmetry, forces, neighbour ranges."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from hyenamd import Batch
from hyenamd.geometry import batch_neighbor_list
from hyenamd.surrogate import GHyena, GHyenaConfig, load_model, save_model
from hyenamd.surrogate.ordering import batch_order
from hyenamd.surrogate.pair_term import pair_index_table
from hyenamd.testing import (
    assert_batch_independent,
    assert_equivariant,
    assert_forces_match_fd,
    assert_matches_reference,
    lj_argon,
    perturb_parameters,
    rattled_cu,
    water_trimer,
)

CFG = GHyenaConfig(
    species=(1, 8, 18, 29),
    cutoff=3.5,
    pair_cutoff=5.5,
    pair_rbf=6,
    n_scalar=8,
    n_vector=4,
    n_rbf=5,
    avg_neighbors=6.0,
    pattern=("local", "global", "local"),
    filter_order=8,
    filter_w_init=16.0,
    filter_w_cap=64.0,
    energy_shifts=(-0.3, -1.2, 0.1, -2.0),
    energy_scale=0.5,
    dtype="float64",
)


def model(**kw) -> GHyena:
    return perturb_parameters(GHyena(dataclasses.replace(CFG, **kw)), seed=3)


def systems():
    return [water_trimer(), rattled_cu(seed=1), lj_argon(2, rattle=0.2, seed=2)]


def test_pair_table_is_symmetric_and_complete():
    t = pair_index_table(4)
    assert torch.equal(t, t.T)
    assert sorted(set(t.flatten().tolist())) == list(range(10))


def test_interaction_range_is_the_pair_cutoff_and_messages_keep_theirs():
    m = model()
    assert m.cutoff == 5.5 and m.radial.cutoff == 3.5
    assert GHyena(dataclasses.replace(CFG, pair_cutoff=None)).cutoff == 3.5
    with pytest.raises(ValueError, match="pair_cutoff must be >= cutoff"):
        GHyenaConfig(cutoff=4.0, pair_cutoff=3.0)


def test_a_fresh_pair_term_changes_nothing():
    """The radial MLP's last layer starts at zero: switching the term on leaves a fresh model's energy."""
    b = Batch.from_systems(systems())
    with_term = GHyena(CFG)
    without = GHyena(dataclasses.replace(CFG, pair_cutoff=None))
    with torch.no_grad():
        assert torch.equal(with_term(b)["energy"], without(b)["energy"])


def test_fast_equals_reference_energy_and_forces():
    m = model()
    b = Batch.from_systems(systems())
    assert_matches_reference(m, b)
    with torch.no_grad():
        fast = m(b.replace(order=batch_order(b, m.cfg.ordering)))
    # the term is doing something: switching it off changes the answer
    off = dataclasses.replace(CFG, pair_cutoff=None)
    m_off = GHyena(off)
    m_off.load_state_dict({k: v for k, v in m.state_dict().items() if not k.startswith("pair_term.")})
    with torch.no_grad():
        assert (m_off(b)["energy"] - fast["energy"]).abs().max() > 1e-4


def test_superset_neighbor_list_gives_the_same_result():
    m = model()
    b = Batch.from_systems(systems())
    b = b.replace(order=batch_order(b, m.cfg.ordering))
    wide = batch_neighbor_list(b.positions, b.cell, b.pbc, b.ptr, m.cutoff + 1.0)
    with torch.no_grad():
        exact, superset = m(b), m(b, wide)
    assert torch.allclose(exact["energies"], superset["energies"], rtol=0, atol=1e-12)


@pytest.mark.parametrize("k", [0, 1, 2])
def test_symmetry_and_finite_difference_forces(k):
    m, s = model(), systems()[k]
    assert_equivariant(m, s)
    assert_forces_match_fd(m, s, atoms=[0, 1])


def test_batch_independence():
    assert_batch_independent(model(), systems())


def test_checkpoint_round_trip(tmp_path):
    m = model()
    path = save_model(m, tmp_path / "pair.safetensors")
    back = load_model(path)
    assert back.cfg.pair_cutoff == 5.5 and back.cutoff == 5.5
    b = Batch.from_systems(systems())
    with torch.no_grad():
        assert torch.equal(m(b)["energy"], back(b)["energy"])
