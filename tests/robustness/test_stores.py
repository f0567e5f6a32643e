"""Stores under bad input and damage: nothing lost (hash of every byte before/after a refused
write), nothing read silently wrong (truncated, deleted chunks), nothing hangs."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from hyenamd.io import FrameError, SchemaError, StoreError, create_zarr_store, open_store

from .conftest import tiny_system, tree_hash

SUFFIXES = [".h5", ".zarr"]


def _store(tmp_path, suffix, n_frames=4, periodic=True, **opts):
    path = tmp_path / f"traj{suffix}"
    system = tiny_system(periodic=periodic)
    with open_store(path, "w", system=system, chunk_frames=2, **opts) as st:
        for k in range(n_frames):
            st.append(system.positions.numpy() + 0.01 * k, step=k, time=float(k))
    return path, system


# ---------------------------------------------------------------- refused writes change nothing
APPEND_CASES = {
    # name: (kwargs of append, error words)
    "zero cell on a periodic store": (dict(cell=np.zeros((3, 3))), "cell vector 0 is zero"),
    "singular cell": (dict(cell=[[1, 0, 0], [2, 0, 0], [0, 0, 1.0]]), "singular"),
    "left-handed cell": (dict(cell=-np.eye(3) * 10), "left-handed"),
    "NaN cell": (dict(cell=np.full((3, 3), np.nan)), "cell"),
    "NaN positions": (dict(positions=np.full((4, 3), np.nan)), "NaN"),
    "wrong atom count": (dict(positions=np.zeros((5, 3))), "positions"),
    "step not increasing": (dict(step=1), "does not increase"),
    "atoms past the end": (dict(positions=np.zeros((4, 3)), atoms=slice(2, 6)), "out of range"),
    "atoms strided": (dict(positions=np.zeros((2, 3)), atoms=slice(0, 4, 2)), "step 1"),
    "unknown observable": (dict(energy=1.0), "unknown observable"),
    "velocities the store lacks": (dict(velocities=np.zeros((4, 3))), "no velocity"),
}


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("name", list(APPEND_CASES))
def test_refused_append_leaves_every_byte(tmp_path, suffix, name):
    path, system = _store(tmp_path, suffix)
    kwargs, words = APPEND_CASES[name]
    call = dict(positions=system.positions.numpy(), step=10, time=10.0) | kwargs
    with open_store(path, "a") as st:
        before = tree_hash(path)
        with pytest.raises(FrameError) as e:
            st.append(call.pop("positions"), **call)
        assert words in str(e.value)
        assert tree_hash(path) == before
    with open_store(path) as st:
        assert len(st) == 4 and [int(s) for s in st.steps] == [0, 1, 2, 3]


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_existing_store_is_never_replaced_without_overwrite(tmp_path, suffix):
    path, system = _store(tmp_path, suffix)
    before = tree_hash(path)
    with pytest.raises(StoreError, match="already exists"):
        open_store(path, "w", system=system)
    assert tree_hash(path) == before


def test_overlapping_range_writers_are_refused(tmp_path):
    """Two r+ writers with overlapping frame ranges: the second is refused, the first's frames stay."""
    path = tmp_path / "pre.zarr"
    system = tiny_system()
    create_zarr_store(path, system, 8, chunk_frames=2)
    w1 = open_store(path, "r+", frames=range(0, 4))
    w1.append(system.positions.numpy(), step=0, time=0.0)
    w1.flush()
    before = tree_hash(path)
    for frames in (range(2, 6), range(0, 2), range(0, 8)):
        with pytest.raises(StoreError, match="overlap"):
            open_store(path, "r+", frames=frames)
    assert tree_hash(path) == before
    w2 = open_store(path, "r+", frames=range(4, 8))  # disjoint: allowed
    w2.close()
    w1.close()
    w3 = open_store(path, "r+", frames=range(2, 6))  # after w1 closed: allowed, resumes after commits
    w3.close()


def test_range_claim_of_a_dead_writer_is_stale(tmp_path):
    """A claim file nobody holds (its writer died) does not block a new writer."""
    path = tmp_path / "pre.zarr"
    create_zarr_store(path, tiny_system(), 4, chunk_frames=2)
    claims = tmp_path / "pre.zarr.claims"
    claims.mkdir(exist_ok=True)
    (claims / "0-4").write_text("")
    open_store(path, "r+", frames=range(0, 2)).close()


# ---------------------------------------------------------------- damage is detected on read
@pytest.mark.parametrize("keep", [1000, 0.5, -100])
def test_truncated_h5_fails_fast(tmp_path, keep):
    path, _ = _store(tmp_path, ".h5")
    data = path.read_bytes()
    n = keep if keep >= 1 else (int(len(data) * keep) if keep > 0 else len(data) + keep)
    bad = tmp_path / "cut.h5"
    bad.write_bytes(data[:n])
    with pytest.raises(StoreError, match="truncated"):
        open_store(bad)


@pytest.mark.parametrize("which", ["position", "box", "time"])
def test_deleted_zarr_chunk_is_detected(tmp_path, which):
    path, _ = _store(tmp_path, ".zarr", fields=None)
    arr = {"position": "particles/all/position/value", "box": "particles/all/box/edges/value",
           "time": "particles/all/position/time"}[which]  # fmt: skip
    chunk = sorted((path / arr / "c").rglob("*"))
    files = [c for c in chunk if c.is_file()]
    assert files
    files[-1].unlink()  # the chunk of frames 2..3
    with open_store(path) as st:
        assert len(st) == 4
        st[0]  # frames of intact chunks still read
        with pytest.raises(StoreError, match="missing"):
            st.read(3, which if which != "box" else "box")


def test_zero_valued_chunks_are_stored(tmp_path):
    """All-zero frames are real data: their chunks exist, so they read back (not 'missing')."""
    path = tmp_path / "z.zarr"
    system = tiny_system()
    with open_store(path, "w", system=system) as st:
        st.append(np.zeros((4, 3)), velocities=np.zeros((4, 3)), step=0, time=0.0)
    with open_store(path) as st:
        assert np.all(st.read(0, "velocity") == 0)


def test_corrupt_zarr_chunk_is_a_store_error(tmp_path):
    path, _ = _store(tmp_path, ".zarr", compression="zstd")
    chunk = next(p for p in sorted((path / "particles/all/position/value/c").rglob("*")) if p.is_file())
    chunk.write_bytes(b"not zstd data at all")
    with open_store(path) as st, pytest.raises(StoreError, match="position"):
        st.read(0, "position")


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_schema_without_version_is_refused(tmp_path, suffix):
    path, _ = _store(tmp_path, suffix)
    if suffix == ".h5":
        import h5py

        with h5py.File(path, "r+") as f:
            del f.attrs["hyenamd_schema_version"]
    else:
        meta = json.loads((path / "zarr.json").read_text())
        del meta["attributes"]["hyenamd_schema_version"]
        (path / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(SchemaError, match="hyenamd_schema_version"):
        open_store(path)


def test_corrupt_zarr_metadata_is_a_schema_error(tmp_path):
    path, _ = _store(tmp_path, ".zarr")
    (path / "zarr.json").write_text("{ not json")
    with pytest.raises(SchemaError, match="not a zarr store"):
        open_store(path)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_malformed_layout_attribute(tmp_path, suffix):
    path, _ = _store(tmp_path, suffix)
    if suffix == ".h5":
        import h5py

        with h5py.File(path, "r+") as f:
            f.attrs["hyenamd_layout"] = "{broken"
    else:
        meta = json.loads((path / "zarr.json").read_text())
        meta["attributes"]["hyenamd_layout"] = "{broken"
        (path / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(SchemaError, match="hyenamd_layout"):
        open_store(path)


# ---------------------------------------------------------------- reads: ranges and strides
READ_CASES = {
    "atoms past the end": (lambda st: st.read(0, "position", atoms=slice(0, 10)), FrameError, "out of range"),
    "atoms start past the end": (
        lambda st: st.read(0, "position", atoms=slice(5, 6)),
        FrameError,
        "out of range",
    ),
    "atoms strided": (lambda st: st.read(0, "position", atoms=slice(0, 4, 2)), FrameError, "step 1"),
    "atoms not a slice": (lambda st: st.read(0, "position", atoms=[0, 1]), FrameError, "slice"),
    "frames negative stride": (lambda st: list(st.frames(stride=-1)), StoreError, "stride"),
    "frames zero stride": (lambda st: list(st.frames(stride=0)), StoreError, "stride"),
    "frames float stride": (lambda st: list(st.frames(stride=1.5)), StoreError, "stride"),
    "frames atoms past the end": (lambda st: list(st.frames(atoms=slice(2, 40))), FrameError, "out of range"),
}


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("name", list(READ_CASES))
def test_bad_read_requests(tmp_path, suffix, name):
    path, _ = _store(tmp_path, suffix)
    fn, err, words = READ_CASES[name]
    with open_store(path) as st, pytest.raises(err, match=words):
        fn(st)


# ---------------------------------------------------------------- paths
@pytest.mark.parametrize("suffix", SUFFIXES)
def test_unwritable_directory_names_the_directory(tmp_path, suffix):
    if os.geteuid() == 0:
        pytest.skip("root ignores directory permissions")
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o500)
    try:
        with pytest.raises(StoreError, match="not writable"):
            open_store(d / f"t{suffix}", "w", system=tiny_system())
    finally:
        d.chmod(0o700)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_missing_parent_directory_is_created(tmp_path, suffix):
    with open_store(tmp_path / "no" / f"t{suffix}", "w", system=tiny_system()) as st:
        st.append(tiny_system().positions.numpy(), step=0, time=0.0)
    assert len(open_store(tmp_path / "no" / f"t{suffix}")) == 1


def test_parent_that_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(StoreError, match="cannot create the directory"):
        open_store(tmp_path / "f" / "t.zarr", "w", system=tiny_system())
    assert (tmp_path / "f").read_text() == "x"


def test_directory_given_for_an_h5_file(tmp_path):
    d = tmp_path / "dir.h5"
    d.mkdir()
    with pytest.raises(SchemaError, match="is a directory"):
        open_store(d)


def test_reading_a_missing_store(tmp_path):
    with pytest.raises(StoreError, match="no store"):
        open_store(tmp_path / "none.zarr")


def test_copy_of_a_store_stays_readable(tmp_path):
    """A plain copy (no damage) reads every frame: the checks only refuse real damage."""
    for suffix in SUFFIXES:
        path, _ = _store(tmp_path, suffix)
        dst = tmp_path / f"copy{suffix}"
        (shutil.copytree if path.is_dir() else shutil.copy)(path, dst)
        with open_store(dst) as st:
            assert len(st) == 4 and st.read(slice(None), "position").shape == (4, 4, 3)


@pytest.mark.parametrize(
    "dataset",
    [
        "particles/all/species",
        "particles/all/box",
        "particles/all/position/step",
        "particles/all/position/value",
    ],
)
def test_h5_with_a_deleted_dataset_is_a_schema_error(tmp_path, dataset):
    import h5py

    path, _ = _store(tmp_path, ".h5")
    with h5py.File(path, "r+") as f:
        del f[dataset]
    with pytest.raises(SchemaError):
        open_store(path)


def test_inspect_of_a_damaged_store_is_one_line(tmp_path, capsys):
    import h5py

    from hyenamd.cli import main

    path, _ = _store(tmp_path, ".h5")
    with h5py.File(path, "r+") as f:
        del f["particles/all/box"]
    assert main(["inspect", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err
