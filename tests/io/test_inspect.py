"""``hyenamd inspect PATH`` for stores (and a clear message for what it cannot read)."""

from __future__ import annotations

import pathlib

import pytest

from hyenamd.cli import main
from hyenamd.io import open_store


@pytest.mark.parametrize("suffix", [".h5", ".zarr"])
def test_inspect_store(tmp_path, make_system, make_frames, capsys, suffix):
    system = make_system()
    p = tmp_path / f"t{suffix}"
    with open_store(p, "w", system=system, compression="gzip") as st:
        for d in make_frames(system.n_atoms, 3):
            st.append(**d)
    assert main(["inspect", str(p)]) == 0
    out = capsys.readouterr().out
    assert "status       complete" in out and "frames       3" in out
    assert "atoms        7: H 2, C 2, N 1, O 1, Ar 1" in out
    assert "steps        3 .. 23" in out and "time         1.5 .. 11.5 fs" in out
    assert "/particles/all/position/value" in out and "[Angstrom]" in out and "Angstrom-1]" in out
    assert "potential_energy min" in out and "on disk" in out


def test_inspect_errors(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "missing.h5")]) == 2
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.h5"
    bad.write_text("not hdf5")
    assert main(["inspect", str(bad)]) == 2
    assert "not an HDF5 file" in capsys.readouterr().err


def test_inspect_checkpoint(tmp_path, capsys):
    from hyenamd.surrogate import GHyena, GHyenaConfig, save_model

    cfg = GHyenaConfig(species=(1, 8), cutoff=3.0, n_scalar=4, n_vector=2, n_rbf=3, pattern=("local",))
    path = save_model(GHyena(cfg), tmp_path / "m.safetensors")
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "hyenamd checkpoint" in out and "H (1), O (8)" in out and "3.0 Å" in out


def test_inspect_engine_checkpoint_train_state_and_foreign_files(tmp_path, capsys):
    import json

    import torch
    from safetensors.torch import save_file

    from hyenamd.cluster.spec import RolloutSpec, write_initial_store
    from hyenamd.cluster.worker import RolloutWorker
    from hyenamd.engine.reference_systems import lj_fluid_system

    init = write_initial_store(lj_fluid_system(2, seed=0), tmp_path / "init.h5md")
    spec = RolloutSpec(
        name="r", initial=init, model={"kind": "lennard_jones"}, integrator={"kind": "velocity_verlet", "dt_fs": 2.0},
        steps=4, output=str(tmp_path / "r.h5md"), report_interval=2, checkpoint_interval=2, temperature_k=50.0,
    )  # fmt: skip
    RolloutWorker().run(spec)
    assert main(["inspect", spec.checkpoint_path]) == 0
    out = capsys.readouterr().out
    assert "hyenamd engine checkpoint" in out and "step         4" in out and "atoms        32" in out

    state = tmp_path / "train_state.safetensors"
    meta = {"step": 12, "epoch": 3, "best": 0.5, "settings": {"task": "force_field"}}
    save_file(
        {"model.w": torch.zeros(2)},
        str(state),
        metadata={"format": "hyenamd.train_state", "state": json.dumps(meta)},
    )
    assert main(["inspect", str(state)]) == 0
    out = capsys.readouterr().out
    assert "hyenamd training state" in out and "step 12, epoch 3" in out and "force_field" in out

    other = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(1)}, str(other))
    assert main(["inspect", str(other)]) == 2
    err = capsys.readouterr().err
    assert (
        err.count("\n") == 1 and "not a hyenamd model checkpoint, engine checkpoint or training state" in err
    )
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(spec_bytes := pathlib.Path(spec.checkpoint_path).read_bytes()[:100])
    assert spec_bytes and main(["inspect", str(cut)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a readable safetensors file" in err
    txt = tmp_path / "notes.txt"
    txt.write_text("hello")
    assert main(["inspect", str(txt)]) == 2
    assert capsys.readouterr().err.count("\n") == 1
