"""CompiledGHyena: the compiled energy path equals the eager model; rebuilds do not recompile; fallbacks.

Most tests use the ``aot_eager`` backend (the same traced graphs, forward and backward,
without code generation: ~5-10 s each, so all but one are ``slow``); one ``slow`` test compiles
with inductor (C++ kernels, ~40 s).
"""

from __future__ import annotations

import pytest
import torch

from hyenamd import Batch
from hyenamd.engine import LangevinBAOAB, Simulation
from hyenamd.geometry import batch_neighbor_list
from hyenamd.surrogate import GHyena, GHyenaConfig, compute_forces
from hyenamd.surrogate.compiled import CompiledGHyena, _options
from hyenamd.surrogate.ordering import batch_order
from hyenamd.workflows.demo import liquid_like_system

DT = torch.float64


def tiny_model(**kw) -> GHyena:
    """Small widths, both block kinds, non-zero residual branches and the two-body term."""
    cfg = dict(
        species=(18, 10),
        cutoff=3.0,
        pair_cutoff=3.5,
        n_scalar=8,
        n_vector=2,
        n_rbf=4,
        pattern=("local", "global", "local"),
        filter_order=4,
        filter_bands=2,
        avg_neighbors=8.0,
        residual_init="default",
        dtype="float64",
        seed=1,
    )
    cfg.update(kw)
    model = GHyena(GHyenaConfig(**cfg))
    with torch.no_grad():  # the two-body term starts at zero: give it weight
        for p in [] if model.pair_term is None else model.pair_term.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(2), dtype=p.dtype))
    return model


def tiny_system(n: int = 24, seed: int = 0):
    """A periodic argon/neon liquid-like box (float64), masses left as built."""
    system = liquid_like_system(n, 0.05, seed=seed).to(dtype=DT)
    return system.replace(species=torch.where(torch.arange(n) % 5 == 0, 10, 18))


def tiny_batch(n: int = 24, seed: int = 0, skin: float = 0.5) -> tuple[Batch, object]:
    """The batch of :func:`tiny_system` with its Hilbert order and a list to ``3.5 + skin`` Å."""
    batch = Batch.from_system(tiny_system(n, seed))
    batch = batch.replace(order=batch_order(batch, "hilbert"))
    nb = batch_neighbor_list(batch.positions, batch.cell, batch.pbc, batch.ptr, 3.5 + skin)
    return batch, nb


def graphs() -> int:
    """Graphs compiled since the test started (the ``fresh_dynamo`` fixture resets the count)."""
    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])


pytestmark = pytest.mark.usefixtures("fresh_dynamo")


def assert_same(out: dict, ref: dict, tol: float) -> None:
    for key in ref:
        assert out[key].shape == ref[key].shape, key
        assert torch.allclose(out[key], ref[key], rtol=0.0, atol=tol), (
            key,
            (out[key] - ref[key]).abs().max(),
        )


@pytest.mark.slow
@pytest.mark.parametrize("compact", [True, False], ids=["compact", "superset"])
def test_energy_forces_stress_equal_eager_float64(compact):
    model = tiny_model()
    batch, nb = tiny_batch()
    ref = compute_forces(model, batch, neighbors=nb, stress=True)
    pot = CompiledGHyena(model, backend="aot_eager", compact=compact)
    out = compute_forces(pot, batch, neighbors=nb, stress=True)
    assert pot.fallback_reason is None and pot.n_compiled_calls == 1
    assert set(out) == set(ref)
    assert float(ref["forces"].abs().max()) > 1e-3  # a non-trivial model
    assert_same(out, ref, 1e-10)
    out = compute_forces(pot, batch)  # neighbours built inside, no stress
    assert_same(out, compute_forces(model, batch), 1e-10)


@pytest.mark.slow
def test_linear_conv_and_energy_only_outputs():
    model = tiny_model(conv="linear", pair_cutoff=None, pattern=("global", "local", "global"))
    batch, nb = tiny_batch(20, seed=3)
    pot = CompiledGHyena(model, backend="aot_eager")
    with torch.no_grad():
        out, ref = pot(batch, nb), model(batch, nb)
    assert pot.fallback_reason is None
    assert_same(out, {k: ref[k] for k in ("energy", "energies")}, 1e-10)


@pytest.mark.parametrize(
    "compact", [True, pytest.param(False, marks=pytest.mark.slow)], ids=["compact", "superset"]
)
def test_rebuild_with_another_pair_count_does_not_recompile(compact):
    """Padding: a list with fewer or (within the capacity) more pairs reuses the graph."""
    model = tiny_model()
    pot = CompiledGHyena(model, backend="aot_eager", pad_factor=1.5, compact=compact)
    batch, nb = tiny_batch()
    compute_forces(pot, batch, neighbors=nb)
    before, cap = graphs(), pot.capacity
    assert before >= 1
    for seed, skin in ((1, 0.3), (2, 0.8)):  # other positions and skins: other pair counts
        b, n2 = tiny_batch(seed=seed, skin=skin)
        assert len(n2) != len(nb)
        out = compute_forces(pot, b, neighbors=n2)
        assert_same(out, compute_forces(model, b, neighbors=n2), 1e-10)
    assert graphs() == before and pot.capacity == cap and pot.n_compiled_calls == 3


@pytest.mark.slow
def test_md_run_with_rebuilds_matches_eager_and_compiles_once():
    """A Langevin run through the engine: the same trajectory as eager (float64), rebuilds included."""
    model = tiny_model()
    system = tiny_system()
    pot = CompiledGHyena(model, backend="aot_eager")

    def run(potential):
        sim = Simulation(
            LangevinBAOAB(potential, 2.0, 300.0, 1.0, skin=0.1), system, temperature_k=300.0, seed=0
        )
        sim.run(30)
        return sim

    eager, comp = run(model), run(pot)
    assert comp.integrator.evaluator.n_builds >= 2  # the list was rebuilt in the run
    assert pot.fallback_reason is None and pot.n_compiled_calls == comp.integrator.evaluator.n_evaluations
    assert torch.allclose(comp.state.positions, eager.state.positions, rtol=0, atol=1e-9)
    assert graphs() <= 2  # forward + backward, no recompile at the rebuilds


@pytest.mark.slow
def test_weights_updated_in_place_are_seen():
    """The graph reads the parameters (not copies) and the token filters follow the weights' version."""
    model = tiny_model()
    pot = CompiledGHyena(model, backend="aot_eager")
    batch, nb = tiny_batch()
    before = compute_forces(pot, batch, neighbors=nb)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.1)
    out = compute_forces(pot, batch, neighbors=nb)
    assert not torch.allclose(out["forces"], before["forces"])
    assert_same(out, compute_forces(model, batch, neighbors=nb), 1e-10)
    assert pot.n_compiled_calls == 2


def test_eager_fallbacks_give_eager_results():
    model = tiny_model()
    pot = CompiledGHyena(model, backend="aot_eager")
    b1, _ = tiny_batch(12, seed=1)
    two = Batch.from_systems([tiny_system(12, 1), tiny_system(16, 2)])
    out = compute_forces(pot, two)
    assert "2 systems" in pot.fallback_reason and pot.n_compiled_calls == 0
    assert_same(out, compute_forces(model, two), 0.0)
    # training (parameter gradients) stays eager
    out = compute_forces(pot, b1, create_graph=True)
    assert "training" in pot.fallback_reason
    assert out["forces"].requires_grad
    assert list(pot.eager_calls.values()) == [1, 1] and pot.fallback_reason in pot.eager_calls  # per reason
    # a model outside the compiled subset
    direct = CompiledGHyena(tiny_model(heads=("energy", "direct_forces")), backend="aot_eager")
    assert "direct_forces" in direct.fallback_reason
    assert "direct_forces" in direct(b1)


def test_compile_failure_falls_back_with_a_warning():
    def broken(gm, example_inputs):
        raise RuntimeError("this backend cannot compile")

    model = tiny_model()
    pot = CompiledGHyena(model, backend=broken)
    batch, nb = tiny_batch()
    with pytest.warns(RuntimeWarning, match="compiling failed"):
        out = compute_forces(pot, batch, neighbors=nb)
    assert "this backend cannot compile" in pot.fallback_reason
    assert_same(out, compute_forces(model, batch, neighbors=nb), 0.0)
    compute_forces(pot, batch, neighbors=nb)  # eager from now on, no second attempt
    assert pot.n_compiled_calls == 0 and pot.eager_calls == {pot.fallback_reason: 2}


def test_bad_input_is_refused_before_compiling():
    pot = CompiledGHyena(tiny_model(), backend="aot_eager")
    batch, nb = tiny_batch()
    with pytest.raises(ValueError, match="not known"):
        pot(batch.replace(species=torch.full_like(batch.species, 6)), nb)
    with pytest.raises(ValueError, match="pad_factor"):
        CompiledGHyena(tiny_model(), pad_factor=0.5)
    with pytest.raises(TypeError, match="wraps a GHyena"):
        CompiledGHyena(torch.nn.Linear(2, 2))
    assert graphs() == 0


def test_inductor_options_default_to_scalar_kernels_and_can_be_overridden():
    assert _options("inductor", None, None) == {"cpp.vec_isa_ok": False}
    assert _options("inductor", None, {"cpp.vec_isa_ok": None, "cpp_wrapper": True}) == {
        "cpp.vec_isa_ok": None,
        "cpp_wrapper": True,
    }
    assert _options("inductor", "max-autotune", None) is None  # torch.compile takes mode or options
    assert _options("aot_eager", None, None) is None


@pytest.mark.slow
def test_inductor_float64_equals_eager_and_rebuild_does_not_recompile():
    """The real compiler (C++ kernels): forces at 1e-10 in float64, a new pair count reuses the graphs.

    Two blocks and the default scalar C++ kernels keep the compile to ~40 s on 2 busy cores
    (three blocks with vectorised kernels: ~95 s).
    """
    model = tiny_model(pattern=("local", "global"))
    pot = CompiledGHyena(model, pad_factor=1.5)
    batch, nb = tiny_batch()
    out = compute_forces(pot, batch, neighbors=nb)
    assert pot.fallback_reason is None
    assert_same(out, compute_forces(model, batch, neighbors=nb), 1e-10)
    before = graphs()
    b, n2 = tiny_batch(seed=1, skin=0.3)
    assert len(n2) != len(nb)
    assert_same(compute_forces(pot, b, neighbors=n2), compute_forces(model, b, neighbors=n2), 1e-10)
    assert graphs() == before and pot.n_compiled_calls == 2
