"""Neighbour lists against brute force and ASE; minimum image; the Verlet skin list."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hyenamd.geometry import (
    Neighbors,
    VerletList,
    batch_neighbor_list,
    brute_force_neighbor_list,
    complete_cell,
    edge_vectors,
    minimum_image,
    neighbor_list,
    wrap_positions,
)

DT = torch.float64


def pair_set(nb: Neighbors) -> set[tuple[int, int, int, int, int]]:
    """Pairs as a set of (i, j, s0, s1, s2); a half list is expanded to a full one."""
    out = set()
    for i, j, s in zip(nb.i.tolist(), nb.j.tolist(), nb.shifts.tolist()):
        out.add((i, j, *s))
        if not nb.full:
            out.add((j, i, *(-x for x in s)))
    return out


def random_triclinic(rng: np.random.Generator, scale: float) -> torch.Tensor:
    """A right-handed, moderately skewed cell (upper-triangular-ish, rows = vectors)."""
    a = np.diag(rng.uniform(0.8, 1.2, 3) * scale)
    a[1, 0] = rng.uniform(-0.3, 0.3) * scale
    a[2, 0] = rng.uniform(-0.3, 0.3) * scale
    a[2, 1] = rng.uniform(-0.3, 0.3) * scale
    return torch.tensor(a, dtype=DT)


def random_positions(rng, cell, n, pbc):
    frac = rng.uniform(-0.2, 1.2, (n, 3))  # some atoms outside the cell on purpose
    return torch.tensor(frac, dtype=DT) @ complete_cell(cell)


CASES = [
    # (cell scale, n_atoms, pbc, cutoff): includes tiny cells with cutoff > half the box
    (8.0, 40, (True, True, True), 3.0),
    (6.0, 30, (True, False, True), 3.5),
    (5.0, 12, (True, True, True), 4.0),  # cutoff > box/2: several images of one neighbour
    (3.0, 5, (True, True, True), 4.5),  # cutoff > box: self-images
    (7.0, 25, (False, False, False), 3.0),
    (4.0, 10, (False, True, True), 5.0),
]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("case", CASES)
def test_vesin_matches_brute_force(case, seed):
    scale, n, pbc, cutoff = case
    rng = np.random.default_rng(seed)
    cell = random_triclinic(rng, scale)
    pbc_t = torch.tensor(pbc)
    x = random_positions(rng, cell, n, pbc)
    ref = pair_set(brute_force_neighbor_list(x, cell, pbc_t, cutoff))
    assert len(ref) > 0
    assert pair_set(neighbor_list(x, cell, pbc_t, cutoff, full=True)) == ref
    half = neighbor_list(x, cell, pbc_t, cutoff, full=False)
    assert 2 * len(half) == len(ref)
    assert pair_set(half) == ref
    # pair vectors are shorter than the cutoff and equal to the shifted differences
    nb = neighbor_list(x, cell, pbc_t, cutoff)
    assert float(edge_vectors(x, cell, nb).norm(dim=1).max()) < cutoff


@pytest.mark.parametrize("case", CASES)
def test_matches_ase_neighbor_list(case):
    from ase import Atoms
    from ase.neighborlist import neighbor_list as ase_nl

    scale, n, pbc, cutoff = case
    rng = np.random.default_rng(7)
    cell = random_triclinic(rng, scale)
    x = random_positions(rng, cell, n, pbc)
    atoms = Atoms(positions=x.numpy(), cell=cell.numpy(), pbc=pbc, numbers=[18] * n)
    i, j, s = ase_nl("ijS", atoms, cutoff)
    ase_set = {(a, b, *c) for a, b, c in zip(i.tolist(), j.tolist(), s.tolist())}
    assert pair_set(neighbor_list(x, cell, torch.tensor(pbc), cutoff)) == ase_set


def test_open_system_without_cell():
    rng = np.random.default_rng(3)
    x = torch.tensor(rng.uniform(0, 6, (20, 3)), dtype=DT)
    ref = pair_set(brute_force_neighbor_list(x, None, None, 2.5))
    assert pair_set(neighbor_list(x, None, None, 2.5)) == ref
    assert all(p[2:] == (0, 0, 0) for p in ref)


def test_slab_with_zero_cell_vector():
    rng = np.random.default_rng(4)
    cell = torch.tensor([[5.0, 0, 0], [1.0, 5.0, 0], [0, 0, 0]], dtype=DT)
    pbc = torch.tensor([True, True, False])
    x = torch.tensor(rng.uniform(0, 5, (30, 3)), dtype=DT)
    ref = pair_set(brute_force_neighbor_list(x, cell, pbc, 3.0))
    assert pair_set(neighbor_list(x, cell, pbc, 3.0)) == ref


def test_batch_neighbor_list_keeps_systems_apart():
    rng = np.random.default_rng(5)
    cells = [random_triclinic(rng, 6.0), random_triclinic(rng, 7.0)]
    xs = [random_positions(rng, c, m, None) for c, m in zip(cells, (15, 22))]
    pbc = torch.tensor([[True, True, True], [True, False, True]])
    ptr = torch.tensor([0, 15, 37])
    nb = batch_neighbor_list(torch.cat(xs), torch.stack(cells), pbc, ptr, 3.0)
    batch = torch.repeat_interleave(torch.arange(2), torch.tensor([15, 22]))
    assert torch.equal(batch[nb.i], batch[nb.j])
    for k in range(2):
        sel = batch[nb.i] == k
        sub = Neighbors(nb.i[sel] - ptr[k], nb.j[sel] - ptr[k], nb.shifts[sel])
        assert pair_set(sub) == pair_set(brute_force_neighbor_list(xs[k], cells[k], pbc[k], 3.0))


def test_minimum_image_triclinic_and_mixed_pbc():
    rng = np.random.default_rng(6)
    cell = random_triclinic(rng, 5.0)
    pbc = torch.tensor([True, False, True])
    d = torch.tensor(rng.uniform(-12, 12, (200, 3)), dtype=DT)
    mi = minimum_image(d, cell, pbc)
    # brute force over lattice images along the periodic axes
    shifts = torch.tensor([(a, 0, c) for a in range(-5, 6) for c in range(-5, 6)], dtype=DT)
    cand = d[:, None, :] + (shifts @ cell)[None]
    best = cand.norm(dim=-1).min(dim=1).values
    assert torch.allclose(mi.norm(dim=1), best, atol=1e-12)
    # the result differs from d by a lattice vector along periodic axes only
    f = (mi - d) @ torch.linalg.inv(cell)
    assert torch.allclose(f, torch.round(f), atol=1e-9)
    assert torch.allclose(f[:, 1], torch.zeros(200, dtype=DT), atol=1e-9)


def test_minimum_image_is_differentiable():
    cell = torch.eye(3, dtype=DT) * 4.0
    d = torch.tensor([[3.5, 0.1, -0.2]], dtype=DT, requires_grad=True)
    out = minimum_image(d, cell, torch.tensor([True, True, True]))
    out.sum().backward()
    assert torch.allclose(out.detach(), torch.tensor([[-0.5, 0.1, -0.2]], dtype=DT))
    assert torch.allclose(d.grad, torch.ones_like(d))


def test_wrap_positions_into_cell():
    rng = np.random.default_rng(8)
    cell = random_triclinic(rng, 5.0)
    pbc = torch.tensor([True, True, False])
    x = torch.tensor(rng.uniform(-20, 20, (50, 3)), dtype=DT)
    w = wrap_positions(x, cell, pbc)
    f = w @ torch.linalg.inv(cell)
    assert bool(((f[:, :2] >= 0) & (f[:, :2] < 1)).all())
    f0 = x @ torch.linalg.inv(cell)
    assert torch.allclose(f[:, 2], f0[:, 2])
    assert torch.allclose((f - f0)[:, :2], torch.round((f - f0)[:, :2]), atol=1e-10)


@pytest.mark.parametrize("exact", [True, False])
@pytest.mark.parametrize("batched", [False, True])
def test_verlet_list_random_walk_with_rewrapping(batched, exact):
    """Never misses a pair within the cutoff, even when positions are re-wrapped every step."""
    random_walk(batched, exact, (True, True, True))


@pytest.mark.parametrize("exact", [True, False])
@pytest.mark.parametrize("pbc", [(True, False, True), (False, False, False)])
def test_verlet_list_one_system_random_walk_partly_or_not_periodic(pbc, exact):
    """The one-system reuse path (no per-atom system index) with a non-periodic axis, or none."""
    random_walk(False, exact, pbc)


def random_walk(batched: bool, exact: bool, pbc0: tuple[bool, bool, bool]) -> None:
    """300 random-walk steps, re-wrapped every 7th, of one system (pbc ``pbc0``) or a batch of
    two: the Verlet list against a fresh list at every step (the oracle)."""
    rng = np.random.default_rng(9)
    cutoff, skin = 3.0, 1.0
    cells = [random_triclinic(rng, 7.0), random_triclinic(rng, 6.0)]
    pbcs = [torch.tensor(pbc0), torch.tensor([True, False, True])]
    ns = [40, 30]
    if not batched:
        cells, pbcs, ns = cells[:1], pbcs[:1], ns[:1]
    xs = [random_positions(rng, c, n, None) for c, n in zip(cells, ns)]
    ptr = torch.tensor([0, *np.cumsum(ns).tolist()])
    nl = VerletList(cutoff, skin, exact=exact)
    n_steps = 300
    for step in range(n_steps):
        xs = [x + torch.tensor(rng.normal(0, 0.05, x.shape), dtype=DT) for x in xs]
        if step % 7 == 0:  # an integrator re-wrapping into the cell
            xs = [wrap_positions(x, c, p) for x, c, p in zip(xs, cells, pbcs)]
        if batched:
            nb = nl(torch.cat(xs), torch.stack(cells), torch.stack(pbcs), ptr)
            fresh = batch_neighbor_list(torch.cat(xs), torch.stack(cells), torch.stack(pbcs), ptr, cutoff)
        else:
            nb = nl(xs[0], cells[0], pbcs[0])
            fresh = neighbor_list(xs[0], cells[0], pbcs[0], cutoff)
        if exact:
            assert pair_set(nb) == pair_set(fresh), f"step {step}"
        else:  # a superset: every pair within the cutoff, none beyond cutoff + 2 skin
            assert pair_set(fresh) <= pair_set(nb), f"step {step}"
            x_all = torch.cat(xs)
            c_all = torch.stack(cells) if batched else cells[0]
            d = edge_vectors(
                x_all, c_all, nb, torch.repeat_interleave(torch.arange(len(ns)), torch.tensor(ns))
            )
            assert float(d.norm(dim=1).max()) < cutoff + 2 * skin  # each atom moved < skin/2
    assert nl.n_calls == n_steps
    # rms step 0.05*sqrt(3) ≈ 0.087 Å: an atom needs many steps to travel skin/2 = 0.5 Å
    assert 1 < nl.n_builds < n_steps / 4


def test_verlet_list_rebuilds_on_cell_change():
    rng = np.random.default_rng(10)
    cell = torch.eye(3, dtype=DT) * 8
    pbc = torch.tensor([True] * 3)
    x = random_positions(rng, cell, 30, None)
    nl = VerletList(3.0, 1.0)
    nl(x, cell, pbc)
    nl(x, cell, pbc)
    assert nl.n_builds == 1
    nb = nl(x, cell * 1.01, pbc)
    assert nl.n_builds == 2
    assert pair_set(nb) == pair_set(neighbor_list(x, cell * 1.01, pbc, 3.0))


def test_verlet_skin_too_large_for_cell():
    cell = torch.eye(3, dtype=DT) * 1.5
    with pytest.raises(ValueError, match="skin"):
        VerletList(1.0, 2.0)(torch.zeros(2, 3, dtype=DT) + 0.5, cell, torch.tensor([True] * 3))


def test_bad_cutoff():
    with pytest.raises(ValueError, match="cutoff"):
        neighbor_list(torch.zeros(2, 3), None, None, -1.0)


@pytest.mark.parametrize("exact", [True, False])
def test_pair_indices_are_int32_through_builds_batches_and_verlet_reuse(exact):
    """20 bytes per pair: int32 i, j and shifts from vesin, batches and a re-wrapped Verlet reuse."""
    rng = np.random.default_rng(11)
    cell = random_triclinic(rng, 6.0)
    pbc = torch.tensor([True, True, True])
    x = random_positions(rng, cell, 30, pbc)
    nb = neighbor_list(x, cell, pbc, 3.0)
    assert (nb.i.dtype, nb.j.dtype, nb.shifts.dtype) == (torch.int32,) * 3
    assert pair_set(nb) == pair_set(brute_force_neighbor_list(x, cell, pbc, 3.0))
    ptr = torch.tensor([0, 30, 60])
    two = batch_neighbor_list(
        torch.cat([x, x + 0.1]), torch.stack([cell, cell]), torch.stack([pbc, pbc]), ptr, 3.0
    )
    assert (two.i.dtype, two.j.dtype, two.shifts.dtype) == (torch.int32,) * 3
    assert int(two.i.max()) >= 30 and len(two) == 2 * len(nb)
    nl = VerletList(3.0, 1.0, exact=exact)
    nl(x, cell, pbc)
    moved = wrap_positions(x + cell[0] - cell[2], cell, pbc)  # every atom re-wrapped, none moved
    again = nl(moved, cell, pbc)
    assert nl.n_builds == 1
    assert (again.i.dtype, again.j.dtype, again.shifts.dtype) == (torch.int32,) * 3
    assert pair_set(neighbor_list(moved, cell, pbc, 3.0)) <= pair_set(again)
