"""The whole G-Hyena model: symmetry, conservation, batching, PBC, config, presets (float64 unless said)."""

from __future__ import annotations

import dataclasses
import pathlib

import pytest
import torch

from hyenamd import Batch
from hyenamd.config import ConfigError, load_config
from hyenamd.geometry import wrap_positions
from hyenamd.surrogate import GHyena, GHyenaConfig, compute_forces
from hyenamd.testing import (
    assert_batch_independent,
    assert_equivariant,
    assert_forces_match_fd,
    lj_argon,
    perturb_parameters,
    rattled_cu,
    water_trimer,
)

ROOT = pathlib.Path(__file__).resolve().parents[2]
DT = torch.float64
PATTERNS = [("local", "local"), ("local", "global", "local", "global"), ("global", "local")]
SYSTEMS = {
    "water_trimer": water_trimer,
    "argon": lambda: lj_argon(2, rattle=0.15, seed=1),
    "triclinic_cu": lambda: rattled_cu(seed=2),
}


CONVS = ["linear", "circular"]


def tiny(pattern=("local", "local"), dtype="float64", perturb=True, **kw) -> GHyena:
    """A tiny model; ``perturb``: weights moved off their init (residual branches start at 0)."""
    cfg = GHyenaConfig(
        species=(1, 8, 18, 29),
        cutoff=4.0,
        n_scalar=8,
        n_vector=4,
        n_rbf=6,
        avg_neighbors=8.0,
        pattern=pattern,
        filter_order=8,
        dtype=dtype,
        energy_shifts=(-0.5, -2.0, -0.1, -3.0),
        **kw,
    )
    model = GHyena(cfg)
    return perturb_parameters(model, seed=cfg.seed + 11) if perturb else model


#: (pattern, conv): both conv modes wherever a global block is (conv acts there only)
PATTERN_CONVS = [(p, c) for p in PATTERNS for c in CONVS if "global" in p or c == "circular"]


@pytest.mark.parametrize(
    "pattern,conv", PATTERN_CONVS, ids=lambda x: "-".join(x) if isinstance(x, tuple) else x
)
@pytest.mark.parametrize("name", sorted(SYSTEMS))
def test_energy_invariant_forces_stress_equivariant_float64(pattern, name, conv):
    model = tiny(pattern, heads=("energy", "direct_forces"), conv=conv)
    out = assert_equivariant(model, SYSTEMS[name](), atol=1e-10, rtol=1e-10)
    assert out["forces"].abs().max() > 1e-4  # non-trivial forces
    if name != "water_trimer":
        assert out["stress"].abs().max() > 1e-6


@pytest.mark.parametrize("pattern", PATTERNS, ids="-".join)
def test_equivariance_float32_on_lj_argon_256(pattern):
    system = lj_argon(4, rattle=0.1, dtype=torch.float32)
    assert system.n_atoms == 256
    assert_equivariant(tiny(pattern, dtype="float32"), system, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("conv", CONVS)
@pytest.mark.parametrize("pattern", PATTERNS[1:], ids="-".join)
@pytest.mark.parametrize("name", ["water_trimer", "triclinic_cu"])
def test_forces_and_stress_match_finite_differences(pattern, name, conv):
    assert_forces_match_fd(tiny(pattern, conv=conv), SYSTEMS[name](), h=1e-5, rtol=1e-6)


@pytest.mark.parametrize("name", ["water_trimer", "triclinic_cu"])
def test_local_forces_and_stress_match_finite_differences(name):
    assert_forces_match_fd(tiny(PATTERNS[0]), SYSTEMS[name](), h=1e-5, rtol=1e-6)


@pytest.mark.parametrize("conv", CONVS)
@pytest.mark.parametrize("pattern", PATTERNS, ids="-".join)
def test_batch_of_three_equals_three_separate_calls(pattern, conv):
    systems = [SYSTEMS[k]() for k in ("triclinic_cu", "water_trimer", "argon")]
    assert_batch_independent(
        tiny(pattern, heads=("energy", "direct_forces"), conv=conv), systems, atol=1e-12, rtol=1e-12
    )


@pytest.mark.parametrize("pattern", PATTERNS, ids="-".join)
def test_energy_exactly_invariant_to_periodic_rewrap_and_translation(pattern):
    model = tiny(pattern)
    system = rattled_cu(seed=4)  # no order: each copy is ordered afresh by the model's rule
    ref = compute_forces(model, Batch.from_system(system))
    moved = system.positions + torch.tensor([3.3, -7.1, 12.0], dtype=DT)
    for x in (moved, wrap_positions(moved, system.cell, system.pbc)):
        out = compute_forces(model, Batch.from_system(system.replace(positions=x)))
        assert abs(float(out["energy"][0] - ref["energy"][0])) < 1e-11
        assert (out["forces"] - ref["forces"]).abs().max() < 1e-11


def test_local_model_is_extensive_over_a_triclinic_supercell():
    """Local-only stacks see periodic images through lattice shifts: a 2×1×1 supercell has 2× the energy."""
    model = tiny(("local", "local"))
    cu = rattled_cu(seed=5, n=2)
    sup = cu.replace(
        positions=torch.cat([cu.positions, cu.positions + cu.cell[0]]),
        species=torch.cat([cu.species, cu.species]),
        masses=None,
        cell=cu.cell * torch.tensor([[2.0], [1.0], [1.0]], dtype=DT),
    )
    with torch.no_grad():
        e1 = model(Batch.from_system(cu))
        e2 = model(Batch.from_system(sup))
    assert abs(float(e2["energy"][0] - 2 * e1["energy"][0])) < 1e-11
    assert (e2["energies"] - torch.cat([e1["energies"]] * 2)).abs().max() < 1e-12


def test_outputs_have_documented_shapes_and_dtypes():
    model = tiny(heads=("energy", "direct_forces"))
    batch = Batch.from_systems([water_trimer(), rattled_cu()])
    out = model(batch)
    assert out["energy"].shape == (2,) and out["energies"].shape == (36,)
    assert out["direct_forces"].shape == (36, 3) and out["energy"].dtype == DT
    assert torch.allclose(out["energy"], torch.stack([out["energies"][:9].sum(), out["energies"][9:].sum()]))


def test_unknown_species_and_dtype_mismatch_are_clear_errors():
    model = tiny()
    bad = water_trimer().replace(species=torch.tensor([8, 1, 1, 8, 1, 1, 7, 6, 1]))
    with pytest.raises(ValueError, match=r"species \[6, 7\] are not known"):
        model(Batch.from_system(bad))
    with pytest.raises(ValueError, match="float32 but the model is torch.float64"):
        model(Batch.from_system(water_trimer(dtype=torch.float32)))


def test_same_seed_same_weights_other_seed_other_weights():
    a, b, c = tiny(seed=3), tiny(seed=3), tiny(seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


@pytest.mark.parametrize(
    "change, match",
    [
        ({"species": ()}, "at least one"),
        ({"species": (1, 1)}, "duplicates"),
        ({"species": (0,)}, "atomic numbers"),
        ({"cutoff": 0.0}, "cutoff"),
        ({"pattern": ()}, "at least one block"),
        ({"pattern": ("local", "attention")}, "unknown block kind"),
        ({"heads": ("direct_forces",)}, "must include 'energy'"),
        ({"heads": ("energy", "dipole")}, "unknown head"),
        ({"energy_shifts": (1.0,)}, "energy_shifts has 1"),
        ({"envelope_exponent": 1}, "C²"),
        ({"dynamics_horizon_fs": -1.0}, "dynamics_horizon_fs"),
    ],
)
def test_config_rejects_bad_values(change, match):
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(GHyenaConfig(), **change)


@pytest.mark.parametrize("name", ["S", "M", "L"])
def test_presets_map_one_to_one_onto_the_config(name):
    import yaml

    path = ROOT / "configs" / "surrogate" / f"{name}.yaml"
    cfg = load_config(path, GHyenaConfig)
    keys = set(yaml.safe_load(path.read_text()))
    assert keys == {f.name for f in dataclasses.fields(GHyenaConfig)}  # every field, nothing else
    assert cfg.pattern.count("local") >= 2 and "global" in cfg.pattern
    with pytest.raises(ConfigError, match="unknown key 'n_layers'"):
        load_config(path, GHyenaConfig, ["n_layers=3"])


def test_preset_sizes_grow():
    sizes = []
    for name in ("S", "M", "L"):
        cfg = load_config(ROOT / "configs" / "surrogate" / f"{name}.yaml", GHyenaConfig, ["pattern=[local]"])
        sizes.append(sum(p.numel() for p in GHyena(cfg).parameters()))
    assert sizes[0] < sizes[1] < sizes[2]


@pytest.mark.slow
def test_model_scaling_benchmark_quick(tmp_path):
    """benchmarks/model_scaling.py --quick runs (fresh process per size) and writes valid JSON + PNG."""
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location(
        "bench_model_scaling", ROOT / "benchmarks" / "model_scaling.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.main(["--quick", "--out", str(tmp_path), "--threads", "1", "--repeats", "1"])
    data = json.loads((tmp_path / "model_scaling.json").read_text())
    assert {"date", "git_commit", "machine", "rows", "alpha_wall_n_ge_1e4", "skipped"} <= set(data)
    assert [r["n_atoms"] for r in data["rows"]] == [300, 1000] and data["skipped"] == []
    for r in data["rows"]:
        assert r["model_s"] > 0 and r["model_cpu_s"] > 0 and r["peak_rss_gb"] > 0 and r["pairs_full"] > 0
    assert data["alpha_wall_n_ge_1e4"] is None  # no size ≥ 10⁴ in quick mode
    assert (tmp_path / "model_scaling.png").stat().st_size > 1000


@pytest.mark.parametrize("fresh", [False, True], ids=["perturbed", "fresh"])
@pytest.mark.parametrize("pattern", [*PATTERNS, ("local", "global")], ids="-".join)
def test_forces_are_smooth_through_a_perfect_lattice(pattern, fresh):
    """No cone in E where vector features vanish by symmetry: F(δ) - F(-δ) shrinks ∝ δ.

    (local, global) failed with the former 1e-8 floor of the norm in GatedEquivariantMLP; the
    floors are now learned, initialised at 1e-3 (the features' scale), still smooth.
    """
    model = tiny(pattern, perturb=not fresh)
    system = lj_argon(2)  # perfect fcc: every vector feature of the first local block is 0
    if model.needs_order:
        from hyenamd.surrogate.ordering import canonical_order

        system = system.replace(order=canonical_order(system, model.cfg.ordering))

    def force(dx: float) -> float:
        x = system.positions.clone()
        x[0, 0] += dx
        return float(compute_forces(model, Batch.from_system(system.replace(positions=x)))["forces"][0, 0])

    jump_small = abs(force(1e-6) - force(-1e-6))
    jump_large = abs(force(1e-4) - force(-1e-4))
    assert jump_large > 1e-9  # the force does respond to the displacement
    assert jump_small < 0.05 * jump_large  # linear (≈ 0.01×), not a jump at δ = 0


def test_block_checkpointing_changes_nothing_but_memory():
    """checkpoint_atoms=0 (always) == -1 (never): energies, forces, and the force-loss gradients."""
    system = rattled_cu(seed=6)
    grads, outs = [], []
    for ckpt in (-1, 0):
        model = tiny(("local", "global", "local", "global"), checkpoint_atoms=ckpt)
        out = compute_forces(model, Batch.from_system(system), create_graph=True)
        loss = out["energy"].sum() + out["forces"].pow(2).sum()
        grads.append(torch.autograd.grad(loss, list(model.parameters()), allow_unused=True))
        outs.append(out)
    assert torch.allclose(outs[0]["forces"], outs[1]["forces"], rtol=0, atol=1e-12)
    infer = compute_forces(
        tiny(("local", "global", "local", "global"), checkpoint_atoms=0), Batch.from_system(system)
    )
    assert torch.allclose(
        infer["forces"], outs[0]["forces"].detach(), rtol=0, atol=1e-12
    )  # recomputed frozen
    for g0, g1 in zip(*grads):
        assert (g0 is None) == (g1 is None)
        assert g0 is None or torch.allclose(g0, g1, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="checkpoint_atoms"):
        dataclasses.replace(GHyenaConfig(), checkpoint_atoms=-2)


def test_inference_records_no_parameter_graph_and_matches_training_path():
    model = tiny(("local", "global"))
    batch = Batch.from_system(rattled_cu(seed=7))
    infer = compute_forces(model, batch)  # detached parameters
    train = compute_forces(model, batch, create_graph=True)
    assert torch.allclose(infer["forces"], train["forces"].detach(), rtol=0, atol=1e-13)
    assert all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())  # the model itself is untouched


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_superset_neighbour_list_gives_the_results_of_the_pairs_within_cutoff(dtype):
    """A Verlet list's skin pairs are dropped before the local blocks: the same energies and
    forces, bit for bit, as the list of its pairs within the cutoff (same order), and the exact
    list's results to rounding."""
    from hyenamd.geometry import Neighbors, batch_neighbor_list, edge_vectors
    from hyenamd.surrogate import local_block

    model = tiny(("local", "global", "local", "global"), dtype=dtype)
    batch = Batch.from_system(lj_argon(2, rattle=0.15, seed=3, dtype=model.dtype))
    exact = batch_neighbor_list(batch.positions, batch.cell, batch.pbc, batch.ptr, model.cutoff)
    wide = batch_neighbor_list(batch.positions, batch.cell, batch.pbc, batch.ptr, model.cutoff + 1.5)
    keep = edge_vectors(batch.positions, batch.cell, wide, batch.batch).norm(dim=-1) < model.cutoff
    inner = Neighbors(wide.i[keep], wide.j[keep], wide.shifts[keep], wide.full)
    assert inner.i.shape[0] == exact.i.shape[0] and wide.i.shape[0] > 1.5 * exact.i.shape[0]
    seen = []
    original = local_block.local_message
    try:
        local_block.local_message = lambda s, v, edges, *a, **k: (
            seen.append(len(edges)) or original(s, v, edges, *a, **k)
        )
        a = compute_forces(model, batch, stress=True, neighbors=inner)
        b = compute_forces(model, batch, stress=True, neighbors=wide)
    finally:
        local_block.local_message = original
    c = compute_forces(model, batch, stress=True, neighbors=exact)
    assert seen == [exact.i.shape[0]] * 4  # two local blocks, two calls
    tol = 1e-12 if dtype == "float64" else 1e-5
    for key in ("energy", "forces", "stress"):
        if key != "stress":  # the cell gradient is a matrix product over all listed pairs
            assert torch.equal(a[key], b[key]), key  # (the dropped ones' zero rows change its rounding)
        assert torch.allclose(a[key], b[key], rtol=tol, atol=tol * 1e-2), key
        assert torch.allclose(b[key], c[key], rtol=tol, atol=tol), key


@pytest.mark.parametrize("conv", CONVS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_small_system_dft_path_equals_fft_path(conv, dtype, monkeypatch):
    """One small system's global blocks by DFT matrices == by the FFT kernels (fresh evaluations)."""
    from hyenamd.surrogate import dft_conv

    model = tiny(("local", "global", "local", "global"), dtype=dtype, conv=conv)
    batch = Batch.from_system(rattled_cu(seed=4)).to(dtype=model.dtype)
    outs = []
    for max_tokens in (0, 1 << 20):  # FFT kernels, then DFT matrices
        monkeypatch.setattr(dft_conv, "MAX_TOKENS", max_tokens)
        outs.append(compute_forces(model, batch, stress=True))
    tol = 1e-10 if dtype == "float64" else 2e-5
    for key in ("energy", "forces", "stress"):
        a, b = outs[0][key], outs[1][key]
        assert float((a - b).abs().max()) <= tol * max(1.0, float(a.abs().max())), key


def test_species_check_is_skipped_only_for_the_same_unchanged_tensor():
    """The species check is cached per tensor and version: an in-place change is re-checked."""
    model = tiny()
    batch = Batch.from_system(water_trimer())
    model(batch)
    assert model.__dict__["_species_checked"][0] is batch.species
    batch.species[6] = 7  # in place: the version counter moves, the check runs again
    with pytest.raises(ValueError, match=r"species \[7\] are not known"):
        model(batch)
    batch.species[6] = 8
    model(batch)
    other = batch.replace(species=batch.species.clone())
    other.species[0] = 6  # another tensor: checked
    with pytest.raises(ValueError, match=r"species \[6\] are not known"):
        model(other)
