"""``hyenamd train`` with the stochastic dynamics head: Langevin strides, NLL, init from a deterministic Φ."""

from __future__ import annotations

import dataclasses
import pathlib

import torch

from hyenamd.config import load_config
from hyenamd.engine.reference import ReferenceConfig, reference_md
from hyenamd.surrogate import GHyena, GHyenaConfig, load_model, save_model
from hyenamd.surrogate.stochastic_head import StochasticDynamicsHead
from hyenamd.surrogate.training import TrainSettings
from hyenamd.workflows.train import DataConfig, TrainConfig, _init_state, train

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODEL = dict(
    species=(18,), cutoff=5.0, n_scalar=8, n_vector=4, n_rbf=4, avg_neighbors=20.0,
    pattern=("local", "global"), filter_order=4, dtype="float64",
)  # fmt: skip


def test_init_state_maps_a_deterministic_head_onto_the_means():
    from hyenamd.testing import perturb_parameters

    det = perturb_parameters(GHyena(GHyenaConfig(**MODEL, heads=("energy", "dynamics"))), seed=1)
    sto = GHyena(GHyenaConfig(**MODEL, heads=("energy", "stochastic_dynamics")))
    missing, unexpected = sto.load_state_dict(_init_state(det.state_dict(), sto), strict=False)
    assert not unexpected and sorted(missing) == sorted(
        k for k in sto.state_dict() if k.startswith("dynamics_head.noise")
    )
    assert torch.equal(sto.dynamics_head.mean.velocity.mix.weight, det.dynamics_head.velocity.mix.weight)


def test_train_stochastic_head_on_langevin_strides(tmp_path):
    cfg = load_config(ROOT / "configs" / "reference" / "tiny.yaml", ReferenceConfig, [])
    store = reference_md(dataclasses.replace(cfg, output=str(tmp_path / "nvt.h5"), n_steps=120))
    det = tmp_path / "det.safetensors"
    save_model(GHyena(GHyenaConfig(**MODEL, heads=("energy", "dynamics"))), det)
    lines: list[str] = []
    result = train(
        TrainConfig(
            task="dynamics",
            output_dir=str(tmp_path / "run"),
            init_from=str(det),
            data=DataConfig(stores=(str(store),), horizon_frames=2, n_segments=3),
            model=GHyenaConfig(**MODEL, heads=("energy", "stochastic_dynamics")),
            training=TrainSettings(task="dynamics", epochs=2, batch_size=2, progress=False),
        ),
        echo=lines.append,
    )
    assert any("(5 new tensors" in s for s in lines), lines  # only the log σ MLP and its offsets
    model = load_model(result.best_path)
    assert isinstance(model.dynamics_head, StochasticDynamicsHead)
    assert model.cfg.dynamics_horizon_fs == 2 * cfg.report_interval * cfg.dt_fs
    assert "velocity_noise_fraction" in result.best_metrics
