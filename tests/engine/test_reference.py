"""OpenMM reference MD: store contents vs OpenMM's own State, units, determinism, builders, CLI."""

from __future__ import annotations

import dataclasses
import json
import pathlib

import numpy as np
import openmm
import openmm.unit as u
import pytest
import torch

from hyenamd import Batch
from hyenamd.config import ConfigError, load_config
from hyenamd.engine.potentials import LennardJones
from hyenamd.engine.reference import ReferenceConfig, make_context, reference_md
from hyenamd.engine.reference_systems import alanine_dipeptide, argon_box, villin_in_water, water_box
from hyenamd.io import open_store

ROOT = pathlib.Path(__file__).resolve().parents[2]
TINY = ROOT / "configs" / "reference" / "tiny.yaml"

# eV and Å from OpenMM's own unit system, independently of hyenamd.units
_EV_PER_KJ_MOL = 1000.0 / u.AVOGADRO_CONSTANT_NA.value_in_unit(u.mole**-1) / 1.602176634e-19


def _tiny(tmp_path, **changes) -> ReferenceConfig:
    cfg = load_config(TINY, ReferenceConfig, [f"output={tmp_path / 'ref.h5'}"])
    return dataclasses.replace(cfg, **changes)


def test_store_frames_equal_openmm_states(tmp_path):
    cfg = _tiny(tmp_path)
    path = reference_md(cfg)
    # an independent OpenMM run with the same settings, read with OpenMM's unit conversions
    _, ctx, integ, _ = make_context(cfg)
    with open_store(path) as store:
        assert list(store.steps) == [0, 10, 20, 30, 40]
        assert store.units["potential_energy"] == "eV"
        for k in range(len(store)):
            if k:
                integ.step(cfg.report_interval)
            st = ctx.getState(getPositions=True, getVelocities=True, getForces=True, getEnergy=True)
            x = st.getPositions(asNumpy=True).value_in_unit(u.angstrom)
            v = st.getVelocities(asNumpy=True).value_in_unit(u.angstrom / u.femtosecond)
            f = st.getForces(asNumpy=True).value_in_unit(u.kilojoule_per_mole / u.angstrom) * _EV_PER_KJ_MOL
            pe = st.getPotentialEnergy().value_in_unit(u.kilojoule_per_mole) * _EV_PER_KJ_MOL
            ke = st.getKineticEnergy().value_in_unit(u.kilojoule_per_mole) * _EV_PER_KJ_MOL
            assert np.allclose(store.read(k, "positions"), x, rtol=1e-12, atol=1e-12)
            assert np.allclose(store.read(k, "velocities"), v, rtol=1e-12, atol=1e-15)
            assert np.allclose(store.read(k, "forces"), f, rtol=1e-12, atol=1e-12)
            assert store.read(k, "potential_energy") == pytest.approx(pe, rel=1e-12)
            assert store.read(k, "kinetic_energy") == pytest.approx(ke, rel=1e-12)
            box = st.getPeriodicBoxVectors(asNumpy=True).value_in_unit(u.angstrom)
            assert np.allclose(store.read(k, "cell"), box, rtol=1e-12)
            assert store.read(k, "time") == pytest.approx(k * cfg.report_interval * cfg.dt_fs)
        temps = store.observable("temperature")
        assert 40.0 < temps.mean() < 140.0  # near the 90 K thermostat after 40 steps
    assert (tmp_path / "ref.h5.provenance.json").exists()


def test_argon_energies_match_the_torch_lj_twin(tmp_path):
    cfg = _tiny(tmp_path)
    path = reference_md(cfg)
    a = cfg.argon
    lj = LennardJones(a.sigma, a.epsilon, a.cutoff, a.switch_on)
    with open_store(path) as store:
        for k in (0, len(store) - 1):
            frame = store[k]
            out = lj.energy_and_forces(Batch.from_system(frame))
            # OpenMM's CPU platform computes nonbonded terms in single precision
            assert float(out["energy"][0]) == pytest.approx(store.read(k, "potential_energy"), rel=2e-5)
            f = store.read(k, "forces")
            assert np.abs(out["forces"].numpy() - f).max() < 1e-4 * np.abs(f).max()


def test_reference_md_is_deterministic(tmp_path):
    a = reference_md(_tiny(tmp_path, output=str(tmp_path / "a.h5")))
    b = reference_md(_tiny(tmp_path, output=str(tmp_path / "b.h5")))
    with open_store(a) as sa, open_store(b) as sb:
        assert np.array_equal(
            sa.read(slice(0, len(sa)), "positions"), sb.read(slice(0, len(sb)), "positions")
        )
    c = reference_md(_tiny(tmp_path, output=str(tmp_path / "c.h5"), seed=4))
    with open_store(a) as sa, open_store(c) as sc:
        assert not np.array_equal(sa.read(1, "velocities"), sc.read(1, "velocities"))


def test_nve_and_existing_output(tmp_path):
    cfg = _tiny(tmp_path, ensemble="nve", dt_fs=2.0, n_steps=100, report_interval=20)
    path = reference_md(cfg)
    with open_store(path) as store:
        e = store.observable("total_energy")
        assert np.abs(e - e[0]).max() < 1e-3 * abs(e[0])
        n = len(store)
    with pytest.raises(FileExistsError, match="overwrite"):
        reference_md(cfg)
    with open_store(path) as store:  # untouched
        assert len(store) == n
    reference_md(dataclasses.replace(cfg, overwrite=True, n_steps=20))
    with open_store(path) as store:
        assert len(store) == 2


def test_peptide_and_water_builders(tmp_path):
    ala = alanine_dipeptide()
    s = ala.to_hyenamd()
    assert s.n_atoms == 22 and s.cell is None
    assert s.labels.residue_names[0] == "ACE" and s.labels.residue_names[-1] == "NME"
    assert sorted(set(s.species.tolist())) == [1, 6, 7, 8]
    assert alanine_dipeptide(solvent="obc2").system.getNumForces() > ala.system.getNumForces()
    cfg = _tiny(
        tmp_path, system="alanine_dipeptide", temperature_k=300.0, dt_fs=0.5, n_steps=20, minimize=True
    )
    with open_store(reference_md(cfg)) as store:
        assert store[0].labels.atom_names[:2] == ("CH3", "H1")
        assert np.isfinite(store.read(slice(0, len(store)), "forces")).all()
    w = water_box(1.9, cutoff_nm=0.8)
    ws = w.to_hyenamd()
    assert ws.n_atoms % 3 == 0 and ws.pbc.all() and w.system.getNumConstraints() == 0
    assert ws.cell[0, 0] == pytest.approx(19.0)
    cfg = _tiny(tmp_path, system="water", output=str(tmp_path / "w.h5"), water_box_nm=1.9, cutoff_nm=0.8,
                temperature_k=300.0, dt_fs=0.5, n_steps=10, report_interval=5, minimize=True)  # fmt: skip
    with open_store(reference_md(cfg)) as store:
        assert len(store) == 3 and store.n_atoms == ws.n_atoms
        assert store[2].labels.residue_names[0] == "HOH"


@pytest.mark.slow
def test_villin_builder_runs():
    ref = villin_in_water()
    assert ref.n_atoms == 8867
    s = ref.to_hyenamd(dtype=torch.float32)
    assert s.labels.residue_names[0] == "LEU" and "HOH" in s.labels.residue_names
    integ = openmm.VerletIntegrator(0.0005)
    ctx = openmm.Context(ref.system, integ, openmm.Platform.getPlatformByName("CPU"))
    ctx.setPositions(ref.positions * u.nanometer)
    integ.step(2)
    assert np.isfinite(ctx.getState(getEnergy=True).getPotentialEnergy()._value)


def test_argon_builder_checks_and_cli(tmp_path):
    with pytest.raises(ValueError, match="half the box"):
        argon_box(n_cells=2, cutoff=8.5)
    with pytest.raises(ValueError, match="report_interval"):
        ReferenceConfig(report_interval=0)
    with pytest.raises(ConfigError, match="nonsense"):
        load_config(TINY, ReferenceConfig, ["nonsense=1"])
    from hyenamd.cli import main

    out = tmp_path / "cli.h5"
    assert main(["reference", str(TINY), "--set", f"output={out}", "--set", "n_steps=10"]) == 0
    with open_store(out) as store:
        assert len(store) == 2


def test_nve_segments_from_nvt_states(tmp_path):
    """segments: nve — stored frames are NVE segments (energy kept), numbered, with NVT gaps between."""
    cfg = _tiny(tmp_path, segments="nve", segment_steps=20, segment_gap_steps=30, n_steps=40, dt_fs=2.0)
    path = reference_md(cfg)
    with open_store(path) as store:
        seg = store.observable("segment")
        assert seg.tolist() == [0, 0, 0, 1, 1, 1]
        assert list(store.steps) == [30, 40, 50, 80, 90, 100]  # the NVT gaps are not stored
        e = store.observable("total_energy")
        for s in (0, 1):  # NVE within a segment: the total energy moves far less than between segments
            block = e[seg == s]
            assert np.ptp(block) < 0.02 * np.std(store.observable("kinetic_energy")) + 1e-3
    prov = (tmp_path / "ref.h5.provenance.json").read_text()
    assert '"kind": "nve"' in prov
    with pytest.raises(ValueError, match="multiple of report_interval"):
        _tiny(tmp_path, segments="nve", segment_steps=15)
    with pytest.raises(ValueError, match="ensemble: nvt"):
        _tiny(tmp_path, segments="nve", ensemble="nve")


def test_melt_stage_runs_hot_then_returns_to_the_target(tmp_path):
    """A melt stage (not stored) changes the trajectory, is deterministic, and leaves T at the target."""
    base = _tiny(tmp_path, output=str(tmp_path / "plain.h5"), ensemble="nvt")
    hot = dataclasses.replace(
        base, output=str(tmp_path / "melt.h5"), melt_temperature_k=400.0, melt_steps=200
    )
    again = dataclasses.replace(hot, output=str(tmp_path / "melt2.h5"))
    paths = [reference_md(c) for c in (base, hot, again)]
    reads = []
    for p in paths:
        with open_store(p) as st:
            reads.append((st.read(0, "positions"), len(st)))
    assert reads[0][1] == reads[1][1]  # the melt steps are not stored
    assert not np.array_equal(reads[0][0], reads[1][0])
    assert np.array_equal(reads[1][0], reads[2][0])
    prov = json.loads(pathlib.Path(str(paths[1]) + ".provenance.json").read_text())
    assert prov["config"]["melt_steps"] == 200 and prov["config"]["melt_temperature_k"] == 400.0


@pytest.mark.parametrize(
    "bad, msg",
    [
        (dict(melt_steps=10), "melt_temperature_k"),
        (dict(melt_steps=10, melt_temperature_k=300.0, ensemble="nve"), "ensemble: nvt"),
        (dict(melt_steps=-1), "melt_steps"),
    ],
)
def test_melt_settings_are_checked(tmp_path, bad, msg):
    with pytest.raises(ValueError, match=msg):
        _tiny(tmp_path, **bad)
