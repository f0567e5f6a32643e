"""configs/engine and configs/reference presets load into their dataclasses; build_simulation works."""

from __future__ import annotations

import dataclasses
import pathlib

import pytest

from hyenamd.config import ConfigError, load_config
from hyenamd.engine import LangevinBAOAB, VelocityVerlet
from hyenamd.engine.config import MDConfig, build_simulation
from hyenamd.engine.learned import LearnedPropagator
from hyenamd.engine.reference import ReferenceConfig
from hyenamd.io import open_store

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "engine").glob("*.yaml")), ids=lambda p: p.stem)
def test_engine_presets_load(path):
    cfg = load_config(path, MDConfig)
    assert cfg.n_steps > 0


@pytest.mark.parametrize(
    "path", sorted((ROOT / "configs" / "reference").glob("*.yaml")), ids=lambda p: p.stem
)
def test_reference_presets_load(path):
    cfg = load_config(path, ReferenceConfig)
    assert cfg.n_steps >= cfg.report_interval


def test_build_simulation_and_resume(tmp_path, lj, argon108, make_ghyena):
    cfg = load_config(
        ROOT / "configs" / "engine" / "nvt.yaml",
        MDConfig,
        [
            "n_steps=20",
            "integrator.dt_fs=4.0",
            "integrator.temperature_k=90.0",
            f"reporters.state_data={tmp_path / 'md.csv'}",
            "reporters.state_data_interval=5",
            "reporters.progress=false",
            f"reporters.trajectory={tmp_path / 'traj.h5'}",
            "reporters.trajectory_interval=5",
            f"reporters.checkpoint={tmp_path / 'md.ckpt.safetensors'}",
            "reporters.checkpoint_interval=10",
        ],
    )
    sim = build_simulation(cfg, lj, argon108)
    assert isinstance(sim.integrator, LangevinBAOAB) and sim.guard.check_every == 10
    sim.run_to(12)
    sim.close()
    resumed = build_simulation(cfg, lj, argon108, resume=True)
    assert resumed.state.step == 10
    resumed.run_to(cfg.n_steps)
    resumed.close()
    with open_store(tmp_path / "traj.h5") as store:
        assert list(store.steps) == [0, 5, 10, 15, 20]
    nve = dataclasses.replace(cfg, integrator=dataclasses.replace(cfg.integrator, kind="velocity_verlet"))
    assert isinstance(build_simulation(nve, lj, argon108).integrator, VelocityVerlet)
    learned = load_config(
        ROOT / "configs" / "engine" / "learned.yaml",
        MDConfig,
        ["reporters.progress=false", "reporters.state_data=null", "reporters.trajectory=null"],
    )
    sim = build_simulation(learned, make_ghyena(heads=("energy", "dynamics")), argon108)
    assert isinstance(sim.integrator, LearnedPropagator)
    with pytest.raises(ConfigError, match="kind"):
        load_config(None, MDConfig, ["integrator.kind=leapfrog"])
