"""HyenaCalculator with MACE/ASE habits: dtype names and default_dtype, unknown kwargs, momenta in the cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hyenamd.engine import HyenaCalculator
from hyenamd.surrogate import load_model, save_model


@pytest.mark.parametrize("kw", [{"dtype": "float32"}, {"default_dtype": "float32"}, {"dtype": torch.float32}])
def test_dtype_by_name_alias_or_torch_dtype(ghyena_path, water_like, kw):
    calc = HyenaCalculator.from_checkpoint(ghyena_path, **kw)
    assert calc.runner.dtype is torch.float32 and calc.model.dtype is torch.float32
    atoms = water_like.to_ase()
    atoms.calc = calc
    e32 = atoms.get_potential_energy()
    atoms.calc = HyenaCalculator.from_checkpoint(ghyena_path, default_dtype="float64")
    assert atoms.calc.runner.dtype is torch.float64
    assert e32 == pytest.approx(atoms.get_potential_energy(), rel=1e-4)


def test_bad_dtype_conflicts_and_unknown_kwargs_are_clear_errors(ghyena_path, make_ghyena):
    with pytest.raises(ValueError, match=r"dtype must be 'float32' or 'float64'.*'float16'"):
        HyenaCalculator.from_checkpoint(ghyena_path, dtype="float16")
    with pytest.raises(ValueError, match="default_dtype must be"):
        HyenaCalculator(make_ghyena(), default_dtype="half")
    with pytest.raises(ValueError, match="disagree"):
        HyenaCalculator(make_ghyena(), dtype="float32", default_dtype="float64")
    with pytest.raises(TypeError, match="unexpected keyword arguments \\['dtpye'\\]"):
        HyenaCalculator(make_ghyena(), dtpye="float32")
    HyenaCalculator(make_ghyena(), dtype="float64", default_dtype=torch.float64, label="ok")  # agree


def test_load_model_takes_dtype_names(ghyena_path):
    assert load_model(ghyena_path, dtype="float32").dtype is torch.float32
    assert load_model(ghyena_path, dtype="double").dtype is torch.float64
    with pytest.raises(ValueError, match="dtype must be"):
        load_model(ghyena_path, dtype="bfloat16")


def test_cache_keys_on_momenta_for_a_dynamics_head(water_like, make_ghyena):
    model = make_ghyena(heads=("energy", "dynamics"))
    atoms = water_like.to_ase()
    rng = np.random.default_rng(0)
    atoms.set_momenta(rng.normal(size=(len(atoms), 3)) * 0.05)
    calc = HyenaCalculator(model)
    atoms.calc = calc
    e0 = atoms.get_potential_energy()
    atoms.get_potential_energy()
    assert calc.runner.n_calls == 1
    atoms.set_momenta(atoms.get_momenta() * 2.0)
    assert calc.check_state(atoms) == ["momenta"]
    e1 = atoms.get_potential_energy()
    assert calc.runner.n_calls == 2 and e1 != e0  # the energy sees the velocities: no stale value
    fresh = water_like.to_ase()
    fresh.set_momenta(atoms.get_momenta())
    fresh.calc = HyenaCalculator(model)
    assert fresh.get_potential_energy() == e1


def test_momenta_do_not_invalidate_a_model_that_ignores_them(water_like, make_ghyena):
    atoms = water_like.to_ase()
    atoms.calc = calc = HyenaCalculator(make_ghyena())
    atoms.get_potential_energy()
    atoms.set_momenta(np.ones((len(atoms), 3)))
    atoms.get_potential_energy()
    assert calc.runner.n_calls == 1
    # topology labels are a model input (they set the sequence order of the global block)
    atoms.set_array("residuenumbers", np.arange(len(atoms)) // 3)
    assert "residuenumbers" in calc.check_state(atoms)


def test_dtype_of_a_checkpoint_saved_in_float32(tmp_path, make_ghyena, water_like):
    path = save_model(make_ghyena().to(torch.float32), tmp_path / "m32.safetensors")
    calc = HyenaCalculator.from_checkpoint(path)  # None keeps the saved dtype
    assert calc.runner.dtype is torch.float32
    calc64 = HyenaCalculator.from_checkpoint(path, dtype="float64")
    atoms = water_like.to_ase()
    assert calc.get_potential_energy(atoms) == pytest.approx(calc64.get_potential_energy(atoms), rel=1e-5)
