"""H5MD files written by other programs: the MDAnalysisTests files against MDAnalysis' own
reader (positions, velocities, forces, box, times after unit conversion), plus hand-written
files covering what H5MD 1.1 allows (fixed boxes, step intervals, other units)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from hyenamd.io import SchemaError, StoreError, open_store
from hyenamd.io.h5md_units import unit_factor
from hyenamd.units import EV_TO_KJ_PER_MOL

mda = pytest.importorskip("MDAnalysis")
data = pytest.importorskip("MDAnalysisTests.datafiles")


def _mda_universe(path, top, n):
    if top is not None:
        return mda.Universe(top, path)
    u = mda.Universe.empty(n, trajectory=True)
    u.load_new(path, format="H5MD")
    return u


CASES = {
    # file, topology for MDAnalysis, our options
    "test.h5md": (data.COORDINATES_H5MD, data.COORDINATES_TOPOLOGY, {"species": ["C"] * 5}),
    "cobrotoxin.h5md": (data.H5MD_xvf, data.TPR_xvf, {"species": np.ones(19385, dtype=np.int64)}),
    "cu.h5md": (data.H5MD_energy, None, {}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_mdanalysistests_files_match_mdanalysis(name):
    path, top, opts = CASES[name]
    with open_store(path, **opts) as st:
        u = _mda_universe(path, top, st.n_atoms)
        assert len(st) == u.trajectory.n_frames and st.status == "complete"
        for k, ts in enumerate(u.trajectory):
            atol = 1e-4 if st.layout.dtype == np.float32 else 1e-10
            np.testing.assert_allclose(st.read(k, "position"), ts.positions, rtol=1e-6, atol=atol)  # Å
            np.testing.assert_allclose(st.read(k, "box"), ts.triclinic_dimensions, rtol=1e-5, atol=1e-4)
            assert st.times[k] == pytest.approx(ts.time * 1000.0, rel=1e-6)  # MDAnalysis: ps
            assert st.steps[k] == ts.data["step"]
            if ts.has_velocities:  # MDAnalysis: Å/ps
                np.testing.assert_allclose(
                    st.read(k, "velocity") * 1000.0, ts.velocities, rtol=1e-5, atol=1e-4
                )
            if ts.has_forces:  # MDAnalysis: kJ/(mol Å)
                f = st.read(k, "force").astype(np.float64) * EV_TO_KJ_PER_MOL
                np.testing.assert_allclose(f, ts.forces, rtol=1e-5, atol=1e-3)
            s = st[k]  # a hyenamd System in internal units
            assert s.pbc.tolist() == [True] * 3 and s.cell is not None
        u.trajectory.close()


def test_cu_h5md_content():
    """ZnH5MD's file: species (atomic numbers, time-dependent), forces spelled "forces" in
    "eV/Angstrom", momenta (not converted), a per-group energy observable."""
    with open_store(data.H5MD_energy) as st:
        assert st.fields == ("position", "force", "box")
        assert set(st._static["species"].tolist()) == {29}
        assert st.system.masses[0].item() == pytest.approx(63.546, abs=1e-3)
        assert "momentum" in st.skipped
        assert st.observable_names == ("energy",) and st.units["energy"] == "eV"
        with h5py.File(data.H5MD_energy) as f:
            np.testing.assert_array_equal(st.read(3, "force"), f["particles/atoms/forces/value"][3])
            np.testing.assert_array_equal(st.observable("energy"), f["observables/atoms/energy/value"][()])


def test_inspect_names_the_writer_and_what_was_not_read(capsys):
    from hyenamd.cli import main

    assert main(["inspect", data.H5MD_energy]) == 0
    out = capsys.readouterr().out
    assert "written by 'ZnH5MD'" in out and "frames       20" in out and "atoms        108: Cu 108" in out
    assert "not read     momentum" in out


def test_malformed_observable_is_skipped_not_fatal():
    with open_store(data.H5MD_malformed) as st:  # MDAnalysis refuses this file; positions are fine
        assert len(st) == 20 and "observable energy" in st.skipped


def test_no_species_needs_species_or_topology():
    with pytest.raises(SchemaError, match="has no species: pass species="):
        open_store(data.H5MD_xvf)
    with pytest.raises(SchemaError, match="no element for 4612 atoms"):
        open_store(data.H5MD_xvf, topology=data.TPR_xvf)  # TIP4P virtual sites


def test_foreign_files_are_read_only(tmp_path):
    with pytest.raises(StoreError, match="read-only"):
        open_store(data.H5MD_energy, "a")


def _write_foreign(path, *, fixed_box: bool):
    """A hand-written H5MD 1.1 file: nm/ps/kJ units, step as a fixed interval with an offset,
    time with an offset, fixed or time-dependent box, species and masses."""
    rng = np.random.default_rng(0)
    n, frames = 4, 3
    with h5py.File(path, "w") as f:
        h = f.create_group("h5md")
        h.attrs["version"] = np.array([1, 1])
        h.create_group("creator").attrs["name"] = "handwritten"
        g = f.create_group("particles/water")
        box = g.create_group("box")
        box.attrs["dimension"] = 3
        box.attrs["boundary"] = np.array([b"periodic", b"periodic", b"none"])
        if fixed_box:
            e = box.create_dataset("edges", data=[2.0, 2.5, 3.0])
            e.attrs["unit"] = "nm"
        else:
            e = box.create_group("edges")
            e.create_dataset("value", data=np.array([[2.0, 2.5, 3.0]] * frames) + np.arange(frames)[:, None])
            e["value"].attrs["unit"] = "nm"
        for name, unit in (("position", "nm"), ("velocity", "nm ps-1"), ("force", "kJ mol-1 nm-1")):
            el = g.create_group(name)
            el.create_dataset("value", data=rng.normal(size=(frames, n, 3)))
            el["value"].attrs["unit"] = unit
            st = el.create_dataset("step", data=100)
            st.attrs["offset"] = 50
            t = el.create_dataset("time", data=0.2)
            t.attrs["offset"], t.attrs["unit"] = 0.1, "ps"
        if not fixed_box:
            e["step"], e["time"] = g["position/step"], g["position/time"]
        g.create_dataset("species", data=[8, 1, 1, 8])
        m = g.create_dataset("mass", data=[16.0, 1.0, 1.0, 16.0])
        m.attrs["unit"] = "g mol-1"
        ob = f.create_group("observables/potential_energy")
        ob.create_dataset("value", data=[1.0, 2.0, 3.0]).attrs["unit"] = "kJ mol-1"
        ob["step"], ob["time"] = g["position/step"], g["position/time"]
        return {k: g[f"{k}/value"][()] for k in ("position", "velocity", "force")}


@pytest.mark.parametrize("fixed_box", [True, False])
def test_handwritten_h5md_units_and_intervals(tmp_path, fixed_box):
    p = tmp_path / "other.h5md"
    raw = _write_foreign(p, fixed_box=fixed_box)
    with open_store(p) as st:
        assert len(st) == 3 and st.fields == ("position", "velocity", "force") + (
            () if fixed_box else ("box",)
        )
        np.testing.assert_array_equal(st.steps, [50, 150, 250])
        np.testing.assert_allclose(st.times, [100.0, 300.0, 500.0])  # (0.1 + 0.2 k) ps in fs
        np.testing.assert_allclose(st.read(1, "position"), raw["position"][1] * 10.0)
        np.testing.assert_allclose(st.read(1, "velocity"), raw["velocity"][1] * 0.01)  # nm/ps -> Å/fs
        np.testing.assert_allclose(st.read(2, "force"), raw["force"][2] / EV_TO_KJ_PER_MOL / 10.0)
        np.testing.assert_allclose(
            st.observable("potential_energy"), np.array([1.0, 2.0, 3.0]) / EV_TO_KJ_PER_MOL
        )
        s = st[2]
        assert s.species.tolist() == [8, 1, 1, 8] and s.pbc.tolist() == [True, True, False]
        np.testing.assert_allclose(s.masses.numpy(), [16.0, 1.0, 1.0, 16.0])
        want = np.diag([20.0, 25.0, 30.0]) + (0 if fixed_box else np.eye(3) * 20.0)
        np.testing.assert_allclose(s.cell.numpy(), want)


@pytest.mark.parametrize(
    ("unit", "quantity", "factor"),
    [
        ("nm", "position", 10.0),
        ("Angstrom", "position", 1.0),
        ("1e-3 ps", "time", 1.0),
        ("nm ps-1", "velocity", 0.01),
        ("kJ mol-1 nm-1", "force", 1.0 / EV_TO_KJ_PER_MOL / 10.0),
        ("kJ/(mol*nm)", "force", 1.0 / EV_TO_KJ_PER_MOL / 10.0),
        ("eV/Angstrom", "force", 1.0),
        ("kcal mol-1 Angstrom-1", "force", 4.184 / EV_TO_KJ_PER_MOL),
        ("g mol-1", "mass", 1.0 + 3.5e-10),  # 1 g/mol is not exactly N_A amu since SI 2019
        (None, "force", 1.0),
    ],
)
def test_unit_factor(unit, quantity, factor):
    assert unit_factor(unit, quantity) == pytest.approx(factor, rel=1e-10)


def test_unit_factor_refuses_wrong_dimension_and_unknown_symbols():
    with pytest.raises(SchemaError, match="not a unit of force"):
        unit_factor("nm", "force")
    with pytest.raises(SchemaError, match="unknown unit symbol 'furlong'"):
        unit_factor("furlong", "position")


def test_unit_factor_agrees_with_mdanalysis():
    import MDAnalysis.units as mu

    assert unit_factor("kcal mol-1 Angstrom-1", "force") / unit_factor(
        "kJ mol-1 nm-1", "force"
    ) == pytest.approx(mu.get_conversion_factor("force", "kcal/(mol*Angstrom)", "kJ/(mol*nm)"), rel=1e-9)
    assert unit_factor("AKMA", "time") == pytest.approx(
        1000.0 / mu.get_conversion_factor("time", "ps", "AKMA")
    )
