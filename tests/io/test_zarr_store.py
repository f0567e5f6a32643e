"""zarr backend: layout/attributes, and the multi-writer protocol (4 processes vs a serial write)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import zarr

from hyenamd import System
from hyenamd.io import (
    FrameError,
    MissingFrameError,
    StoreError,
    complete_store,
    create_zarr_store,
    open_store,
)

N, F, CF = 1000, 32, 4
OPTS = {
    "fields": ("position", "force"),
    "observables": ("potential_energy",),
    "chunk_frames": CF,
    "chunk_atoms": 256,
    "compression": "zstd",
}


def _frame(k: int):
    rng = np.random.default_rng(1000 + k)
    return {
        "positions": rng.random((N, 3)).astype(np.float32) * 20,
        "forces": rng.normal(size=(N, 3)).astype(np.float32),
        "step": 100 * k,
        "time": 0.5 * 100 * k,
        "potential_energy": float(k) - 0.125,
    }


def _template():
    return System(
        positions=torch.zeros(N, 3), species=torch.full((N,), 8), cell=torch.eye(3) * 20.0, pbc=True
    )


# One interpreter imports hyenamd, then forks one writer process per frame range; the
# writers run at the same time and the parent exits non-zero if any of them failed.
FILLERS = textwrap.dedent(
    """
    import os, sys, numpy as np
    from hyenamd.io import open_store
    path, N = sys.argv[1], int(sys.argv[2])
    bounds = [tuple(map(int, b.split(":"))) for b in sys.argv[3:]]
    pids = []
    for a, b in bounds:
        pid = os.fork()
        if pid:
            pids.append(pid)
            continue
        code = 1
        try:
            with open_store(path, "r+", frames=range(a, b)) as st:
                for k in range(a, b):
                    rng = np.random.default_rng(1000 + k)
                    st.append(rng.random((N, 3)).astype(np.float32) * 20,
                              forces=rng.normal(size=(N, 3)).astype(np.float32),
                              step=100 * k, time=0.5 * 100 * k, potential_energy=float(k) - 0.125)
            code = 0
        finally:
            os._exit(code)
    sys.exit(max(os.waitpid(pid, 0)[1] for pid in pids) != 0)
    """
)


def _chunk_files(path):
    root = path / "particles/all/position/value/c"
    return {p.relative_to(path): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_four_processes_fill_disjoint_ranges_bitwise_equal_to_serial(tmp_path):
    par, ser = tmp_path / "par.zarr", tmp_path / "ser.zarr"
    create_zarr_store(par, _template(), F, **OPTS)
    bounds = [(0, 8), (8, 16), (16, 24), (24, 32)]
    args = [f"{a}:{b}" for a, b in bounds]
    out = subprocess.run(
        [sys.executable, "-c", FILLERS, str(par), str(N), *args], capture_output=True, timeout=300
    )
    assert out.returncode == 0, out.stderr.decode()
    with open_store(par) as st:
        assert st.status == "writing" and len(st) == F and st.committed.all()
    assert complete_store(par) == F
    with open_store(ser, "w", system=_template(), n_frames=F, **OPTS) as st:
        for k in range(F):
            st.append(**_frame(k))
    a, b = zarr.open_group(par, mode="r"), zarr.open_group(ser, mode="r")
    for name in ("position", "force"):
        x, y = a[f"particles/all/{name}/value"][...], b[f"particles/all/{name}/value"][...]
        assert x.tobytes() == y.tobytes()
    for name in (
        "particles/all/position/step",
        "particles/all/position/time",
        "observables/potential_energy/value",
    ):
        assert a[name][...].tobytes() == b[name][...].tobytes()
    assert _chunk_files(par) == _chunk_files(ser)  # same codecs, same bytes on disk
    with open_store(par) as pst, open_store(ser) as sst:
        assert pst.status == sst.status == "complete"
        np.testing.assert_array_equal(pst.read(31, "positions"), _frame(31)["positions"])


def test_range_writer_rules_and_resume(tmp_path):
    p = tmp_path / "pre.zarr"
    create_zarr_store(p, _template(), F, **OPTS)
    for bad in (range(2, 8), range(0, 6), range(0, 40), range(8, 8)):
        with pytest.raises(StoreError):
            open_store(p, "r+", frames=bad)
    with pytest.raises(StoreError, match="pre-allocated"):
        open_store(p, "a")
    with open_store(p, "r+", frames=range(8, 12)) as st:
        for k in (8, 9):
            st.append(**_frame(k))
    with open_store(p) as st:  # holes before the last committed frame are reported, not returned
        assert len(st) == 10 and st.committed.sum() == 2
        with pytest.raises(MissingFrameError):
            st[0]
        assert np.isnan(st.times[0]) and st.times[9] == _frame(9)["time"]
    with pytest.raises(MissingFrameError, match="30 frames are not committed"):
        complete_store(p)
    with open_store(p, "r+", frames=range(8, 12)) as st:  # a restarted writer resumes its range
        with pytest.raises(FrameError, match="does not increase"):
            st.append(**_frame(9))
        st.append(**_frame(10))
        st.append(**_frame(11))
        with pytest.raises(FrameError, match="all written"):
            st.append(**_frame(12))
    with open_store(p, "r+", frames=range(4, 8)) as st:  # steps must stay below the next range's
        for k in (4, 5, 6):
            st.append(**_frame(k))
        with pytest.raises(FrameError, match="not below step 800"):
            st.append(**{**_frame(7), "step": 900})
        st.append(**_frame(7))
    with open_store(p) as st:
        assert len(st) == 12 and st.committed[4:].all()
    with open_store(p, "r+", frames=range(12, 16)) as st:  # ... and above the previous range's last
        with pytest.raises(FrameError, match="not above step 1100"):
            st.append(**{**_frame(12), "step": 1100})
        st.append(**{**_frame(12), "potential_energy": torch.tensor(3)})  # an int tensor is fine
    with open_store(p) as st:
        assert st.observable("potential_energy")[12] == 3.0


def test_zarr_layout_attributes(tmp_path):
    p = tmp_path / "x.zarr"
    with open_store(p, "w", system=_template(), **OPTS) as st:
        st.append(**_frame(0))
    g = zarr.open_group(p, mode="r")
    assert g.attrs["hyenamd_schema"] == "hyenamd.frames" and g.attrs["status"] == "complete"
    assert g["h5md"].attrs["version"] == [1, 1] and g["h5md/creator"].attrs["name"] == "hyenamd"
    v = g["particles/all/position/value"]
    assert v.metadata.dimension_names == ("frame", "atom", "xyz") and v.attrs["unit"] == "Angstrom"
    assert v.chunks == (CF, 256, 3) and v.shape == (1, N, 3)  # trimmed to the committed frames on close
    assert g["particles/all/force/value"].attrs["unit"] == "eV Angstrom-1"
    assert g["particles/all/box/edges/value"].metadata.dimension_names == ("frame", "vector", "xyz")
    assert g["particles/all/force"].attrs["step"] == "/particles/all/position/step"
    assert g["observables/potential_energy/value"].attrs["unit"] == "eV"
    assert list(g["particles/all/box"].attrs["boundary"]) == ["periodic"] * 3
    assert "BloscCodec" in repr(v.compressors)
