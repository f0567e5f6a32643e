"""One test base for both store formats (MDAnalysis ``BaseReaderTest`` style).

``StoreContract`` holds every behaviour the API promises; ``TestHDF5Store`` and
``TestZarrStore`` only name their suffix. Backend-specific checks live in test_h5md.py and
test_zarr_store.py.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from hyenamd.io import FrameError, MissingFrameError, SchemaError, StoreError, open_store


def _write(path, system, frames, **kw):
    with open_store(path, "w", system=system, **kw) as st:
        for d in frames:
            st.append(**d)
    return path


def _snapshot(path):
    with open_store(path) as st:
        return {
            "n": len(st),
            "steps": st.steps,
            "pos": st.read(slice(None), "positions") if len(st) else None,
            "status": st.status,
        }


class StoreContract:
    suffix = ""

    def path(self, tmp_path, name="traj"):
        return tmp_path / f"{name}{self.suffix}"

    # ------------------------------------------------------------------ round trips
    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
    def test_round_trip_exact(self, tmp_path, make_system, make_frames, dtype):
        system = make_system(dtype=dtype)
        npd = np.float32 if dtype == torch.float32 else np.float64
        frames = make_frames(system.n_atoms, 4, npd)
        p = _write(self.path(tmp_path), system, frames)
        with open_store(p) as st:
            assert len(st) == 4 and st.status == "complete"
            assert st.fields == ("position", "velocity", "force", "box")
            assert st.observable_names == ("potential_energy", "temperature")
            np.testing.assert_array_equal(st.steps, [d["step"] for d in frames])
            np.testing.assert_array_equal(st.times, [d["time"] for d in frames])
            np.testing.assert_array_equal(st.observable("temperature"), [d["temperature"] for d in frames])
            for i, d in enumerate(frames):
                s = st[i]
                assert s.dtype == dtype
                assert s.positions.numpy().tobytes() == d["positions"].tobytes()
                assert s.velocities.numpy().tobytes() == d["velocities"].tobytes()
                assert s.cell.numpy().tobytes() == d["cell"].tobytes()
                # HDF5 keeps forces in kJ/mol/Å (MDAnalysis' unit): back to eV/Å within one ulp
                np.testing.assert_allclose(st.read(i, "forces"), d["forces"], rtol=np.finfo(npd).eps, atol=0)
                assert s.info["step"] == d["step"] and s.info["potential_energy"] == d["potential_energy"]
                assert torch.equal(s.species, system.species) and torch.equal(s.masses, system.masses)
                assert torch.equal(s.order, system.order) and s.pbc.tolist() == system.pbc.tolist()
                assert s.labels.atom_names == system.labels.atom_names
                assert s.labels.residue_names == system.labels.residue_names
                assert torch.equal(s.labels.residue_index, system.labels.residue_index)
            tmpl = st.system
            assert torch.equal(tmpl.positions, system.positions) and torch.equal(tmpl.cell, system.cell)
            assert st.units["force"] == "eV Angstrom-1" and st.units["velocity"] == "Angstrom fs-1"
            assert st.units["time"] == "fs" and st.units["potential_energy"] == "eV"
            assert st.units["temperature"] == "K"

    def test_no_cell_and_torch_input(self, tmp_path, make_system):
        system = make_system(n=5, cell=False, labels=False, order=False)
        p = self.path(tmp_path)
        with open_store(p, "w", system=system) as st:
            st.append(system.positions, step=0, time=0.0)
            st.append(system.positions + 1, step=1, time=1.0)
        with open_store(p) as st:
            assert st.fields == ("position",) and st[1].cell is None and st[1].velocities is None
            assert torch.equal(st[1].positions, system.positions + 1)
            assert st[0].labels is None and st[0].order is None

    def test_indexing_slices_and_reads(self, tmp_path, make_system, make_frames):
        system = make_system()
        frames = make_frames(system.n_atoms, 5)
        p = _write(self.path(tmp_path), system, frames)
        with open_store(p) as st:
            assert [s.info["step"] for s in st[1:5:2]] == [frames[1]["step"], frames[3]["step"]]
            assert st[-1].info["frame"] == 4
            with pytest.raises(IndexError):
                st[5]
            with pytest.raises(TypeError):
                st["0"]
            np.testing.assert_array_equal(
                st.read(slice(1, 3), "position"), [f["positions"] for f in frames[1:3]]
            )
            np.testing.assert_array_equal(st.read(slice(0, 5, 2), "cell"), [f["cell"] for f in frames[::2]])
            np.testing.assert_allclose(
                st.read(2, "forces", atoms=slice(2, 5)), frames[2]["forces"][2:5], rtol=1e-15, atol=0
            )
            assert st.read(3, "step") == frames[3]["step"]
            with pytest.raises(KeyError, match="no 'charges'"):
                st.read(0, "charges")

    # ------------------------------------------------------------------ iterator
    @pytest.mark.parametrize("prefetch", [0, 2])
    def test_frames_iterator(self, tmp_path, make_system, make_frames, prefetch):
        system = make_system(n=9)
        frames = make_frames(9, 6)
        p = _write(self.path(tmp_path), system, frames)
        before = threading.active_count()
        with open_store(p) as st:
            got = list(
                st.frames(
                    1, None, 2, atoms=slice(3, 7), fields=("positions", "temperature"), prefetch=prefetch
                )
            )
            assert [f.index for f in got] == [1, 3, 5]
            for f in got:
                np.testing.assert_array_equal(f["positions"], frames[f.index]["positions"][3:7])
                assert f["temperature"] == frames[f.index]["temperature"]
                assert set(f.arrays) == {"position"}
            it = st.frames(prefetch=prefetch)
            first = next(it)
            assert first.step == frames[0]["step"] and first["forces"].shape == (9, 3)
            it.close()  # stopping early ends the prefetch thread
            with pytest.raises(KeyError):
                st.frames(fields=("charges",))
        assert threading.active_count() == before

    def test_prefetch_memory_is_bounded(self, tmp_path, make_system, make_frames):
        system = make_system(n=9)
        p = _write(self.path(tmp_path), system, make_frames(9, 12))
        with open_store(p) as st:
            loaded = []
            real = st._load_frame

            def counting(k, atoms, fields):  # instrumentation around the real reader
                loaded.append(k)
                return real(k, atoms, fields)

            st._load_frame = counting
            consumed = 0
            for fr in st.frames(prefetch=2):
                time.sleep(0.01)  # a slow consumer: the reader thread must wait for it
                consumed += 1
                assert fr.index == consumed - 1
                assert len(loaded) - consumed <= 2 + 1  # queue (2) + the frame being put
            assert consumed == 12 and loaded == list(range(12))

    # ------------------------------------------------------------------ atom ranges
    def test_append_atom_ranges(self, tmp_path, make_system, make_frames):
        system = make_system(n=10)
        (d,) = make_frames(10, 1)
        p = self.path(tmp_path)
        with open_store(p, "w", system=system, fields=("velocity",), observables=("potential_energy",)) as st:
            common = {"step": 5, "time": 2.5}
            st.append(d["positions"][6:], velocities=d["velocities"][6:], atoms=slice(6, 10), **common)
            with pytest.raises(FrameError, match="overlap"):
                st.append(d["positions"][5:7], velocities=d["velocities"][5:7], atoms=slice(5, 7), **common)
            with pytest.raises(FrameError, match="incomplete"):
                st.append(d["positions"], velocities=d["velocities"], step=6, time=3.0, potential_energy=1.0)
            st.append(
                d["positions"][:2],
                velocities=d["velocities"][:2],
                atoms=slice(0, 2),
                cell=d["cell"],
                **common,
            )
            assert len(st) == 0
            with pytest.raises(FrameError, match=r"observables \['potential_energy'\] were not given"):
                st.append(d["positions"][2:6], velocities=d["velocities"][2:6], atoms=slice(2, 6), **common)
            st.append(d["positions"][2:6], velocities=d["velocities"][2:6], atoms=slice(2, 6), potential_energy=-1.5,
                      **common)  # fmt: skip
            assert len(st) == 1
            # an unfinished frame at close is dropped, never committed
            st.append(d["positions"][:3], velocities=d["velocities"][:3], atoms=slice(0, 3), step=9, time=4.5)
        with open_store(p) as st:
            assert len(st) == 1
            np.testing.assert_array_equal(st[0].positions.numpy(), d["positions"])
            np.testing.assert_array_equal(st[0].velocities.numpy(), d["velocities"])
            np.testing.assert_array_equal(st.read(0, "cell"), d["cell"])
            assert st.observable("potential_energy")[0] == -1.5

    # ------------------------------------------------------------------ modes
    def test_w_refuses_existing_and_a_resumes(self, tmp_path, make_system, make_frames):
        system = make_system()
        frames = make_frames(system.n_atoms, 6)
        p = _write(self.path(tmp_path), system, frames[:3])
        before = _snapshot(p)
        with pytest.raises(StoreError, match="already exists"):
            open_store(p, "w", system=system)
        assert _snapshot(p)["steps"].tolist() == before["steps"].tolist()
        with open_store(p, "a") as st:
            assert st.status == "writing" and len(st) == 3
            with pytest.raises(FrameError, match="does not increase"):
                st.append(**frames[2])
            for d in frames[3:]:
                st.append(**d)
        snap = _snapshot(p)
        assert snap["n"] == 6 and snap["status"] == "complete"
        np.testing.assert_array_equal(snap["pos"], [f["positions"] for f in frames])
        with pytest.raises(StoreError, match="system= has 5 atoms"):
            open_store(p, "a", system=make_system(n=5))
        with pytest.raises(StoreError, match="single writer|system= is only used"):
            open_store(p, "r+", frames=range(0, 1), system=system)
        _write(p, system, frames[:1], overwrite=True)
        assert _snapshot(p)["n"] == 1

    def test_a_creates_missing_and_w_needs_system(self, tmp_path, make_system, make_frames):
        p = self.path(tmp_path)
        with pytest.raises(StoreError, match="needs system="):
            open_store(p, "w")
        with pytest.raises(StoreError, match="no store"):
            open_store(p)
        system = make_system()
        with open_store(p, "a", system=system) as st:
            st.append(**make_frames(system.n_atoms, 1)[0])
        assert _snapshot(p)["n"] == 1

    def test_second_writer_is_refused(self, tmp_path, make_system, make_frames):
        system = make_system()
        p = self.path(tmp_path)
        with open_store(p, "w", system=system) as st:
            st.append(**make_frames(system.n_atoms, 1)[0])
            with pytest.raises(StoreError, match="another process"):
                open_store(p, "a")
        assert not st.lock_path.exists()

    def test_flush_every_commits_in_batches(self, tmp_path, make_system, make_frames):
        system = make_system()
        frames = make_frames(system.n_atoms, 5)
        p = self.path(tmp_path)
        with open_store(p, "w", system=system, flush_every=3) as st:
            for d in frames[:4]:
                st.append(**d)
            assert len(st) == 3  # the 4th frame waits for the next commit
            st.flush()
            assert len(st) == 4
        assert _snapshot(p)["n"] == 4

    # ------------------------------------------------------------------ safety
    def test_bad_frames_raise_and_leave_data_unchanged(self, tmp_path, make_system, make_frames):
        system = make_system(dtype=torch.float32)
        n = system.n_atoms
        frames = make_frames(n, 3, np.float32)
        p = _write(self.path(tmp_path), system, frames[:2])
        before = _snapshot(p)
        good = frames[2]

        def bad(**change):
            d = {**good, **change}
            return {k: v for k, v in d.items() if v is not None}

        cases = [
            (bad(positions=good["positions"][:-1]), "has 6 atoms but the store .* expects 7"),
            (bad(positions=good["positions"][:, :2]), "shape"),
            (bad(positions=good["positions"].astype(np.int32)), "must be a float32/float64"),
            (bad(velocities=good["velocities"].astype(np.complex64)), "must be a float32/float64"),
            (bad(velocities=np.full((n, 3), 1e39)), "velocities overflows float32"),
            (bad(forces=np.where(np.eye(n, 3) > 0, np.nan, good["forces"]).astype(np.float32)), "NaN"),
            (bad(step=frames[1]["step"]), "does not increase"),
            (bad(step=frames[0]["step"]), "does not increase"),
            (bad(step=1.5), "step must be an integer"),
            (bad(time=float("nan")), "time must be finite"),
            (bad(forces=None), "pass forces="),
            (bad(charges=1.0), "unknown observable 'charges'"),
            (bad(temperature=None), r"observables \['temperature'\] were not given"),
            (bad(cell=np.eye(2, dtype=np.float32)), "cell has shape"),
            (bad(atoms=[0, 1]), "atoms must be a slice"),
            (bad(temperature=float("inf")), "'temperature' is NaN/inf"),
            (bad(temperature=np.ones(2)), r"'temperature' has shape \(2,\)"),
            (bad(temperature="hot"), "'temperature' must be a number"),
        ]
        with open_store(p, "a") as st:
            for kwargs, msg in cases:
                with pytest.raises(FrameError, match=msg):
                    st.append(**kwargs)
                assert len(st) == 2
        after = _snapshot(p)
        assert after["n"] == 2 and after["pos"].tobytes() == before["pos"].tobytes()
        np.testing.assert_array_equal(after["steps"], before["steps"])

    def test_float64_input_is_stored_at_the_store_precision(self, tmp_path, make_system, make_frames):
        system = make_system(dtype=torch.float32)
        d = make_frames(system.n_atoms, 1, np.float64)[0]
        p = self.path(tmp_path)
        with open_store(p, "w", system=system) as st:
            st.append(**d)
        with open_store(p) as st:
            assert st.read(0, "positions").tobytes() == d["positions"].astype(np.float32).tobytes()
            assert st.read(0, "cell").dtype == np.float32

    def test_nan_allowed_when_asked(self, tmp_path, make_system, make_frames):
        system = make_system()
        d = make_frames(system.n_atoms, 1)[0]
        d["forces"][0, 0] = np.nan
        p = self.path(tmp_path)
        with open_store(p, "w", system=system) as st:
            st.append(**d, allow_nan=True)
        with open_store(p) as st:
            assert np.isnan(st.read(0, "forces")[0, 0])

    def test_layout_fixed_by_first_frame(self, tmp_path, make_system, make_frames):
        system = make_system(cell=False, labels=False, order=False)
        d = make_frames(system.n_atoms, 2, cell=False)
        p = self.path(tmp_path)
        with open_store(p, "w", system=system) as st:
            st.append(d[0]["positions"], step=0, time=0.0, potential_energy=1.0)
            with pytest.raises(FrameError, match="no velocity array"):
                st.append(
                    d[1]["positions"], step=1, time=1.0, velocities=d[1]["velocities"], potential_energy=1.0
                )
            with pytest.raises(FrameError, match="no box"):
                st.append(d[1]["positions"], step=1, time=1.0, cell=np.eye(3), potential_energy=1.0)
        assert _snapshot(p)["n"] == 1

    def test_read_only_and_closed(self, tmp_path, make_system, make_frames):
        system = make_system()
        p = _write(self.path(tmp_path), system, make_frames(system.n_atoms, 1))
        st = open_store(p)
        with pytest.raises(StoreError, match="read-only"):
            st.append(**make_frames(system.n_atoms, 2)[1])
        st.close()
        st.close()  # idempotent

    def test_foreign_files(self, tmp_path):
        p = self.path(tmp_path, "foreign")
        if self.suffix == ".zarr":
            import zarr

            zarr.open_group(p, mode="w").create_array("x", shape=(3,), dtype="f4")
        else:
            import h5py

            with h5py.File(p, "w") as f:
                f["x"] = np.zeros(3)
        with pytest.raises(SchemaError, match="not"):
            open_store(p)
        txt = self.path(tmp_path, "text")
        if self.suffix == ".zarr":
            txt.mkdir()
            (txt / "junk.txt").write_text("hello")
        else:
            txt.write_text("hello")
        with pytest.raises(SchemaError):
            open_store(txt)
        with pytest.raises(StoreError, match="suffix"):
            open_store(tmp_path / "traj.dcd")

    # ------------------------------------------------------------------ compression
    @pytest.mark.parametrize("lossless", [True, False])
    def test_compression_and_quantisation(self, tmp_path, make_system, make_frames, lossless):
        system = make_system(n=200, labels=False, order=False)
        frames = make_frames(200, 3)
        comp = "gzip"
        kw = {"compression": comp} if lossless else {"compression": comp, "quantize": {"position": 3}}
        p = _write(self.path(tmp_path), system, frames, **kw)
        with open_store(p) as st:
            pos = st.read(slice(None), "positions")
            ref = np.array([f["positions"] for f in frames])
            if lossless:
                assert pos.tobytes() == ref.tobytes()
            else:
                err = np.abs(pos - ref).max()
                assert 0 < err <= 0.5e-3
                np.testing.assert_array_equal(
                    st.read(0, "velocity"), frames[0]["velocities"]
                )  # not quantised
        with pytest.raises(StoreError, match="compression"):
            open_store(self.path(tmp_path, "x"), "w", system=system, compression="snappy")

    def test_missing_frame_error_is_index_error(self):
        assert issubclass(MissingFrameError, IndexError) and issubclass(FrameError, ValueError)


class TestHDF5Store(StoreContract):
    suffix = ".h5"


class TestZarrStore(StoreContract):
    suffix = ".zarr"
