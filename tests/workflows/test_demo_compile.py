"""The demo's ``rollout.compile``: the force-field rollout through the compiled path (``aot_eager``).

In-process (``rollout.use_ray: false``; the Ray path passes the same value as the spec's
``model.compile``, tested in ``tests/cluster/test_worker_compile.py``): the compiled rollout
follows the eager one to float64 rounding and the stage's summary records the compiled calls.
"""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

from hyenamd.config import ConfigError, load_config
from hyenamd.engine.reference_systems import lj_fluid_system
from hyenamd.io import open_store
from hyenamd.surrogate import GHyena, GHyenaConfig, save_model
from hyenamd.workflows.demo import DemoConfig
from hyenamd.workflows.demo_stages import rollout_force_field

TINY = pathlib.Path(__file__).resolve().parents[2] / "configs" / "demo_tiny.yaml"


@pytest.fixture
def inputs(tmp_path, fresh_dynamo):
    """A tiny float64 argon G-Hyena checkpoint and a two-frame 32-atom held-out store."""
    model = GHyena(
        GHyenaConfig(
            species=(18,), cutoff=4.0, pair_cutoff=4.5, n_scalar=8, n_vector=2, n_rbf=4,
            pattern=("local", "global"), filter_order=4, filter_bands=2, avg_neighbors=8.0,
            residual_init="default", dtype="float64", seed=1,
        )
    )  # fmt: skip
    save_model(model, tmp_path / "ff.safetensors")
    system = lj_fluid_system(2, seed=5)
    with open_store(tmp_path / "heldout.h5", "w", system=system) as st:
        for k in range(2):
            st.append(system.positions.numpy(), step=10 * k, time=40.0 * k, cell=system.cell.numpy())
    return tmp_path / "ff.safetensors", tmp_path / "heldout.h5"


def test_the_demo_rollout_runs_compiled_and_records_it(tmp_path, inputs):
    model_path, heldout = inputs
    runs = {}
    for compile in ("false", "aot_eager"):
        cfg = load_config(
            TINY, DemoConfig,
            ["rollout.use_ray=false", "rollout.md_steps=6", "rollout.report_interval=2", f"rollout.compile={compile}"],
        )  # fmt: skip
        out = tmp_path / f"md_{compile}.h5"
        runs[compile] = (rollout_force_field(cfg, model_path, heldout, out, echo=lambda m: None), out)
    eager, comp = runs["false"][0], runs["aot_eager"][0]
    assert (eager["compile"], eager["compiled_calls"], eager["compile_fallback"]) == (False, 0, None)
    assert comp["compile"] == "aot_eager" and comp["steps"] == 6
    assert (comp["compiled_calls"], comp["eager_calls"], comp["compile_fallback"]) == (7, 0, None)
    with open_store(runs["false"][1]) as a, open_store(runs["aot_eager"][1]) as b:
        assert len(a) == len(b) == 4
        for i in range(len(a)):
            assert np.abs(a[i].positions.numpy() - b[i].positions.numpy()).max() < 1e-9


def test_a_bad_rollout_compile_value_is_refused_when_the_config_is_read():
    with pytest.raises(ConfigError, match="not a torch.compile backend"):
        load_config(TINY, DemoConfig, ["rollout.compile=fast"])
    with pytest.raises(ConfigError, match="compile"):
        load_config(TINY, DemoConfig, ["rollout.compile=3"])
    assert load_config(TINY, DemoConfig).rollout.compile is False
