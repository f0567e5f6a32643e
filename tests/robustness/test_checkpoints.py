"""Tampered, damaged or foreign model and engine checkpoints: refused with a CheckpointError
naming the problem, before any large allocation and without running code."""

from __future__ import annotations

import json
import resource

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from hyenamd.engine.checkpoint import CheckpointError as EngineCheckpointError
from hyenamd.engine.checkpoint import load_checkpoint
from hyenamd.errors import HyenaError
from hyenamd.surrogate import load_model
from hyenamd.surrogate.checkpoint import CheckpointError

from .conftest import tiny_system


def _read(path):
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata())


def _rewrite(src, dst, *, tensors=None, meta=None, info=None):
    t, m = _read(src)
    if tensors:
        t = tensors(t)
    if info:
        doc = json.loads(m["hyenamd"])
        info(doc)
        m["hyenamd"] = json.dumps(doc)
    if meta:
        meta(m)
    save_file(t, str(dst), metadata=m)
    return dst


def _set(d, key, value):
    d[key] = value


def _nan_weight(t):
    k = next(k for k, v in t.items() if v.is_floating_point() and v.numel() > 1)
    t[k] = t[k].clone()
    t[k].view(-1)[0] = float("nan")
    return t


def _int_weights(t):
    return {k: (v.to(torch.int64) if v.is_floating_point() else v) for k, v in t.items()}


def _f32_weights(t):
    return {k: (v.to(torch.float32) if v.is_floating_point() else v) for k, v in t.items()}


def _swap_table(t):
    table = t["species_table"].clone()
    table[1], table[8] = table[8].clone(), table[1].clone()
    t["species_table"] = table
    return t


def _drop_one(t):
    t.pop(next(iter(t)))
    return t


def _extra(t):
    t["evil"] = torch.zeros(3)
    return t


MODEL_CASES = {
    # name: (rewrite kwargs, words)
    "NaN weight": (dict(tensors=_nan_weight), "NaN or inf"),
    "integer weights": (dict(tensors=_int_weights), "dtype mismatch"),
    "float32 weights in a float64 checkpoint": (dict(tensors=_f32_weights), "dtype mismatch"),
    "tampered species table": (dict(tensors=_swap_table), "species_table"),
    "species list disagrees with config": (dict(info=lambda d: _set(d, "species", [1, 6])), "species table"),
    "missing tensor": (dict(tensors=_drop_one), "missing"),
    "unexpected tensor": (dict(tensors=_extra), "unexpected"),
    "config claims n_scalar 30000": (
        dict(info=lambda d: d["config"].update(n_scalar=30000)),
        "shape mismatch",
    ),
    "config claims 200 blocks": (
        dict(info=lambda d: d["config"].update(pattern=["local", "global"] * 100)),
        "missing",
    ),
    "unknown config key": (dict(info=lambda d: d["config"].update(evil="os.system")), "unknown key"),
    "NaN cutoff in config": (dict(info=lambda d: d["config"].update(cutoff=float("nan"))), "finite"),
    "corrupt JSON": (dict(meta=lambda m: _set(m, "hyenamd", "{not json")), "not valid JSON"),
    "no config": (dict(info=lambda d: d.pop("config")), "config"),
    "other format": (dict(meta=lambda m: _set(m, "format", "pickle")), "not a hyenamd checkpoint"),
    "newer format version": (dict(meta=lambda m: _set(m, "format_version", "99")), "format version"),
    "other model class": (dict(info=lambda d: _set(d, "model", "Evil")), "GHyena"),
    "unsupported dtype": (dict(info=lambda d: _set(d, "dtype", "float16")), "unsupported dtype"),
}


@pytest.mark.parametrize("name", list(MODEL_CASES))
def test_tampered_model_checkpoint_is_refused(tmp_path, model_path, name):
    kwargs, words = MODEL_CASES[name]
    bad = _rewrite(model_path, tmp_path / "bad.safetensors", **kwargs)
    with pytest.raises(CheckpointError) as e:
        load_model(bad)
    assert words in str(e.value) and str(bad) in str(e.value)
    assert isinstance(e.value, HyenaError)


def test_huge_config_claim_allocates_nothing(tmp_path, model_path):
    """A small file whose config claims n_scalar 30000 is refused before any large allocation."""
    bad = _rewrite(
        model_path, tmp_path / "big.safetensors", info=lambda d: d["config"].update(n_scalar=30000)
    )
    assert bad.stat().st_size < 100_000
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB, the process's high-water mark
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_model(bad)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak) / 1024
    assert grown_mb < 200  # the full model would take ~3.6 GB


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "directory"])
def test_damaged_model_file(tmp_path, model_path, damage):
    bad = tmp_path / "bad.safetensors"
    data = model_path.read_bytes()
    if damage == "truncate":
        bad.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        bad.write_bytes(b"\x00" * 64 + data[64:])
    elif damage == "empty":
        bad.write_bytes(b"")
    else:
        bad.mkdir()
    with pytest.raises(CheckpointError):
        load_model(bad)


# ---------------------------------------------------------------- engine checkpoints
@pytest.fixture(scope="module")
def engine_ckpt(tmp_path_factory):
    from hyenamd.engine import Simulation, VelocityVerlet
    from hyenamd.engine.potentials import LennardJones

    path = tmp_path_factory.mktemp("engine") / "md.ckpt.safetensors"
    sim = Simulation(
        VelocityVerlet(LennardJones(sigma=1.0, epsilon=0.01, cutoff=3.0, switch_on=2.5), 1.0), tiny_system()
    )
    sim.run(2)
    sim.save_checkpoint(path)
    return path


ENGINE_CASES = {
    "corrupt JSON": (lambda m: _set(m, "hyenamd", "{oops"), "not valid JSON"),
    "JSON list": (lambda m: _set(m, "hyenamd", "[1, 2]"), "not an object"),
    "no device key": (lambda m: _set(m, "hyenamd", json.dumps({**json.loads(m["hyenamd"]), "device": None}) .replace('"device": null, ', "")), "device"),
    "missing step": (lambda m: _set(m, "hyenamd", json.dumps({k: v for k, v in json.loads(m["hyenamd"]).items() if k != "step"})), "step"),
    "model checkpoint format": (lambda m: _set(m, "hyenamd", json.dumps({**json.loads(m["hyenamd"]), "format": "other"})), "not an engine checkpoint"),
    "newer version": (lambda m: _set(m, "hyenamd", json.dumps({**json.loads(m["hyenamd"]), "version": 99})), "version"),
}  # fmt: skip


@pytest.mark.parametrize("name", list(ENGINE_CASES))
def test_damaged_engine_checkpoint(tmp_path, engine_ckpt, name):
    edit, words = ENGINE_CASES[name]
    bad = _rewrite(engine_ckpt, tmp_path / "bad.safetensors", meta=edit)
    with pytest.raises(EngineCheckpointError) as e:
        load_checkpoint(bad)
    assert words in str(e.value)


def test_engine_checkpoint_that_is_a_directory(tmp_path):
    with pytest.raises(EngineCheckpointError, match="is a directory"):
        load_checkpoint(tmp_path)


def test_model_checkpoint_given_as_engine_checkpoint(model_path):
    with pytest.raises(EngineCheckpointError):
        load_checkpoint(model_path)
