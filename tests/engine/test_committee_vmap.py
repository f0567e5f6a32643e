"""Committee members under torch.func.vmap against the loop over members (the O(K) reference)."""

from __future__ import annotations

import pytest
import torch

from hyenamd import Batch
from hyenamd.engine.committee import Committee, loop_statistics
from hyenamd.engine.committee_vmap import shared_inputs, vmap_energies
from hyenamd.surrogate import compute_forces


def _assert_same(a: dict, b: dict, keys) -> None:
    for k in keys:
        assert a[k].shape == b[k].shape, k
        scale = max(float(a[k].abs().max()), 1e-300)
        assert float((a[k] - b[k]).abs().max()) <= 1e-12 * scale, k


def test_vmap_equals_the_loop(make_ghyena, water_like):
    """Energy, forces, stress and their variances: one vmapped pass = the members one by one."""
    members = [make_ghyena(seed=k) for k in range(4)]
    c = Committee(members)
    assert c.vectorized
    batch = Batch.from_system(water_like)  # fresh: no order, no neighbour list given
    vec = c.statistics(batch, stress=True)
    loop = c.statistics(batch, stress=True, vectorize=False)
    keys = ("energy", "energies", "forces", "stress")
    _assert_same(vec, loop, [*keys, *(f"{k}_var" for k in keys if k != "energies"), "forces_comm"])
    assert float(vec["forces_var"].max()) > 1e-8  # the members really differ
    # and each member alone, evaluated fresh with its own neighbour list and order
    fresh = [compute_forces(m, batch, stress=True) for m in members]
    for k in ("energy", "forces", "stress"):
        assert torch.allclose(vec[f"{k}_comm"], torch.stack([o[k] for o in fresh]), rtol=1e-12, atol=1e-15)


def test_vmap_on_a_batch_of_two_systems_with_dynamics_head(make_ghyena, water_like):
    """Two systems of different sizes (padded sequences) and non-zero input vectors (velocities)."""
    members = [make_ghyena(seed=k, heads=("energy", "dynamics")) for k in range(3)]
    small = water_like.replace(
        positions=water_like.positions[:12], species=water_like.species[:12], masses=water_like.masses[:12]
    )
    gen = torch.Generator().manual_seed(0)
    systems = [
        s.replace(velocities=0.01 * torch.randn(s.n_atoms, 3, generator=gen, dtype=torch.float64))
        for s in (water_like, small)
    ]
    batch = Batch.from_systems(systems)
    c = Committee(members)
    vec = c.statistics(batch)
    loop = loop_statistics(members, batch)
    _assert_same({k[:-5]: vec[k] for k in ("energy_comm", "forces_comm")}, loop, ("energy", "forces"))
    assert vec["energy_comm"].shape == (3, 2)


def test_mean_potential_and_gradients_to_members(make_ghyena, water_like):
    """forward (mean energy) is vmapped; its forces are the mean forces; training reaches every member."""
    members = [make_ghyena(seed=k) for k in range(3)]
    c = Committee(members)
    batch = Batch.from_system(water_like)
    mean = compute_forces(c, batch)
    each = torch.stack([compute_forces(m, batch)["forces"] for m in members])
    assert torch.allclose(mean["forces"], each.mean(0), rtol=1e-12, atol=1e-15)
    # parameter gradients through the stacked weights equal those of the loop
    shared, nbrs = shared_inputs(members[0], batch, None)
    energy, _ = vmap_energies(c._stacked, shared, nbrs)
    g_vec = torch.autograd.grad(energy.square().sum(), [m.embedding.weight for m in members])
    e_loop = torch.stack([m(batch)["energy"] for m in members])
    g_loop = torch.autograd.grad(e_loop.square().sum(), [m.embedding.weight for m in members])
    for a, b in zip(g_vec, g_loop):
        assert float(b.abs().max()) > 0 and torch.allclose(a, b, rtol=1e-10, atol=1e-14)


def test_stacked_weights_follow_member_updates(make_ghyena, water_like):
    """The cached stack is rebuilt when a member's weights change in place (version counter)."""
    members = [make_ghyena(seed=k) for k in range(2)]
    c = Committee(members)
    batch = Batch.from_system(water_like)
    before = c.statistics(batch)["energy_comm"]
    with torch.no_grad():
        members[1].energy_head.mlp[-1].bias.add_(0.1)
    after = c.statistics(batch)["energy_comm"]
    assert torch.equal(after[0], before[0]) and not torch.equal(after[1], before[1])
    _assert_same({"energy": after}, {"energy": loop_statistics(members, batch)["energy"]}, ["energy"])


def test_unknown_species_and_fallbacks(make_ghyena, water_like):
    c = Committee([make_ghyena(species=(1, 8), seed=k) for k in range(2)])
    batch = Batch.from_system(water_like.replace(species=torch.full((27,), 6)))
    with pytest.raises(ValueError, match=r"species \[6\] are not known"):
        c.statistics(batch)
    mixed = Committee([make_ghyena(species=(1, 8)), make_ghyena(species=(1, 8, 18), seed=1)])
    assert not mixed.vectorized  # different configs: the loop
    with pytest.raises(ValueError, match="vectorize=True needs"):
        mixed.statistics(Batch.from_system(water_like), vectorize=True)
    out = mixed.statistics(Batch.from_system(water_like))
    assert out["forces_comm"].shape == (2, 27, 3)


def test_large_inputs_with_activation_checkpointing_use_the_loop(make_ghyena, water_like):
    """Checkpointed blocks recompute outside vmap: such inputs run the members in a loop."""
    import dataclasses

    from hyenamd.engine.committee_vmap import vmap_fits
    from hyenamd.surrogate import GHyena

    base = make_ghyena()
    members = [
        GHyena(dataclasses.replace(base.cfg, seed=k, checkpoint_atoms=10, pair_chunk=100)) for k in range(2)
    ]
    c = Committee(members)
    batch, nbrs = shared_inputs(members[0], Batch.from_system(water_like), None)
    assert c.vectorized and not vmap_fits(members[0], batch, nbrs)
    out = c.statistics(batch, nbrs)  # the loop, chosen automatically
    each = torch.stack([compute_forces(m, batch)["forces"] for m in members])
    assert torch.allclose(out["forces_comm"], each, rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="activation checkpointing"):
        c.statistics(batch, nbrs, vectorize=True)
    mean = compute_forces(c, batch)["forces"]  # forward falls back as well
    assert torch.allclose(mean, each.mean(0), rtol=1e-12, atol=1e-15)


def test_vmap_with_the_two_body_term(make_ghyena, water_like):
    """Members with a longer-range pair term: under vmap every pair enters the messages (exact zeros)."""
    import dataclasses

    from hyenamd.surrogate import GHyena
    from hyenamd.testing import perturb_parameters

    base = make_ghyena().cfg
    members = [
        perturb_parameters(GHyena(dataclasses.replace(base, pair_cutoff=5.5, seed=k)), seed=k)
        for k in range(3)
    ]
    c = Committee(members)
    batch = Batch.from_system(water_like)
    vec = c.statistics(batch)
    loop = c.statistics(batch, vectorize=False)
    _assert_same(vec, loop, ("energy", "forces", "energy_var", "forces_var"))
    assert float(vec["forces_var"].max()) > 1e-8


def test_vmap_after_plain_calls_ignores_the_members_inference_caches(make_ghyena, water_like):
    """Plain inference first (it caches parameter lists and filter values on the modules), then
    the vmapped pass: still each member's own results; the models still deep-copy."""
    import copy

    members = [make_ghyena(seed=k) for k in range(3)]
    batch = Batch.from_system(water_like)
    fresh = [compute_forces(m, batch, stress=True) for m in members]
    fresh = [compute_forces(m, batch, stress=True) for m in members]  # cached paths
    c = Committee(members)
    assert c.vectorized
    vec = c.statistics(batch, stress=True)
    for k in ("energy", "forces", "stress"):
        assert torch.allclose(vec[f"{k}_comm"], torch.stack([o[k] for o in fresh]), rtol=1e-12, atol=1e-15)
    again = [compute_forces(m, batch, stress=True) for m in members]  # and plain calls after vmap
    for a, b in zip(again, fresh):
        assert torch.equal(a["forces"], b["forces"])
    copy.deepcopy(c)
    for m in members:
        copy.deepcopy(m)
