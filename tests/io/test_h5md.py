"""HDF5 backend: the H5MD 1.1 layout, MDAnalysis reading our files, live SWMR reading."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest
import torch

from hyenamd.io import open_store
from hyenamd.io.convert import export_topology
from hyenamd.units import EV_TO_KJ_PER_MOL

mda = pytest.importorskip("MDAnalysis")


def _write(path, system, frames, **kw):
    with open_store(path, "w", system=system, **kw) as st:
        for d in frames:
            st.append(**d)


def test_h5md_layout(tmp_path, make_system, make_frames):
    system = make_system()
    p = tmp_path / "x.h5"
    _write(p, system, make_frames(system.n_atoms, 3))
    with h5py.File(p, "r") as f:
        assert list(f["h5md"].attrs["version"]) == [1, 1]
        assert f["h5md/author"].attrs["name"] and f["h5md/creator"].attrs["name"] == "hyenamd"
        assert list(f["particles"]) == ["all"]
        g = f["particles/all"]
        assert g["position/value"].shape == (3, 7, 3) and g["position/value"].attrs["unit"] == "Angstrom"
        assert g["velocity/value"].attrs["unit"] == "Angstrom fs-1"
        assert g["force/value"].attrs["unit"] == "kJ mol-1 Angstrom-1"  # a unit MDAnalysis knows
        assert g["position/time"].attrs["unit"] == "fs"
        # step/time are shared through hard links (H5MD allows it)
        for elem in ("velocity", "force", "box/edges"):
            assert g[f"{elem}/step"].id == g["position/step"].id
        assert f["observables/potential_energy/step"].id == g["position/step"].id
        assert f["observables/potential_energy/value"].attrs["unit"] == "eV"
        assert f["observables/temperature/value"].attrs["unit"] == "K"
        assert g["box"].attrs["dimension"] == 3
        assert [b.decode() if isinstance(b, bytes) else b for b in g["box"].attrs["boundary"]] == [
            "periodic"
        ] * 3
        assert g["box/edges/value"].shape == (3, 3, 3)
        assert g["species"].shape == (7,) and g["mass"].attrs["unit"] == "amu"
        assert f.attrs["hyenamd_schema"] == "hyenamd.frames"
        assert g["position/value"].chunks == (g["position/value"].chunks[0], 7, 3)


@pytest.mark.parametrize("suffix", [".h5md", ".h5"])
def test_mdanalysis_reads_our_h5md(tmp_path, make_system, make_frames, suffix):
    system = make_system(dtype=torch.float32)
    frames = make_frames(system.n_atoms, 4, np.float32)
    p = tmp_path / f"traj{suffix}"
    _write(p, system, frames)
    top = export_topology(p, tmp_path / "top.pdb")
    kw = {"format": "H5MD"} if suffix == ".h5" else {}  # MDAnalysis knows the .h5md suffix only
    u = mda.Universe(str(top), str(p), **kw)
    assert u.trajectory.n_frames == 4 and u.atoms.n_atoms == 7
    for ts, d in zip(u.trajectory, frames):
        np.testing.assert_allclose(ts.positions, d["positions"], rtol=0, atol=1e-6)  # Å
        np.testing.assert_allclose(ts.triclinic_dimensions, d["cell"], atol=2e-5)
        np.testing.assert_allclose(ts.velocities, d["velocities"] * 1000.0, rtol=1e-6)  # Å/fs -> Å/ps
        np.testing.assert_allclose(ts.forces, d["forces"] * EV_TO_KJ_PER_MOL, rtol=1e-5)  # -> kJ/(mol Å)
        assert ts.time == pytest.approx(d["time"] / 1000.0)  # fs -> ps
        assert ts.data["step"] == d["step"]
        assert ts.data["potential_energy"] == pytest.approx(d["potential_energy"])
    u.trajectory.close()


def test_mdanalysis_reads_files_without_forces_unregistered(tmp_path, make_system, make_frames):
    system = make_system()
    frames = [{k: v for k, v in d.items() if k != "forces"} for d in make_frames(7, 2)]
    p = tmp_path / "plain.h5md"
    _write(p, system, frames)
    u = mda.Universe.empty(7)
    u.load_new(str(p), format="H5MD")
    assert u.trajectory.n_frames == 2
    np.testing.assert_allclose(u.trajectory[1].positions, frames[1]["positions"], atol=1e-5)
    u.trajectory.close()


WRITER = textwrap.dedent(
    """
    import sys, time, numpy as np, torch
    from hyenamd import System
    from hyenamd.io import open_store
    n = 50
    s = System(positions=torch.zeros(n, 3), species=torch.ones(n, dtype=torch.int64))
    with open_store(sys.argv[1], "w", system=s, fields=("position",)) as st:
        for i in range(int(sys.argv[2])):
            st.append(np.full((n, 3), i, dtype=np.float32), step=i, time=float(i))
            print(i, flush=True)
            sys.stdin.readline()  # the test tells us when to write the next frame
    """
)


def test_live_swmr_reading(tmp_path):
    p = tmp_path / "live.h5"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(p), "3"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "0"
        with open_store(p) as st:
            assert len(st) == 1 and st.status == "writing"
            assert st.read(0, "position")[0, 0] == 0
            proc.stdin.write("\n")
            proc.stdin.flush()
            assert proc.stdout.readline().strip() == "1"
            deadline = time.time() + 10
            while st.refresh() < 2 and time.time() < deadline:
                time.sleep(0.05)
            assert len(st) == 2 and st.read(1, "position")[0, 0] == 1
        proc.stdin.write("\n\n")
        proc.stdin.flush()
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
    with open_store(p) as st:
        assert len(st) == 3 and st.status == "complete"


def test_compressed_hdf5_keeps_one_frame_per_chunk(tmp_path, make_system):
    from hyenamd.io import StoreError

    system = make_system()
    with open_store(tmp_path / "c.h5", "w", system=system, compression="lzf", fields=("position",)) as st:
        assert st.layout.chunk_frames == 1
    with h5py.File(tmp_path / "c.h5", "r") as f:
        ds = f["particles/all/position/value"]
        assert ds.chunks == (1, 7, 3) and ds.compression == "lzf" and ds.shuffle
    with pytest.raises(StoreError, match="one frame per chunk"):
        open_store(tmp_path / "d.h5", "w", system=system, compression="gzip", chunk_frames=8)
