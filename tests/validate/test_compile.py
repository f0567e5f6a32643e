"""ValidateConfig.compile: the accuracy model through the compiled path (``aot_eager``), bad values refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hyenamd.config import ConfigError, load_config
from hyenamd.surrogate import GHyena, GHyenaConfig, compute_forces
from hyenamd.surrogate.compiled import CompiledGHyena
from hyenamd.system import Batch, System
from hyenamd.validate import ArrayTrajectory, ValidateConfig
from hyenamd.validate.accuracy import evaluate_model
from hyenamd.validate.runner import _load_model


def tiny_model() -> GHyena:
    return GHyena(
        GHyenaConfig(
            species=(18,), cutoff=4.0, n_scalar=8, n_vector=2, n_rbf=4, pattern=("local", "global"),
            filter_order=4, filter_bands=2, avg_neighbors=8.0, residual_init="default",
            dtype="float64", seed=1,
        )
    )  # fmt: skip


def frames(model, n_frames=3, seed=0) -> ArrayTrajectory:
    """Rattled 32-atom argon boxes labelled by ``model`` itself (eager): its error is zero."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*(np.arange(4),) * 3, indexing="ij"), -1).reshape(-1, 3)[:32] * 3.8
    cell = np.diag([15.2, 15.2, 7.6])
    pos, forces, energies = [], [], []
    for _ in range(n_frames):
        x = grid + rng.normal(0, 0.15, grid.shape)
        s = System(torch.tensor(x), torch.full((32,), 18), cell=torch.tensor(cell), pbc=True)
        out = compute_forces(model, Batch.from_systems([s]))
        pos.append(x), forces.append(out["forces"].numpy()), energies.append(float(out["energy"].sum()))
    return ArrayTrajectory(
        np.array(pos), np.full(32, 18), cell=cell, frame_forces=np.array(forces),
        observables={"potential_energy": np.array(energies)},
    )  # fmt: skip


def test_compiled_accuracy_model_equals_eager():
    torch._dynamo.reset()
    model = tiny_model()
    ref = frames(model)
    assert np.abs(ref.forces(0)).max() > 1e-3  # a non-trivial model
    pot = _load_model(model, "cpu", "aot_eager")
    assert isinstance(pot, CompiledGHyena) and _load_model(model, "cpu", False) is model
    res = evaluate_model(pot, ref)
    assert pot.fallback_reason is None and pot.n_compiled_calls == 3
    assert res.n_frames == 3 and res.force_rmse < 1e-10 and res.energy_mae < 1e-9
    torch._dynamo.reset()


def test_bad_compile_values_are_config_errors():
    assert load_config(None, ValidateConfig).compile is False
    assert load_config(None, ValidateConfig, ["compile=aot_eager"]).compile == "aot_eager"
    with pytest.raises(ConfigError, match="not a torch.compile backend"):
        load_config(None, ValidateConfig, ["compile=fast"])
    with pytest.raises(ConfigError, match="compile"):
        load_config(None, ValidateConfig, ["compile=3"])
