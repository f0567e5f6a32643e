"""The engine's write paths and adapters: reporters never replace or truncate an existing file
unless asked (hash before/after), resume refuses another system's checkpoint, and the ASE and
OpenMM adapters refuse NaN energies/forces (overlapping atoms) instead of returning them."""

from __future__ import annotations

import numpy as np
import pytest

from hyenamd.config import from_dict
from hyenamd.engine.checkpoint import CheckpointError
from hyenamd.engine.config import MDConfig, build_simulation
from hyenamd.engine.potentials import LennardJones
from hyenamd.errors import HyenaError, NonFiniteOutputError, OutputExistsError

from .conftest import tiny_system, tree_hash


def _lj():
    return LennardJones(sigma=1.0, epsilon=0.01, cutoff=3.0, switch_on=2.5)


def _cfg(tmp_path, **reporters):
    rep = {"state_data": str(tmp_path / "md.csv"), "state_data_interval": 1, "progress": False,
           "trajectory": str(tmp_path / "traj.h5"), "trajectory_interval": 1,
           "checkpoint": str(tmp_path / "md.ckpt.safetensors"), "checkpoint_interval": 2} | reporters  # fmt: skip
    return from_dict(MDConfig, {"n_steps": 4, "reporters": rep})


def _run(cfg, system, resume=False):
    with build_simulation(cfg, _lj(), system, resume=resume) as sim:
        sim.run_to(cfg.n_steps)


EXISTING = {
    # name: (files to create first, error words)
    "state CSV exists": (("md.csv",), "state-data CSV"),
    "trajectory exists": (("traj.h5",), "trajectory store"),
    "checkpoint exists": (("md.ckpt.safetensors",), "checkpoint"),
    "CSV and trajectory exist": (("md.csv", "traj.h5"), "already exists"),
}


@pytest.mark.parametrize("name", list(EXISTING))
def test_fresh_run_never_replaces_existing_outputs(tmp_path, name):
    files, words = EXISTING[name]
    for f in files:
        (tmp_path / f).write_bytes(b"previous run's data\n")
    before = tree_hash(tmp_path)
    with pytest.raises(OutputExistsError) as e:
        _run(_cfg(tmp_path), tiny_system())
    assert words in str(e.value) and "overwrite" in str(e.value)
    assert tree_hash(tmp_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(files)


def test_rerun_of_a_finished_config_touches_nothing(tmp_path):
    """The run that found the bug: re-running a config truncated the CSV before the store refused."""
    cfg = _cfg(tmp_path)
    _run(cfg, tiny_system())
    before = tree_hash(tmp_path)
    with pytest.raises(OutputExistsError):
        _run(cfg, tiny_system())
    assert tree_hash(tmp_path) == before


def test_overwrite_true_replaces_outputs(tmp_path):
    cfg = _cfg(tmp_path, overwrite=True)
    (tmp_path / "md.csv").write_text("old\n")
    _run(cfg, tiny_system())
    assert (tmp_path / "md.csv").read_text().startswith("step,")


def test_resume_appends_and_keeps_earlier_rows(tmp_path):
    cfg = _cfg(tmp_path)
    _run(from_dict(MDConfig, {**_asdict(cfg), "n_steps": 2}), tiny_system())
    rows = (tmp_path / "md.csv").read_text().splitlines()
    _run(cfg, tiny_system(), resume=True)
    assert (tmp_path / "md.csv").read_text().splitlines()[: len(rows)] == rows


def _asdict(cfg):
    from hyenamd.config import to_dict

    return to_dict(cfg)


RESUME_CASES = {
    "other atom count": (lambda: tiny_system(6), "atoms"),
    "other species": (lambda: tiny_system(4).replace(species=np.array([8, 8, 8, 8])), "species"),
    "other periodicity": (lambda: tiny_system(4, periodic=True), "periodicity"),
}


@pytest.mark.parametrize("name", list(RESUME_CASES))
def test_resume_refuses_another_systems_checkpoint(tmp_path, name):
    make, words = RESUME_CASES[name]
    cfg = _cfg(tmp_path)
    _run(from_dict(MDConfig, {**_asdict(cfg), "n_steps": 2}), tiny_system())
    before = tree_hash(tmp_path)
    with pytest.raises(CheckpointError) as e:
        build_simulation(cfg, _lj(), make(), resume=True)
    assert words in str(e.value)
    assert tree_hash(tmp_path) == before


@pytest.mark.parametrize("target", ["directory", "unwritable"])
def test_output_path_problems_are_clear(tmp_path, target):
    import os

    if target == "directory":
        (tmp_path / "md.csv").mkdir()
        words = "is a directory"
    else:
        if os.geteuid() == 0:
            pytest.skip("root ignores directory permissions")
        (tmp_path / "ro").mkdir()
        (tmp_path / "ro").chmod(0o500)
        words = "permission denied"
    cfg = _cfg(tmp_path, state_data=str(tmp_path / ("md.csv" if target == "directory" else "ro/md.csv")))
    try:
        with pytest.raises(HyenaError, match=words):
            _run(cfg, tiny_system())
    finally:
        if target != "directory":
            (tmp_path / "ro").chmod(0o700)
    assert not (tmp_path / "traj.h5").exists()


# ---------------------------------------------------------------- adapters: NaN outputs
def _overlapping_atoms():
    import ase

    return ase.Atoms("OHH", positions=[[0, 0, 0], [0.8, 0.6, 0], [0.8, 0.6, 0]])  # atoms 1 and 2 coincide


def test_ase_calculator_refuses_nan_forces(model_path):
    from hyenamd.engine import HyenaCalculator

    atoms = _overlapping_atoms()
    atoms.calc = HyenaCalculator.from_checkpoint(model_path, dtype="float64")
    with pytest.raises(NonFiniteOutputError, match="overlap"):
        atoms.get_forces()


def test_ase_calculator_still_computes_normal_geometries(model_path):
    from hyenamd.engine import HyenaCalculator

    atoms = _overlapping_atoms()
    atoms.positions[2] = [-0.8, 0.6, 0]
    atoms.calc = HyenaCalculator.from_checkpoint(model_path, dtype="float64")
    assert np.isfinite(atoms.get_forces()).all()


def test_openmm_force_refuses_nan_energy(model_path):
    import openmm
    import openmm.app as app
    import openmm.unit as u

    from hyenamd.engine.openmm_potential import MLPotential

    top = app.Topology()
    res = top.addResidue("HOH", top.addChain())
    for name, el in (("O", "O"), ("H1", "H"), ("H2", "H")):
        top.addAtom(name, app.Element.getBySymbol(el), res)
    system = MLPotential("hyenamd", model=str(model_path), dtype="float64").createSystem(top)
    ctx = openmm.Context(
        system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference")
    )
    ctx.setPositions(np.array([[0, 0, 0], [0.08, 0.06, 0], [0.08, 0.06, 0]]) * u.nanometer)
    with pytest.raises(Exception, match="NaN") as e:
        ctx.getState(getEnergy=True, getForces=True)
    assert "overlap" in str(e.value)
