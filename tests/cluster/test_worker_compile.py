"""The rollout configs' ``model.compile`` key: checked in the spec, applied by the worker (no Ray).

A compiled rollout (``aot_eager``: the traced graphs without code generation, seconds) follows
the eager rollout's trajectory to float64 rounding.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from cluster_helpers import LJ, make_spec, read_all

from hyenamd.cluster.cli import RolloutConfig, build_specs, report
from hyenamd.cluster.spec import RolloutResult, RolloutSpec, SpecError
from hyenamd.cluster.worker import RolloutWorker, build_model
from hyenamd.config import load_config
from hyenamd.surrogate import GHyena, GHyenaConfig, save_model
from hyenamd.surrogate.compiled import CompiledGHyena


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.fixture
def checkpoint(tmp_path):
    """A tiny float64 argon G-Hyena (local + global blocks) with a non-zero two-body term."""
    model = GHyena(
        GHyenaConfig(
            species=(18,), cutoff=4.0, pair_cutoff=4.5, n_scalar=8, n_vector=2, n_rbf=4,
            pattern=("local", "global"), filter_order=4, filter_bands=2, avg_neighbors=8.0,
            residual_init="default", dtype="float64", seed=1,
        )
    )  # fmt: skip
    with torch.no_grad():
        for p in model.pair_term.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=torch.Generator().manual_seed(2), dtype=p.dtype))
    path = tmp_path / "model.safetensors"
    save_model(model, path)
    return str(path)


def test_compiled_rollout_follows_the_eager_trajectory(tmp_path, checkpoint):
    integ = {"kind": "velocity_verlet", "dt_fs": 2.0}
    eager = make_spec(tmp_path / "e", "r_0", model={"kind": "checkpoint", "path": checkpoint},
                      integrator=integ, steps=20, checkpoint_interval=10)  # fmt: skip
    comp = make_spec(tmp_path / "c", "r_0", integrator=integ, steps=20, checkpoint_interval=10,
                     model={"kind": "checkpoint", "path": checkpoint, "compile": "aot_eager"})  # fmt: skip
    worker = RolloutWorker()
    assert worker.run(eager).ok
    res = worker.run(comp)
    assert res.ok, res.error
    pot = worker.model(comp)
    assert isinstance(pot, CompiledGHyena) and pot.backend == "aot_eager"
    assert pot.fallback_reason is None and pot.n_compiled_calls >= 20
    assert not isinstance(worker.model(eager), CompiledGHyena)
    a, b = read_all(eager.output), read_all(comp.output)
    assert np.abs(a["force"]).max() > 1e-3 and len(a["position"]) == 5  # a non-trivial model
    assert np.abs(a["position"] - b["position"]).max() < 1e-9
    assert np.abs(a["force"] - b["force"]).max() < 1e-9
    # the result records the setting and that every call ran compiled (initial forces + 20 steps)
    assert (res.compile, res.compiled_calls, res.eager_calls, res.compile_fallback) == (
        "aot_eager",
        21,
        0,
        None,
    )
    assert RolloutResult.from_json(res.to_json()) == res
    off = worker.run(eager)  # already complete: nothing evaluated, compile off
    assert (off.compile, off.compiled_calls, off.eager_calls, off.compile_fallback) == (False, 0, 0, None)


def test_a_rollout_too_large_to_compile_warns_once_and_records_why(tmp_path, checkpoint):
    """More atoms than the compiled path takes (MAX_TOKENS): one RuntimeWarning, the eager
    trajectory, and the reason in the result (kept through its JSON, as the manifest stores it)."""
    import warnings

    from hyenamd.cluster.spec import write_initial_store
    from hyenamd.engine.reference_systems import lj_fluid_system
    from hyenamd.surrogate.dft_conv import MAX_TOKENS

    system = lj_fluid_system(5, seed=4)  # 500 argon atoms
    assert system.n_atoms > MAX_TOKENS
    init = write_initial_store(system, tmp_path / "big.h5")
    kw = dict(initial=init, integrator={"kind": "velocity_verlet", "dt_fs": 2.0}, steps=3,
              report_interval=1, checkpoint_interval=3)  # fmt: skip
    ck = {"kind": "checkpoint", "path": checkpoint}
    eager = make_spec(tmp_path / "e", "r_0", model=ck, **kw)
    comp = make_spec(tmp_path / "c", "r_0", model={**ck, "compile": "aot_eager"}, **kw)
    worker = RolloutWorker()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = worker.run(comp)
    msgs = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(msgs) == 1 and f"{system.n_atoms} atoms > MAX_TOKENS" in msgs[0], msgs
    assert res.ok, res.error
    assert (res.compile, res.compiled_calls, res.eager_calls) == ("aot_eager", 0, 4)
    assert f"{system.n_atoms} atoms > MAX_TOKENS" in res.compile_fallback
    assert RolloutResult.from_dict(json.loads(res.to_json())).compile_fallback == res.compile_fallback
    assert worker.run(eager).ok
    a, b = read_all(eager.output), read_all(comp.output)
    assert np.array_equal(a["position"], b["position"]) and np.array_equal(a["force"], b["force"])


def test_compile_values_are_checked_in_the_spec(tmp_path, checkpoint):
    ck = {"kind": "checkpoint", "path": checkpoint}
    for model, match in [
        ({**LJ, "compile": True}, "applies to a G-Hyena checkpoint"),
        ({"kind": "zero", "compile": "aot_eager"}, "applies to a G-Hyena checkpoint"),
        ({**ck, "compile": "inductorr"}, "not a torch.compile backend"),
        ({**ck, "compile": 3}, "compile must be a bool"),
        ({**ck, "compiled": True}, "unknown checkpoint model keys"),
    ]:
        with pytest.raises(SpecError, match=match):
            make_spec(tmp_path / "o", "r_0", model=model)
    off = make_spec(tmp_path / "o", "r_0", model={**ck, "compile": False})
    assert off == make_spec(tmp_path / "o", "r_0", model=dict(ck))  # an explicit false is dropped
    on = make_spec(tmp_path / "o", "r_0", model={**ck, "compile": "aot_eager"})
    assert RolloutSpec.from_json(on.to_json()) == on
    with pytest.raises(SpecError, match="not a torch.compile backend"):
        build_model({**ck, "compile": "nope"}, dtype=torch.float64, device="cpu")
    assert isinstance(build_model({**ck, "compile": True}, dtype=torch.float64, device="cpu"), CompiledGHyena)


def test_config_override_reaches_every_spec(tmp_path, checkpoint):
    yaml = tmp_path / "r.yaml"
    yaml.write_text(f"model: {{kind: checkpoint, path: {checkpoint}}}\ninitial: x.h5\nreplicas: 2\n")
    specs = build_specs(load_config(yaml, RolloutConfig, ["model.compile=true"]))
    assert [s.model["compile"] for s in specs] == [True, True]
    with pytest.raises(SpecError, match="not a torch.compile backend"):
        build_specs(load_config(yaml, RolloutConfig, ["model.compile=fast"]))


def test_the_cli_report_names_failed_rollouts_and_eager_fallbacks():
    results = [
        RolloutResult("a", "completed", "/o/a.h5md", step=10, compile=True, compiled_calls=11),
        RolloutResult(
            "b", "completed", "/o/b.h5md", step=10, compile=True, eager_calls=11,
            compile_fallback="500 atoms > MAX_TOKENS (256)",
        ),
        RolloutResult("c", "failed", "/o/c.h5md", step=3, frames=2, error="blow-up at step 3"),
    ]  # fmt: skip
    lines = report(results, "/o/manifest.json")
    assert lines[0] == "2/3 rollouts completed; manifest: /o/manifest.json"
    assert lines[1:] == [
        "  b: compile=True but 11/11 model calls ran eagerly: 500 atoms > MAX_TOKENS (256)",
        "  c: failed at step 3 (2 frames): blow-up at step 3",
    ]
