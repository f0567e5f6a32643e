"""Checkpoints: bit-for-bit round trip, metadata, and one clear error per malformed file."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from safetensors.torch import load_file, save_file

from hyenamd import Batch
from hyenamd.surrogate import (
    CheckpointError,
    GHyena,
    GHyenaConfig,
    describe_checkpoint,
    load_model,
    save_model,
)
from hyenamd.testing import maxwell_boltzmann, rattled_cu, water_trimer


def make_model(dtype="float64", **kw) -> GHyena:
    cfg = GHyenaConfig(
        species=(1, 8, 29),
        cutoff=3.5,
        n_scalar=8,
        n_vector=4,
        n_rbf=5,
        pattern=("local", "local"),
        heads=("energy", "direct_forces", "dynamics"),
        dtype=dtype,
        energy_shifts=(-13.6, -2041.1, -1.0 / 3.0),
        **kw,
    )
    model = GHyena(cfg)
    with torch.no_grad():  # make the buffers non-trivial, as after fitting to data
        model.energy_head.energy_scale.fill_(0.7312345678901234)
    return model


def outputs(model, dtype=torch.float64):
    systems = [maxwell_boltzmann(s, 300.0) for s in (water_trimer(dtype), rattled_cu(seed=1, dtype=dtype))]
    with torch.no_grad():
        return model(Batch.from_systems(systems))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_round_trip_is_bit_for_bit(tmp_path, dtype):
    model = make_model(dtype)
    path = save_model(
        model, tmp_path / "m.safetensors", dataset="water+cu", n_frames=1200, rmse_mev_per_atom=1.5
    )
    loaded = load_model(path)
    assert loaded.cfg == model.cfg and loaded.dtype == model.dtype and not loaded.training
    sd, sl = model.state_dict(), loaded.state_dict()
    assert sd.keys() == sl.keys() and all(torch.equal(sd[k], sl[k]) for k in sd)
    tdt = model.dtype
    a, b = outputs(model, tdt), outputs(loaded, tdt)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_metadata_records_what_the_design_asks(tmp_path):
    path = save_model(make_model(), tmp_path / "m.safetensors", dataset="demo", steps=10)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    assert meta["format"] == "hyenamd.checkpoint" and meta["format_version"] == "1"
    info = json.loads(meta["hyenamd"])
    assert info["species"] == [1, 8, 29] and info["cutoff"] == 3.5 and info["dtype"] == "float64"
    assert info["units"]["length"] == "Å" and info["units"]["energy"] == "eV"
    assert info["ordering"] == "hilbert" == info["config"]["ordering"] and info["hyenamd_version"]
    assert info["training"] == {"dataset": "demo", "steps": 10}
    assert info["config"]["heads"] == ["energy", "direct_forces", "dynamics"]
    text = describe_checkpoint(path)
    for needle in (
        "H (1), O (8), Cu (29)",
        "3.5 Å",
        "local → local",
        "dynamics",
        'dataset: "demo"',
        "float64",
    ):
        assert needle in text


def test_load_converts_dtype_on_request(tmp_path):
    path = save_model(make_model(), tmp_path / "m.safetensors")
    m32 = load_model(path, dtype=torch.float32)
    assert m32.dtype == torch.float32 and m32.species_table.dtype == torch.int64


def rewrite(src, dst, *, tensors=None, meta=None):
    """Write a modified copy of a checkpoint (tensors/metadata edited by the callables)."""
    from safetensors import safe_open

    with safe_open(str(src), framework="pt") as f:
        m = dict(f.metadata())
    t = load_file(str(src))
    if tensors:
        t = tensors(t)
    if meta:
        m = meta(m)
    save_file(t, str(dst), metadata=m)
    return dst


def edit_info(fn):
    def inner(m):
        info = json.loads(m["hyenamd"])
        fn(info)
        return {**m, "hyenamd": json.dumps(info)}

    return inner


def test_each_malformed_checkpoint_gives_its_error(tmp_path):
    good = save_model(make_model(), tmp_path / "good.safetensors")
    data = good.read_bytes()
    bad = tmp_path / "bad.safetensors"

    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_model(bad)
    bad.write_bytes(data[:-3])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_model(bad)
    bad.write_bytes(pickle.dumps({"weights": 1}))  # never unpickled: just not a safetensors file
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_model(bad)

    cases = [
        ({"meta": lambda m: {k: v for k, v in m.items() if k != "format"}}, "not a hyenamd checkpoint"),
        ({"meta": lambda m: {**m, "format_version": "99"}}, "format version '99'"),
        ({"meta": lambda m: {k: v for k, v in m.items() if k != "format_version"}}, "format version None"),
        ({"meta": lambda m: {**m, "hyenamd": "{not json"}}, "not valid JSON"),
        ({"meta": edit_info(lambda i: i["config"].update(n_layers=3))}, "unknown key 'n_layers'"),
        ({"meta": edit_info(lambda i: i["config"].update(cutoff="far"))}, "'cutoff'"),
        (
            {"tensors": lambda t: {k: v for k, v in t.items() if k != "embedding.weight"}},
            "missing: \\['embedding.weight'\\]",
        ),
        ({"tensors": lambda t: {**t, "extra.weight": torch.zeros(2)}}, "unexpected: \\['extra.weight'\\]"),
        (
            {"tensors": lambda t: {**t, "embedding.weight": torch.zeros(3, 9, dtype=torch.float64)}},
            "shape mismatch: embedding.weight",
        ),
        ({"meta": edit_info(lambda i: i["config"].update(n_scalar=9))}, "shape mismatch"),
    ]
    for kw, match in cases:
        rewrite(good, bad, **kw)
        with pytest.raises(CheckpointError, match=match):
            load_model(bad)
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "absent.safetensors")


def test_save_refuses_bad_input_without_touching_the_old_file(tmp_path):
    path = save_model(make_model(), tmp_path / "m.safetensors")
    before = path.read_bytes()
    with pytest.raises(ValueError, match="JSON-serialisable"):
        save_model(make_model(seed=1), path, data=object())
    with pytest.raises(ValueError, match=".safetensors"):
        save_model(make_model(), tmp_path / "m.pt")
    with pytest.raises(TypeError, match="GHyena"):
        save_model(torch.nn.Linear(2, 2), tmp_path / "x.safetensors")
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


@pytest.mark.parametrize("ordering", ["topology", "hilbert"])
def test_ordering_round_trips(tmp_path, ordering):
    path = save_model(make_model(ordering=ordering), tmp_path / "m.safetensors")
    assert load_model(path).cfg.ordering == ordering
    assert f"ordering     {ordering}" in describe_checkpoint(path)
    assert load_model(path, ordering="hilbert").cfg.ordering == "hilbert"


@pytest.mark.parametrize(("training", "rule"), [({"stores": ["ref.h5md"]}, "topology"), ({}, "hilbert")])
def test_legacy_checkpoint_loads_with_the_rule_it_was_trained_with(tmp_path, training, rule):
    """Checkpoints written before the rule was recorded: topology when trained on hyenamd stores
    (they carry topology labels), else Hilbert; a warning states the rule."""
    path = save_model(make_model(), tmp_path / "m.safetensors", **training)
    tensors = load_file(str(path))
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    info = json.loads(meta["hyenamd"])
    del info["config"]["ordering"]
    info["ordering"] = "topology (chain, residue, atom index) when labels exist, else a 3-D Hilbert curve"
    old = tmp_path / "old.safetensors"
    save_file(tensors, str(old), metadata={**meta, "hyenamd": json.dumps(info)})
    with pytest.warns(UserWarning, match=f"ordering='{rule}'"):
        model = load_model(old)
    assert model.cfg.ordering == rule
