"""Canonical order: topology order, Hilbert curve (adjacency, locality), invariances, batches."""

from __future__ import annotations

import itertools

import pytest
import torch

from hyenamd.surrogate.ordering import (
    OrderingError,
    batch_order,
    canonical_order,
    hilbert_index,
    hilbert_order,
    order_samples,
    random_order,
    topology_order,
)
from hyenamd.system import Batch, Labels, System
from hyenamd.testing import random_orthogonal
from hyenamd.workflows.demo import liquid_like_system

DT = torch.float64


def _is_perm(order, n):
    return order.dtype == torch.int64 and torch.equal(torch.sort(order).values, torch.arange(n))


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
def test_hilbert_curve_visits_every_cell_once_through_face_neighbours(bits):
    n = 1 << bits
    grid = torch.tensor(list(itertools.product(range(n), repeat=3)))
    h = hilbert_index(grid, bits)
    assert torch.equal(torch.sort(h).values, torch.arange(n**3))
    walk = grid[torch.argsort(h)]
    steps = (walk[1:] - walk[:-1]).abs().sum(1)
    assert bool((steps == 1).all())  # consecutive cells share a face


def test_hilbert_index_refines_consistently_and_validates():
    grid = torch.randint(0, 8, (50, 3), generator=torch.Generator().manual_seed(0))
    # the coarse curve is the fine curve read with fewer bits: h_bits(g) >> 3 == h_{bits-1}(g >> 1)
    assert torch.equal(hilbert_index(grid, 3) >> 3, hilbert_index(grid >> 1, 2))
    big = torch.tensor([[2**21 - 1, 0, 2**21 - 1]])
    assert 0 <= int(hilbert_index(big, 21)) < 2**63 - 1
    with pytest.raises(ValueError, match="bits"):
        hilbert_index(grid, 22)
    with pytest.raises(ValueError, match="lie in"):
        hilbert_index(grid, 2)
    with pytest.raises(ValueError, match="integer"):
        hilbert_index(grid.double(), 3)


def _open_system(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return System(positions=10.0 * torch.rand(n, 3, dtype=DT, generator=g), species=torch.full((n,), 6))


def test_open_system_order_is_a_permutation_and_translation_invariant():
    sys_ = _open_system(500)
    order = canonical_order(sys_, "hilbert")
    assert _is_perm(order, 500)
    shifted = sys_.replace(positions=sys_.positions + torch.tensor([123.25, -7.5, 0.3125], dtype=DT))
    assert torch.equal(canonical_order(shifted, "hilbert"), order)
    assert torch.equal(canonical_order(sys_, "hilbert"), order)  # deterministic


def test_periodic_order_is_rewrap_invariant():
    sys_ = liquid_like_system(800, triclinic=True, dtype=DT, seed=3)
    order = canonical_order(sys_, "hilbert")
    assert _is_perm(order, 800)
    shifts = torch.randint(-3, 4, (800, 3), generator=torch.Generator().manual_seed(1)).to(DT)
    rewrapped = sys_.replace(positions=sys_.positions + shifts @ sys_.cell)
    assert torch.equal(canonical_order(rewrapped, "hilbert"), order)


def test_hilbert_locality_beats_random_order():
    sys_ = liquid_like_system(4000, dtype=DT, seed=2)
    x = sys_.positions

    def mean_step(order):
        d = x[order[1:]] - x[order[:-1]]
        frac = torch.linalg.solve(sys_.cell.T, d.T).T
        frac = frac - torch.round(frac)  # minimum image
        return float((frac @ sys_.cell).norm(dim=1).mean())

    hil = mean_step(canonical_order(sys_, "hilbert"))
    rnd = mean_step(torch.randperm(4000, generator=torch.Generator().manual_seed(0)))
    spacing = (1 / 0.1) ** (1 / 3)  # ≈ nearest-neighbour distance at density 0.1 Å⁻³
    assert hil < 0.25 * rnd
    assert hil < 2.0 * spacing


def test_ties_broken_by_atom_index():
    pos = torch.zeros(6, 3, dtype=DT)
    pos[3:] = 1.0
    sys_ = System(positions=pos, species=torch.ones(6, dtype=torch.int64))
    order = hilbert_order(sys_)
    groups = sorted([order[:3].tolist(), order[3:].tolist()])
    assert groups == [[0, 1, 2], [3, 4, 5]]


def test_topology_order_uses_chain_then_residue_then_atom_index():
    res = torch.tensor([1, 0, 1, 0, 2, 0])
    chain = torch.tensor([1, 1, 0, 0, 0, 0])
    sys_ = System(
        positions=torch.randn(6, 3, dtype=DT),
        species=torch.full((6,), 6),
        labels=Labels(residue_index=res, chain_index=chain),
    )
    order = canonical_order(sys_, "topology")
    assert order.tolist() == [3, 5, 2, 4, 1, 0]
    assert torch.equal(order, topology_order(sys_))
    moved = sys_.replace(positions=torch.randn(6, 3, dtype=DT))  # positions do not matter
    assert torch.equal(canonical_order(moved, "topology"), order)


def test_batch_order_follows_batch_convention():
    systems = [_open_system(7, 1), liquid_like_system(20, dtype=DT, seed=4), _open_system(1, 2)]
    batch = Batch.from_systems(systems)
    order = batch_order(batch, "hilbert")
    assert _is_perm(order, 28)
    ptr = batch.ptr.tolist()
    for k, s in enumerate(systems):
        assert torch.equal(order[ptr[k] : ptr[k + 1]], canonical_order(s, "hilbert") + ptr[k])
    # usable as System.order / Batch.order
    with_order = Batch.from_systems([s.replace(order=canonical_order(s, "hilbert")) for s in systems])
    assert torch.equal(with_order.order, order)


def test_topology_order_needs_labels():
    with pytest.raises(OrderingError, match="no residue information"):
        topology_order(_open_system(3))
    with pytest.raises(OrderingError, match="ordering='topology'"):
        canonical_order(_open_system(3), "topology")
    with pytest.raises(ValueError, match="'topology' or 'hilbert'"):
        canonical_order(_open_system(3), "auto")


def _transformed_copies(sys_, seed=0):
    """Rotated+translated, reflected+translated and (periodic) re-wrapped copies of ``sys_``."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for reflection in (False, True):
        rot = random_orthogonal(seed + int(reflection), reflection=reflection)
        shift = torch.rand(3, generator=g, dtype=DT) * 20 - 10
        cell = sys_.cell
        if cell is not None:
            cell = cell @ rot.T
            if float(torch.linalg.det(cell)) < 0:
                cell = cell.clone()
                cell[0] = -cell[0]
        out.append(sys_.replace(positions=sys_.positions @ rot.T + shift, cell=cell))
    if sys_.cell is not None:
        shift = torch.rand(3, generator=g, dtype=DT) * 30
        moved = sys_.positions + shift
        frac = torch.linalg.solve(sys_.cell.T, moved.T).T
        out.append(sys_.replace(positions=(frac - torch.floor(frac)) @ sys_.cell))  # translated + re-wrapped
    return out


@pytest.mark.parametrize("periodic", [False, True])
def test_hilbert_order_is_frame_independent(periodic):
    sys_ = liquid_like_system(300, triclinic=True, dtype=DT, seed=5) if periodic else _open_system(300, 3)
    order = canonical_order(sys_, "hilbert")
    for copy in _transformed_copies(sys_):
        assert torch.equal(canonical_order(copy, "hilbert"), order)


def test_degenerate_inertia_falls_back_deterministically():
    # a cube of 8 atoms plus its centre: all three principal moments equal
    corners = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=3)), dtype=DT)
    cube = System(positions=torch.cat([corners, torch.zeros(1, 3, dtype=DT)]), species=[6] * 8 + [8])
    order = canonical_order(cube, "hilbert")
    assert _is_perm(order, 9)
    assert torch.equal(canonical_order(cube, "hilbert"), order)
    for copy in _transformed_copies(cube):
        o = canonical_order(copy, "hilbert")
        # a symmetry-equivalent order: the same sequence of species (atoms are equivalent by symmetry)
        assert torch.equal(copy.species[o], cube.species[order])


def test_order_samples_and_random_orders_are_valid_and_deterministic():
    for sys_ in (_open_system(60, 1), liquid_like_system(80, dtype=DT, seed=1)):
        rows = order_samples(sys_, "hilbert", 5)
        assert rows.shape == (5, sys_.n_atoms)
        assert torch.equal(rows[0], canonical_order(sys_, "hilbert"))
        assert all(_is_perm(r, sys_.n_atoms) for r in rows)
        assert len({tuple(r.tolist()) for r in rows}) == 5  # distinct orders
        assert torch.equal(order_samples(sys_, "hilbert", 5), rows)
        g = torch.Generator().manual_seed(0)
        assert _is_perm(random_order(sys_, "hilbert", g), sys_.n_atoms)


def test_topology_variants_shuffle_only_identical_solvent_molecules():
    # chain 0: a 3-residue "protein" (different residues); chain 1: four identical waters
    res = [0, 0, 1, 1, 1, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5, 6, 6, 6]
    chain = [0] * 5 + [0] + [1] * 12
    species = [7, 6, 7, 6, 8, 6] + [8, 1, 1] * 4
    names = ("GLY",) * 2 + ("ALA",) * 3 + ("LEU",) + ("HOH",) * 12
    sys_ = System(
        positions=torch.randn(18, 3, dtype=DT),
        species=species,
        labels=Labels(residue_index=res, chain_index=chain, residue_names=names),
    )
    rows = order_samples(sys_, "topology", 4)
    assert torch.equal(rows[0], torch.arange(18))
    for r in rows:
        assert r[:6].tolist() == list(range(6))  # the chain keeps its sequence
        waters = r[6:].reshape(4, 3)
        assert bool(((waters[:, 1:] - waters[:, :1]) == torch.tensor([1, 2])).all())  # molecules stay whole
    assert len({tuple(r.tolist()) for r in rows}) > 1


@pytest.mark.parametrize("ordering", ["topology", "hilbert"])
def test_symmetry_fd_and_batch_checks_hold_for_both_orderings(ordering):
    """The test kit's checks (fresh evaluations for symmetry) on a model whose order matters."""
    from hyenamd.surrogate import GHyena, GHyenaConfig
    from hyenamd.testing import (
        assert_batch_independent,
        assert_equivariant,
        assert_forces_match_fd,
        rattled_cu,
        water_trimer,
    )

    cfg = GHyenaConfig(
        species=(1, 8, 29), cutoff=3.5, n_scalar=8, n_vector=4, n_rbf=4,
        pattern=("local", "global", "local", "global"), dtype="float64", ordering=ordering,
    )  # fmt: skip
    model = GHyena(cfg)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # off the zero-initialised branches, so the order matters
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    cu = rattled_cu(seed=1)
    cu = cu.replace(labels=Labels(residue_index=torch.arange(cu.n_atoms)))
    for s in (water_trimer(), cu):
        assert_equivariant(model, s)
    assert_forces_match_fd(model, water_trimer())
    assert_batch_independent(model, [water_trimer(), cu])
    rev = cu.replace(order=torch.arange(cu.n_atoms - 1, -1, -1))
    from hyenamd import Batch

    e = [float(model(Batch.from_system(s))["energy"][0]) for s in (cu, rev)]
    assert abs(e[0] - e[1]) > 1e-8  # the order does matter for this model
