"""HyenaCalculator(compile=...): the compiled small-system path through real ASE.

The compiled runs use the ``aot_eager`` backend (the same traced forward and backward graphs
as inductor, without code generation: seconds, not inductor's ~40 s); ``compile=True`` is
checked to select inductor without compiling (``tests/surrogate/test_compiled.py`` compiles
the wrapper with inductor).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import units
from ase.md.verlet import VelocityVerlet as AseVelocityVerlet

from hyenamd.engine import HyenaCalculator
from hyenamd.engine.committee import Committee
from hyenamd.engine.potentials import LennardJones
from hyenamd.surrogate import GHyena, GHyenaConfig
from hyenamd.workflows.demo import liquid_like_system


def tiny_model(**kw) -> GHyena:
    """float64, both block kinds, the two-body term given weight (a non-trivial energy)."""
    cfg = dict(
        species=(18, 10), cutoff=3.0, pair_cutoff=3.5, n_scalar=8, n_vector=2, n_rbf=4,
        pattern=("local", "global", "local"), filter_order=4, filter_bands=2, avg_neighbors=8.0,
        residual_init="default", dtype="float64", seed=1,
    )  # fmt: skip
    cfg.update(kw)
    model = GHyena(GHyenaConfig(**cfg))
    with torch.no_grad():
        for p in [] if model.pair_term is None else model.pair_term.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(2), dtype=p.dtype))
    return model


def tiny_atoms(n: int = 24, seed: int = 0):
    """A periodic argon/neon liquid-like box as ASE atoms (Maxwell-Boltzmann momenta, seeded)."""
    system = liquid_like_system(n, 0.05, seed=seed).to(dtype=torch.float64)
    system = system.replace(species=torch.where(torch.arange(n) % 5 == 0, 10, 18))
    atoms = system.to_ase()
    rng = np.random.default_rng(seed)
    atoms.set_momenta(rng.normal(0.0, 0.3, (n, 3)) * atoms.get_masses()[:, None] ** 0.5)
    return atoms


def graphs() -> int:
    """Graphs compiled since the test started (the ``fresh_dynamo`` fixture resets the count)."""
    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])


pytestmark = pytest.mark.usefixtures("fresh_dynamo")


def properties(atoms) -> dict[str, np.ndarray]:
    return {
        "energy": np.array([atoms.get_potential_energy()]),
        "energies": atoms.get_potential_energies(),
        "forces": atoms.get_forces(),
        "stress": atoms.get_stress(),
    }


def assert_same(out: dict, ref: dict, tol: float) -> None:
    for key in ref:
        assert out[key].shape == ref[key].shape, key
        assert np.abs(out[key] - ref[key]).max() <= tol, (key, np.abs(out[key] - ref[key]).max())


def test_compiled_calculator_equals_eager_in_ase_md_float64():
    """Energy, per-atom energies, forces and stress at 1e-10 eV(/Å), then an ASE Verlet run
    (Verlet-list rebuilds included) on the same trajectory, compiled once."""
    model = tiny_model()
    eager, comp = tiny_atoms(), tiny_atoms()
    eager.calc = HyenaCalculator(model, skin=0.1)
    comp.calc = HyenaCalculator(model, skin=0.1, compile="aot_eager")
    calc = comp.calc
    assert calc.compiled is not None and calc.compiled.model is calc.model
    ref = properties(eager)
    assert np.abs(ref["forces"]).max() > 1e-3  # a non-trivial model
    assert_same(properties(comp), ref, 1e-10)
    assert calc.compiled.fallback_reason is None and calc.compiled.n_compiled_calls == 1
    for atoms in (eager, comp):
        AseVelocityVerlet(atoms, 2.0 * units.fs).run(15)
    assert calc.runner.neighbor_list.n_builds >= 2  # the list was rebuilt during the run
    assert calc.compiled.n_compiled_calls == calc.runner.n_calls == 16
    assert np.abs(comp.positions - eager.positions).max() < 1e-9
    assert_same(properties(comp), properties(eager), 1e-10)
    assert graphs() <= 2  # one forward and one backward graph: no recompile at the rebuilds


def test_switch_off_by_default_and_what_it_wraps(tmp_path):
    from hyenamd.surrogate import save_model

    model = tiny_model()
    calc = HyenaCalculator(model)
    assert calc.compiled is None and calc.runner.potential is calc.model is model
    calc = HyenaCalculator(model, compile=False)
    assert calc.compiled is None
    calc = HyenaCalculator(model, compile=True, dtype="float32")  # nothing compiles yet
    assert calc.compiled.backend == "inductor"
    assert calc.compiled.model is calc.model and calc.model is not model  # the converted copy
    assert calc.model.dtype == torch.float32 and model.dtype == torch.float64
    save_model(model, tmp_path / "m.safetensors")
    calc = HyenaCalculator.from_checkpoint(tmp_path / "m.safetensors", compile="aot_eager")
    assert calc.compiled.backend == "aot_eager"
    assert graphs() == 0


def test_bad_values_and_potentials_are_refused_before_any_work():
    model = tiny_model()
    with pytest.raises(ValueError, match="not a torch.compile backend.*inductor"):
        HyenaCalculator(model, compile="inductorr")
    for bad in (1, "", ["inductor"], 0.5):
        with pytest.raises((TypeError, ValueError), match="compile"):
            HyenaCalculator(model, compile=bad)
    with pytest.raises(TypeError, match="one G-Hyena model, not a LennardJones"):
        HyenaCalculator(LennardJones(), compile=True)
    with pytest.raises(TypeError, match="not a Committee"):
        HyenaCalculator(Committee([tiny_model(seed=1), tiny_model(seed=2)]), compile="aot_eager")
    HyenaCalculator(LennardJones(), compile=False)  # off: any potential
    assert graphs() == 0


def test_fallbacks_are_exposed_and_give_eager_results():
    """A model outside the compiled subset (a direct-force head) and a failing compiler: eager
    results, with the reason in ``calc.compiled.fallback_reason``."""
    direct = tiny_model(heads=("energy", "direct_forces"))
    with pytest.warns(RuntimeWarning, match="runs eagerly.*direct_forces"):
        calc = HyenaCalculator(direct, compile="aot_eager")
    a, b = tiny_atoms(), tiny_atoms()
    a.calc, b.calc = calc, HyenaCalculator(direct)
    assert_same(properties(a), properties(b), 0.0)
    assert "direct_forces" in calc.compiled.fallback_reason and calc.compiled.n_compiled_calls == 0

    def broken(gm, example_inputs):
        raise RuntimeError("this backend cannot compile")

    model = tiny_model(pattern=("local", "global"))
    a, b = tiny_atoms(12, seed=1), tiny_atoms(12, seed=1)
    a.calc, b.calc = HyenaCalculator(model, compile=broken), HyenaCalculator(model)
    with pytest.warns(RuntimeWarning, match="compiling failed"):
        out = properties(a)
    assert_same(out, properties(b), 0.0)
    assert "this backend cannot compile" in a.calc.compiled.fallback_reason


def test_a_system_too_large_to_compile_warns_once_and_runs_eagerly():
    """More atoms than the compiled DFT path takes (MAX_TOKENS): eager results, one warning."""
    import warnings

    from hyenamd.surrogate.dft_conv import MAX_TOKENS

    model = tiny_model(pattern=("local", "global"))
    n = MAX_TOKENS + 4
    a, b = tiny_atoms(n, seed=3), tiny_atoms(n, seed=3)
    a.calc, b.calc = HyenaCalculator(model, compile="aot_eager"), HyenaCalculator(model)
    with pytest.warns(RuntimeWarning, match=f"ran eagerly .*{n} atoms > MAX_TOKENS"):
        out = properties(a)
    assert_same(out, properties(b), 0.0)
    assert "MAX_TOKENS" in a.calc.compiled.fallback_reason and a.calc.compiled.n_compiled_calls == 0
    a.positions += 0.01
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same reason again: no second warning
        a.get_forces()
    assert graphs() == 0
