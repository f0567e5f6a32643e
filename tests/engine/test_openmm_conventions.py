"""OpenMM with openmm-ml habits: modelPath=, precision=, and a serialised System that survives chdir.

A serialised System names the checkpoint by absolute path and sha256; a missing or changed
file gives a Python error (never the segfault OpenMM's PythonForce deserialiser produces when
the unpickling callable raises).
"""

from __future__ import annotations

import os
import pickle
import shutil

import numpy as np
import openmm
import openmm.unit as u
import pytest
import torch

from hyenamd.engine.openmm_potential import (
    HyenaCheckpointWarning,
    HyenaPotentialImplFactory,
    MLPotential,
    deserialize_system,
    file_sha256,
)
from hyenamd.engine.reference_systems import argon_box
from hyenamd.surrogate import save_model
from hyenamd.surrogate.checkpoint import CheckpointError

openmmml = pytest.importorskip("openmmml", reason="openmm-ml (the dev extra) is not installed")


@pytest.fixture(scope="module")
def argon32():
    return argon_box(n_cells=2, cutoff=5.0, switch_on=4.5, rattle=0.2, seed=3)


def _energy(system, positions_nm) -> float:
    ctx = openmm.Context(
        system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference")
    )
    ctx.setPositions(positions_nm * u.nanometer)
    return ctx.getState(getEnergy=True).getPotentialEnergy().value_in_unit(u.kilojoule_per_mole)


class _Record(pickle.Unpickler):
    """Reads the (path, sha256, ..., dtype, skin) record of a pickled HyenaForce without loading anything."""

    def find_class(self, module, name):
        if module == "hyenamd.engine.openmm_potential" and name == "_rebuild_checked":
            return lambda *args: args
        return super().find_class(module, name)


def _record(system) -> tuple:
    """The pickled record of the system's one PythonForce (read from the XML, nothing loaded)."""
    import io
    import xml.etree.ElementTree as ET

    root = ET.fromstring(openmm.XmlSerializer.serialize(system))
    (force,) = [f for f in root.iter("Force") if f.get("type") == "PythonForce"]
    return _Record(io.BytesIO(bytes.fromhex(force.get("function")))).load()


def test_model_path_and_precision_through_openmm_ml(ghyena_path, argon32):
    pot = openmmml.MLPotential("hyenamd", modelPath=str(ghyena_path))
    sys64 = pot.createSystem(argon32.topology, precision="double")
    sys32 = pot.createSystem(argon32.topology, precision="single")
    assert _record(sys64)[6] == "float64" and _record(sys32)[6] == "float32"
    e64, e32 = _energy(sys64, argon32.positions), _energy(sys32, argon32.positions)
    assert e32 == pytest.approx(e64, rel=1e-4) and e32 != e64  # a float32 model really ran
    assert _record(openmmml.MLPotential("hyenamd", modelPath=str(ghyena_path), precision="single")
                   .createSystem(argon32.topology))[6] == "float32"  # fmt: skip
    with pytest.raises(ValueError, match="precision must be 'single' or 'double'"):
        pot.createSystem(argon32.topology, precision="half")
    with pytest.raises(ValueError, match="disagree"):
        pot.createSystem(argon32.topology, precision="single", dtype="float64")
    with pytest.raises(ValueError, match="disagree"):
        HyenaPotentialImplFactory().createImpl(
            "hyenamd", model=str(ghyena_path), modelPath="/other.safetensors"
        )


def test_serialised_system_survives_chdir(ghyena_path, argon32, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(ghyena_path, work / "model.safetensors")
    monkeypatch.chdir(work)
    system = MLPotential("hyenamd", model="model.safetensors", dtype="float64").createSystem(argon32.topology)
    e0 = _energy(system, argon32.positions)
    xml = openmm.XmlSerializer.serialize(system)
    rec = _record(system)
    assert rec[0] == str(work / "model.safetensors") and rec[1] == file_sha256(work / "model.safetensors")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.chdir(elsewhere)
    copy = openmm.XmlSerializer.deserialize(xml)
    assert _energy(copy, argon32.positions) == pytest.approx(e0, rel=1e-12)
    assert _energy(deserialize_system(xml), argon32.positions) == pytest.approx(e0, rel=1e-12)


def _serialised(tmp_path, argon32, model) -> tuple[str, object]:
    path = tmp_path / "model.safetensors"
    save_model(model, path)
    system = MLPotential("hyenamd", model=str(path), dtype="float64").createSystem(argon32.topology)
    return openmm.XmlSerializer.serialize(system), path


@pytest.mark.parametrize("what", ["missing", "changed"])
def test_missing_or_changed_checkpoint_is_a_python_error(what, tmp_path, argon32, make_ghyena):
    xml, path = _serialised(tmp_path, argon32, make_ghyena(species=(18,)))
    original = path.read_bytes()
    if what == "missing":
        path.unlink()
        match = "does not exist"
    else:
        save_model(make_ghyena(species=(18,), seed=1), path)  # same name, other weights
        match = "changed since this OpenMM System was serialised"
    with pytest.raises(CheckpointError, match=match):
        deserialize_system(xml)
    # through OpenMM's own deserialiser: a warning now, an exception (not a crash) at evaluation
    with pytest.warns(HyenaCheckpointWarning, match=match):
        broken = openmm.XmlSerializer.deserialize(xml)
    with pytest.raises(openmm.OpenMMException, match=match):
        _energy(broken, argon32.positions)
    # re-serialising keeps the record, so restoring the file makes the System work again
    again = openmm.XmlSerializer.serialize(broken)
    # the same bytes (a re-save may differ: safetensors does not fix its header order)
    path.write_bytes(original)
    assert np.isfinite(_energy(deserialize_system(again), argon32.positions))


def test_dtype_names_reach_the_force(ghyena_path, argon32):
    system = MLPotential("hyenamd", model=str(ghyena_path), dtype=torch.float32).createSystem(
        argon32.topology
    )
    assert _record(system)[6] == "float32"
    with pytest.raises(ValueError, match="dtype must be"):
        MLPotential("hyenamd", model=str(ghyena_path), dtype="float16")
