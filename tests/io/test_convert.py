"""Converters: HDF5 ↔ zarr ↔ ASE round trips (float32 and float64) and DCD/XTC export."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hyenamd.io import open_store
from hyenamd.io.convert import convert_store, export_trajectory, store_from_ase, store_to_ase


def _write(path, system, frames, **kw):
    with open_store(path, "w", system=system, **kw) as st:
        for d in frames:
            st.append(**d)


def _arrays(path):
    with open_store(path) as st:
        out = {
            name: st.read(slice(None), name) for name in (*st.fields, "step", "time", *st.observable_names)
        }
        out["_species"] = st.system.species.numpy()
        out["_masses"] = st.system.masses.numpy()
        return out


def _assert_bitwise(a, b, skip=()):
    assert set(a) == set(b)
    for k in a:
        if k in skip:
            continue
        assert a[k].dtype == b[k].dtype, k
        assert a[k].tobytes() == b[k].tobytes(), f"{k} differs"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_hdf5_zarr_ase_round_trips_are_exact(tmp_path, make_system, make_frames, dtype):
    npd = np.float32 if dtype == torch.float32 else np.float64
    system = make_system(dtype=dtype, labels=False, order=False)
    h5 = tmp_path / "a.h5"
    _write(h5, system, make_frames(system.n_atoms, 4, npd))
    ref = _arrays(h5)
    # HDF5 -> zarr -> HDF5: values copied as stored
    convert_store(h5, tmp_path / "b.zarr")
    _assert_bitwise(ref, _arrays(tmp_path / "b.zarr"))
    convert_store(tmp_path / "b.zarr", tmp_path / "c.h5", compression="gzip")
    _assert_bitwise(ref, _arrays(tmp_path / "c.h5"))
    # zarr -> ASE .traj -> HDF5
    images = store_to_ase(tmp_path / "b.zarr", tmp_path / "d.traj")
    assert len(images) == 4 and images[2].info["step"] == ref["step"][2]
    assert images[1].get_potential_energy() == ref["potential_energy"][1]
    store_from_ase(tmp_path / "d.traj", tmp_path / "e.h5", dtype=npd, observables=("temperature",))
    back = _arrays(tmp_path / "e.h5")
    # ASE keeps velocities as momenta in its own time unit: exact for float32, a few ulp in float64
    _assert_bitwise(ref, back, skip=("velocity",) if npd == np.float64 else ())
    np.testing.assert_allclose(back["velocity"], ref["velocity"], rtol=4 * np.finfo(npd).eps, atol=0)
    # and zarr again from ASE Atoms objects in memory
    store_from_ase(images, tmp_path / "f.zarr", dtype=npd, observables=("temperature",))
    _assert_bitwise(back, _arrays(tmp_path / "f.zarr"))


def test_extxyz_keeps_eight_decimals(tmp_path, make_system, make_frames):
    system = make_system(labels=False, order=False)
    h5 = tmp_path / "a.h5"
    frames = make_frames(system.n_atoms, 2)
    _write(h5, system, frames)
    store_to_ase(h5, tmp_path / "a.extxyz")
    store_from_ase(tmp_path / "a.extxyz", tmp_path / "b.h5")
    with open_store(tmp_path / "b.h5") as st:
        assert len(st) == 2
        np.testing.assert_allclose(st.read(1, "positions"), frames[1]["positions"], atol=5.1e-9, rtol=0)
        np.testing.assert_allclose(st.read(1, "forces"), frames[1]["forces"], atol=5.1e-9, rtol=0)


@pytest.mark.filterwarnings("ignore:DCDReader currently makes independent timesteps:DeprecationWarning")
@pytest.mark.parametrize("fmt", ["dcd", "xtc"])
def test_export_for_viewers(tmp_path, make_system, make_frames, fmt):
    mda = pytest.importorskip("MDAnalysis")
    system = make_system(dtype=torch.float32)
    frames = make_frames(system.n_atoms, 3, np.float32)
    h5 = tmp_path / "a.h5"
    _write(h5, system, frames)
    out = tmp_path / f"a.{fmt}"
    assert export_trajectory(h5, out) == 3
    u = mda.Universe.empty(system.n_atoms)
    u.load_new(str(out))
    assert u.trajectory.n_frames == 3
    atol = 1e-3 if fmt == "xtc" else 1e-5  # xtc stores positions with 0.001 nm precision
    for ts, d in zip(u.trajectory, frames):
        np.testing.assert_allclose(ts.positions, d["positions"], atol=10 * atol)
        np.testing.assert_allclose(ts.triclinic_dimensions, d["cell"], atol=10 * atol)
    u.trajectory.close()
    assert export_trajectory(h5, tmp_path / f"b.{fmt}", atoms=slice(2, 5), stride=2) == 2
