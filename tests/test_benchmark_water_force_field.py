"""``benchmarks/water_force_field.py`` and ``configs/train/water_force_field.yaml`` (issue 13 item 2, water).

The config loads into the typed training config with the demo's recipe; the benchmark runs every
stage (OpenMM reference, training, accuracy, force-field MD, validation) on a tiny budget and
writes its JSON and figure; the curvature trace of `benchmarks/baoab_kinetic_deficit.py` is exact on
independent oscillators. No timing assertions.
"""

from __future__ import annotations

import json
import math
import pathlib

import pytest

from hyenamd.config import load_config
from hyenamd.workflows.train import TrainConfig

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_water_train_config_loads_with_the_recipe():
    cfg = load_config(ROOT / "configs" / "train" / "water_force_field.yaml", TrainConfig)
    assert cfg.task == "force_field" and cfg.model.species == (1, 8) and cfg.model.dtype == "float32"
    t = cfg.training
    assert t.monitor == "force_rmse" and t.patience > 0 and 0 < t.ema_decay < 1 and t.fit_shifts
    assert cfg.data.stores == ("data/reference/water.h5md",) and cfg.data.stride >= 1


@pytest.mark.slow  # ~15 s wall: two tiny OpenMM runs, one training epoch, 100 MD steps, validation
def test_water_force_field_benchmark_quick(tmp_path, run_benchmark):
    args = ["--quick", "--out", str(tmp_path / "run"), "--name", "tiny"]
    run_benchmark("water_force_field.py", *args)
    data = json.loads((tmp_path / "res" / "tiny.json").read_text())
    assert {"date", "git_commit", "machine", "command", "load_average_start", "total_cpu_s"} <= set(data)
    assert set(data["stages"]) == {"reference", "train", "accuracy", "md", "validate"}
    assert all(s["cpu_s"] >= 0 and len(s["load_average_start"]) == 3 for s in data["stages"].values())
    assert set(data["goals"]) == {"force_rel_rmse", "rdf_mae_O-O", "stable_ps"}
    assert len(data["training"]["history_valid_loss"]) == data["training"]["epochs_run"]
    assert math.isfinite(data["heldout_accuracy"]["force_rel_rmse"])
    assert math.isfinite(data["goals"]["rdf_mae_O-O"]["value"])
    assert data["md"]["steps"] == data["md"]["steps_requested"] > 0 and data["md"]["dt_fs"] <= 0.5
    assert (tmp_path / "fig" / "tiny.png").exists()
    # a second run reuses the stores and skips training with --model
    model = data["training"]["best_path"]
    args2 = [*args[:-1], "tiny2", "--model", model]
    run_benchmark("water_force_field.py", *args2)
    again = json.loads((tmp_path / "res" / "tiny2.json").read_text())
    assert again["reference"]["train"]["reused"] and again["training"] is None
    assert "train" not in again["stages"]


def test_hutchinson_trace_is_exact_for_independent_oscillators():
    """Oracle: atoms tethered with springs k_i have tr(M⁻¹H) = Σ 3 k_i / m_i; Rademacher probes of a
    diagonal Hessian give it exactly (zero variance)."""
    import importlib.util

    import torch

    from hyenamd import System
    from hyenamd.engine.potentials import Harmonic

    spec = importlib.util.spec_from_file_location("kdef", ROOT / "benchmarks" / "baoab_kinetic_deficit.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, generator=g, dtype=torch.float64) * 5.0
    species = torch.tensor([8, 1, 1, 8, 1, 1])
    system = System(positions=x, species=species)
    k = torch.tensor([40.0, 3.0, 3.0, 40.0, 3.0, 3.0], dtype=torch.float64)
    pot = Harmonic(k, x + 0.1 * torch.randn(6, 3, generator=g, dtype=torch.float64))
    mean, err = mod.hutchinson_trace(pot, system, probes=3, gen=g)
    assert mean == pytest.approx(float((3 * k / system.masses).sum()), rel=1e-12)
    assert err == pytest.approx(0.0, abs=1e-9)
