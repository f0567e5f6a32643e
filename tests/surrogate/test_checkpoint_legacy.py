"""Checkpoints written before issue 12 load with the maths and the rule they were trained with.

``tests/data/legacy/pre12.safetensors`` and ``pre12_reference.json`` were written by the code of
commit 48c7d20 (main just before the issue-12 model changes) with
``tests/data/legacy/make_pre12_checkpoint.py``: a tiny float64 model trained for two epochs,
and that code's energies, per-atom energies, forces and direct forces on two fixed systems.
"""

from __future__ import annotations

import json
import pathlib
import warnings

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from hyenamd import Batch, System
from hyenamd.surrogate import (
    CheckpointError,
    GHyena,
    GHyenaConfig,
    compute_forces,
    describe_checkpoint,
    load_model,
    save_model,
)
from hyenamd.surrogate.checkpoint import legacy_ordering
from hyenamd.surrogate.ordering import OrderingError, canonical_order
from hyenamd.system import Labels

DATA = pathlib.Path(__file__).resolve().parents[1] / "data" / "legacy"
OLD = DATA / "pre12.safetensors"
REFERENCE = json.loads((DATA / "pre12_reference.json").read_text())["systems"]


def system_of(ref: dict, *, with_order: bool) -> System:
    labels = (
        None if ref["residue_index"] is None else Labels(residue_index=torch.tensor(ref["residue_index"]))
    )
    return System(
        positions=torch.tensor(ref["positions"], dtype=torch.float64),
        species=torch.tensor(ref["species"]),
        cell=None if ref["cell"] is None else torch.tensor(ref["cell"], dtype=torch.float64),
        pbc=ref["pbc"],
        labels=labels,
        order=torch.tensor(ref["order"]) if with_order else None,
    )


def load_old(**kw) -> GHyena:
    with pytest.warns(UserWarning, match="written before issue 12") as record:
        model = load_model(OLD, **kw)
    assert len([w for w in record if "issue 12" in str(w.message)]) == 1, "warned once"
    return model


def assert_matches_old_code(model: GHyena, system: System, ref: dict) -> None:
    out = compute_forces(model, Batch.from_system(system))
    assert float(out["energy"][0]) == pytest.approx(ref["energy"], rel=1e-10, abs=0)
    for key in ("energies", "forces", "direct_forces"):
        want = torch.tensor(ref[key], dtype=torch.float64)
        err = float((out[key].detach() - want).abs().max() / want.abs().max())
        assert err <= 1e-10, f"{key}: relative difference {err:.2e} from the old code"


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_pre12_checkpoint_gives_the_old_codes_energies_and_forces(name):
    """Every output equals what the code that wrote the file computed (its own order given)."""
    model = load_old()
    assert_matches_old_code(model, system_of(REFERENCE[name], with_order=True), REFERENCE[name])


def test_the_warning_names_every_assumption_and_the_config_records_them():
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        model = load_model(OLD)
    messages = [str(w.message) for w in record]
    assert len(messages) == 1, messages
    for part in ("ordering='topology'", "conv='linear'", "ε = 1", "log_eps", "prenorm_gain", "residual_init"):
        assert part in messages[0]
    cfg = model.cfg
    assert (cfg.ordering, cfg.conv, cfg.norm_eps, cfg.learn_norm_eps) == ("topology", "linear", 1.0, False)
    for name, module in model.named_modules():  # the filled tensors are the identity of the old maths
        if name.endswith("norm") and hasattr(module, "log_eps"):
            assert torch.equal(module.log_eps, torch.zeros_like(module.log_eps))
            assert not module.log_eps.requires_grad  # frozen floors: fine-tuning keeps the old norms
    gains = [m.prenorm_gain for m in model.modules() if hasattr(m, "prenorm_gain")]
    assert len(gains) == 2 and all(torch.equal(g, torch.ones_like(g)) for g in gains)


def test_the_labelled_system_gets_the_old_topology_order_by_itself():
    """The rule inferred from the training summary (data.stores, as ``hyenamd train`` wrote it)
    reproduces the old order of a labelled system, so no order has to be passed."""
    ref = REFERENCE["labelled_box"]
    system = system_of(ref, with_order=False)
    assert canonical_order(system, "topology").tolist() == ref["order"]
    assert_matches_old_code(load_old(), system, ref)


def test_the_unlabelled_system_needs_its_rule_chosen():
    """The file's rule is topology: an unlabelled system is an error naming the problem, never a
    silent fallback; load_model(ordering='hilbert') evaluates it in today's Hilbert order."""
    system = system_of(REFERENCE["open_cluster"], with_order=False)
    with pytest.raises(OrderingError, match="residue"):
        compute_forces(load_old(), Batch.from_system(system))
    model = load_old(ordering="hilbert")
    assert model.cfg.ordering == "hilbert" and model.cfg.conv == "linear"
    assert torch.isfinite(compute_forces(model, Batch.from_system(system))["forces"]).all()


def test_a_migrated_model_saves_as_a_current_checkpoint(tmp_path):
    model = load_old()
    path = save_model(model, tmp_path / "migrated.safetensors")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing assumed any more
        again = load_model(path)
    assert again.cfg == model.cfg
    ref = REFERENCE["labelled_box"]
    assert_matches_old_code(again, system_of(ref, with_order=True), ref)


def test_describe_states_the_legacy_maths():
    text = describe_checkpoint(OLD)
    assert "written before issue 12" in text and "conv linear" in text
    assert "not recorded (legacy): topology" in text


@pytest.mark.parametrize(
    ("training", "rule"),
    [
        ({"data": {"stores": [{"path": "ref.h5"}]}, "task": "force_field"}, "topology"),
        ({"stores": ["ref.h5md"]}, "topology"),
        ({"data": {"stores": []}}, "hilbert"),
        ({}, "hilbert"),
        ("not a mapping", "hilbert"),
    ],
)
def test_legacy_ordering_reads_the_trainers_data_summary(training, rule):
    assert legacy_ordering({"training": training}) == rule


def _rewrite(src: pathlib.Path, dst: pathlib.Path, drop_tensors=(), edit=None) -> None:
    tensors = {k: v for k, v in load_file(str(src)).items() if not any(k.endswith(d) for d in drop_tensors)}
    with safe_open(str(src), framework="pt") as f:
        meta = f.metadata()
    info = json.loads(meta["hyenamd"])
    if edit:
        edit(info)
    save_file(tensors, str(dst), metadata={**meta, "hyenamd": json.dumps(info)})


def test_only_pre12_files_get_tensors_filled(tmp_path):
    """A current file missing its norm floors is damaged, not old: refused; so is a pre-issue-12
    file missing any other tensor."""
    cfg = GHyenaConfig(species=(1, 8), cutoff=3.0, n_scalar=4, n_vector=2, n_rbf=3, dtype="float64",
                       pattern=("local", "global"), filter_order=4, filter_depth=1, filter_bands=2)  # fmt: skip
    good = save_model(GHyena(cfg), tmp_path / "new.safetensors")
    bad = tmp_path / "bad.safetensors"
    _rewrite(good, bad, drop_tensors=("log_eps",))
    with pytest.raises(CheckpointError, match="missing: .*log_eps"):
        load_model(bad)
    _rewrite(OLD, bad, drop_tensors=("blocks.0.mix.weight",))
    with pytest.raises(CheckpointError, match=r"missing: \['blocks.0.mix.weight'\]"):
        load_model(bad)


def test_a_pre12_file_keeps_explicit_settings(tmp_path):
    """Only absent keys are assumed: a (hand-edited) pre-issue-12 config that states a setting keeps it."""
    path = tmp_path / "edited.safetensors"
    _rewrite(OLD, path, edit=lambda i: i["config"].update(norm_eps=0.5))
    with pytest.warns(UserWarning, match="issue 12"):
        model = load_model(path)
    assert model.cfg.norm_eps == 0.5 and model.cfg.conv == "linear"
    assert all(
        float(m.log_eps.exp()[0]) == pytest.approx(0.5) for m in model.modules() if hasattr(m, "log_eps")
    )


def test_pre12_large_step_model_gives_the_old_codes_steps():
    """A dynamics-head checkpoint of the old code (velocity embedding, ballistic step plus
    learned corrections; every layer randomly initialised as the old code did)."""
    ref = json.loads((DATA / "pre12_dynamics_reference.json").read_text())
    with pytest.warns(UserWarning, match="written before issue 12"):
        model = load_model(DATA / ref["checkpoint"])
    box = REFERENCE["labelled_box"]
    system = system_of(box, with_order=True).replace(
        velocities=torch.tensor(ref["velocities"], dtype=torch.float64)
    )
    out = compute_forces(model, Batch.from_system(system))
    assert float(out["energy"][0]) == pytest.approx(ref["energy"], rel=1e-10, abs=0)
    for key, want in (
        ("forces", "forces"),
        ("displacement", "displacement"),
        ("velocities", "velocities_out"),
    ):
        want = torch.tensor(ref[want], dtype=torch.float64)
        err = float((out[key].detach() - want).abs().max() / want.abs().max())
        assert err <= 1e-10, f"{key}: relative difference {err:.2e} from the old code"


def test_init_from_names_the_maths_settings_a_train_config_changes():
    """``hyenamd train`` with ``init_from`` an old file: the config's defaults (circular conv,
    learned ε from 1e-3) would silently change its maths, so the differences are reported."""
    import dataclasses

    from hyenamd.workflows.train import init_differences

    old = load_old().cfg
    assert init_differences(old, old) == []
    changed = init_differences(
        old, dataclasses.replace(old, conv="circular", norm_eps=1e-3, learn_norm_eps=True)
    )
    assert changed == ["conv='linear'", "norm_eps=1.0", "learn_norm_eps=False"]
