"""The store-reading layer: HDF5/zarr stores as trajectories, ``validate`` on paths, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hyenamd.cli import main
from hyenamd.io import open_store
from hyenamd.system import System
from hyenamd.validate import ValidateConfig, validate
from hyenamd.validate.store import open_trajectory

CFG = ValidateConfig(progress=False, rdf_r_max=6.0, rdf_bins=60)


def write_store(path, traj, *, allow_nan=False, forces=None, ensemble=None):
    template = System(
        positions=torch.tensor(traj.positions[0]),
        species=torch.as_tensor(traj.species),
        cell=torch.tensor(traj.cell),
        pbc=True,
        labels=traj.labels,
    )
    obs = tuple(traj.observables)
    fields = ("velocity",) + (("force",) if forces is not None else ())
    with open_store(path, "w", system=template, fields=fields, observables=obs, allow_nan=allow_nan) as st:
        for k in range(len(traj)):
            st.append(
                traj.positions[k],
                step=k,
                time=float(traj.times[k]),
                velocities=traj.velocities[k],
                forces=None if forces is None else forces[k],
                cell=traj.cell,
                **{name: float(v[k]) for name, v in traj.observables.items()},
            )
    if ensemble:
        path.with_name(path.name + ".provenance.json").write_text(
            json.dumps({"config": {"ensemble": ensemble}})
        )
    return path


@pytest.mark.parametrize("suffix", [".h5", ".zarr"])
def test_store_trajectory_round_trip(tmp_path, synth, suffix):
    traj = synth.solvated_peptide(n_frames=6)
    path = write_store(tmp_path / f"t{suffix}", traj, ensemble="NVT")
    st = open_trajectory(path)
    assert len(st) == 6 and st.info["ensemble"] == "nvt"
    np.testing.assert_array_equal(st.species, traj.species)
    assert st.labels.atom_names == traj.labels.atom_names
    np.testing.assert_allclose(st.times, traj.times)
    np.testing.assert_allclose(st.observable("potential_energy"), traj.observables["potential_energy"])
    assert st.observable("nothing") is None and st.forces(0) is None
    for a, b in zip(st.frames(1, 6, 2), traj.frames(1, 6, 2), strict=True):
        assert a.index == b.index and a.time == b.time
        np.testing.assert_allclose(a.positions, b.positions)
        np.testing.assert_allclose(a.velocities, b.velocities)
        np.testing.assert_allclose(a.cell, b.cell)
    st.close()


def test_validate_on_paths_matches_arrays(tmp_path, synth):
    ref, sur = synth.solvated_peptide(seed=0), synth.solvated_peptide(seed=1)
    rp, sp = write_store(tmp_path / "ref.h5", ref), write_store(tmp_path / "sur.zarr", sur)
    on_paths = validate(rp, sp, CFG, echo=lambda *a: None)
    on_arrays = validate(ref, sur, CFG, echo=lambda *a: None)
    assert [m.name for m in on_paths.metrics] == [m.name for m in on_arrays.metrics]
    for a, b in zip(on_paths.metrics, on_arrays.metrics):
        assert a.value == pytest.approx(b.value, rel=1e-9, abs=1e-12), a.name
    assert on_paths.sources == {"reference": str(rp), "surrogate": str(sp)}


def test_cli_exit_codes_and_report(tmp_path, synth, capsys):
    ref = synth.water_liquid(seed=0)
    rp = write_store(tmp_path / "ref.h5", ref, ensemble="nvt")
    same = write_store(tmp_path / "same.h5", ref)
    out = tmp_path / "rep"
    assert main(["validate", str(rp), str(same), "--out", str(out), "--set", "progress=false"]) == 0
    assert "PASSED" in capsys.readouterr().out
    assert json.loads((out / "metrics.json").read_text())["passed"] is True

    broken = synth.water_liquid(seed=0)
    broken.positions = broken.positions.copy()
    broken.positions[20:, 3] = np.nan
    bp = write_store(tmp_path / "broken.zarr", broken, allow_nan=True)
    assert main(["validate", str(rp), str(bp), "--no-report", "--set", "progress=false"]) == 1
    text = capsys.readouterr().out
    assert "blowup_time" in text and "FAIL" in text

    assert main(["validate", str(rp), str(tmp_path / "missing.h5"), "--no-report"]) == 2
    assert "no trajectory store" in capsys.readouterr().err
    assert main(["validate", str(rp), str(same), "--set", "no_such_key=1"]) == 2


def test_cli_with_model_checkpoint_adds_accuracy(tmp_path, synth, capsys):
    from hyenamd.surrogate import GHyena, GHyenaConfig, save_model

    ref = synth.water_liquid(seed=0, n_frames=12)
    rng = np.random.default_rng(0)
    forces = rng.normal(0, 1.0, ref.positions.shape)
    rp = write_store(tmp_path / "ref.h5", ref, forces=forces)
    cfg = GHyenaConfig(
        species=(1, 8), cutoff=3.0, n_scalar=8, n_vector=2, n_rbf=4, pattern=("local",), dtype="float64"
    )
    ckpt = save_model(GHyena(cfg), tmp_path / "m.safetensors")
    code = main(
        ["validate", str(rp), str(rp), "--model", str(ckpt), "--out", str(tmp_path / "r"),
         "--set", "progress=false", "--set", "accuracy_frames=3"]
    )  # fmt: skip
    data = json.loads((tmp_path / "r" / "metrics.json").read_text())
    acc = {m["name"]: m for m in data["metrics"] if m["group"] == "accuracy"}
    assert {"force_rel_rmse", "force_rmse", "force_mae", "energy_mae"} <= set(acc)
    # an untrained model against random reference forces: RMSE about σ(F) or worse → fails the 10 % target
    assert acc["force_rel_rmse"]["value"] > 0.5 and acc["force_rel_rmse"]["passed"] is False
    assert code == 1
