"""Frame-store throughput: hyenamd's HDF5 and zarr stores vs raw h5py / zarr, 1 M-atom frames.

Writes ``n_frames`` float32 frames of ``n_atoms`` positions (12 MB each at 10⁶ atoms) with
chunks of 1 frame x 65 536 atoms, uncompressed, four ways: raw h5py (resizable dataset,
resize + write per frame), hyenamd ``.h5`` (SWMR, per-frame commit: values, flush, step,
flush), raw zarr (pre-shaped array) and hyenamd ``.zarr`` (values, time, step per frame).
Then reads every frame back whole (warm: from the page cache; cold: after ``fsync`` +
``posix_fadvise(DONTNEED)`` evicted the files' pages) and reads an atom range of 10⁴ atoms.
Every number is the best of ``--repeats`` runs; all come from one run of the script.

    python benchmarks/io_throughput.py            # 10⁶ atoms x 16 frames (~2 min on 2 cores)
    python benchmarks/io_throughput.py --quick    # 10⁵ atoms x 4 frames, for the test suite
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from common import header, write_json

CHUNK_ATOMS = 65536


def evict(path: pathlib.Path) -> None:
    """Write back and drop the page-cache pages of a file or of every file under a directory."""
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    for f in files:
        fd = os.open(f, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def remove(path: pathlib.Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


# ---------------------------------------------------------------------- writers
def write_raw_h5(path, frames):
    import h5py

    n = frames[0].shape[0]
    with h5py.File(path, "w", libver="latest") as f:
        ds = f.create_dataset(
            "x", shape=(0, n, 3), maxshape=(None, n, 3), chunks=(1, min(n, CHUNK_ATOMS), 3), dtype=np.float32
        )
        for k, x in enumerate(frames):
            ds.resize(k + 1, axis=0)
            ds.write_direct(x, dest_sel=np.s_[k])


def write_raw_zarr(path, frames):
    import zarr

    n = frames[0].shape[0]
    a = zarr.open_group(path, mode="w").create_array(
        "x", shape=(len(frames), n, 3), chunks=(1, min(n, CHUNK_ATOMS), 3), dtype=np.float32, compressors=None,
        fill_value=0.0,
    )  # fmt: skip
    for k, x in enumerate(frames):
        a[k] = x


def open_hyenamd(path, template):
    from hyenamd.io import open_store

    return open_store(
        path, "w", system=template, fields=("position",), chunk_frames=1, chunk_atoms=CHUNK_ATOMS
    )


def append_hyenamd(store, frames):
    for k, x in enumerate(frames):
        store.append(x, step=k, time=float(k))
    store.close()


# ---------------------------------------------------------------------- readers
def open_raw(path):
    """(read(k, atoms), close) on the raw file; opened outside the timed region."""
    if path.suffix == ".h5":
        import h5py

        f = h5py.File(path, "r")
        ds = f["x"]
        close = f.close
    else:
        import zarr

        ds, close = zarr.open_group(path, mode="r")["x"], (lambda: None)
    return (lambda k, atoms=None: np.asarray(ds[k] if atoms is None else ds[k, atoms])), close


def open_hy(path):
    from hyenamd.io import open_store

    st = open_store(path)
    return (lambda k, atoms=None: st.read(k, "position", atoms=atoms)), st.close


def read_loop(read, n_frames, atoms=None):
    for k in range(n_frames):
        out = read(k, atoms)
    return out


def iterate_hyenamd(path, n_frames):
    from hyenamd.io import open_store

    with open_store(path) as st:
        for fr in st.frames(fields=("position",), prefetch=2):
            out = fr.arrays["position"]
    return out


def timed(fn, repeats, before=None):
    best = float("inf")
    for _ in range(repeats):
        if before is not None:
            before()
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def bench_backend(suffix, frames, template, repeats, workdir) -> dict:
    n_frames, mb = len(frames), frames[0].nbytes / 1e6
    total = n_frames * mb
    raw, hy = workdir / f"raw{suffix}", workdir / f"hyenamd{suffix}"
    write_raw = write_raw_h5 if suffix == ".h5" else write_raw_zarr

    def raw_write():
        remove(raw)
        write_raw(raw, frames)

    t_raw = timed(raw_write, repeats)
    t_hy, t_create = float("inf"), float("inf")
    for _ in range(repeats):
        remove(hy)
        t0 = time.perf_counter()
        st = open_hyenamd(hy, template)
        t1 = time.perf_counter()
        append_hyenamd(st, frames)
        t2 = time.perf_counter()
        t_create, t_hy = min(t_create, t1 - t0), min(t_hy, t2 - t1)
    res = {
        "write": {"raw_MBps": total / t_raw, "hyenamd_MBps": total / t_hy, "ratio": t_raw / t_hy,
                  "hyenamd_create_s": t_create},
    }  # fmt: skip
    # whole-frame reads: warm (page cache) and cold (pages evicted first); files opened beforehand
    from hyenamd.io import open_store

    res["hyenamd_open_ms"] = 1e3 * timed(lambda: open_store(hy).close(), repeats)
    readers = {"raw": (open_raw(raw), raw), "hyenamd": (open_hy(hy), hy)}
    for kind in ("warm", "cold"):
        r = {}
        for label, ((read, _), path) in readers.items():
            pre = (lambda p=path: evict(p)) if kind == "cold" else None
            r[f"{label}_MBps"] = total / timed(lambda read=read: read_loop(read, n_frames), repeats, pre)
        pre = (lambda: evict(hy)) if kind == "cold" else None
        r["hyenamd_frames_iter_MBps"] = total / timed(lambda: iterate_hyenamd(hy, n_frames), repeats, pre)
        res[f"read_{kind}"] = r
    n = frames[0].shape[0]
    atoms = slice(n // 2, n // 2 + min(10_000, n // 4))
    ra = {"n_atoms_read": atoms.stop - atoms.start}
    for label, ((read, _), _p) in readers.items():
        t = timed(lambda read=read: read_loop(read, n_frames, atoms), repeats)
        ra[f"{label}_ms_per_frame"] = 1e3 * t / n_frames
    ra["hyenamd_whole_frame_ms"] = mb / res["read_warm"]["hyenamd_MBps"] * 1e3
    res["atom_range_read"] = ra
    for (_, close), _p in readers.values():
        close()
    # the hyenamd store holds exactly the frames that were written
    read, close = open_hy(hy)
    assert read_loop(read, n_frames).tobytes() == frames[-1].tobytes()
    close()
    return res


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="10⁵ atoms x 4 frames, one repeat (for tests)")
    p.add_argument("--out", type=pathlib.Path, default=None, help="directory for the JSON result")
    p.add_argument("--n-atoms", type=int, default=None)
    p.add_argument("--frames", type=int, default=None)
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--workdir", type=pathlib.Path, default=None, help="where the stores are written (a disk)")
    args = p.parse_args(argv)
    import h5py  # noqa: F401 - imported before any timing
    import torch
    import zarr  # noqa: F401

    import hyenamd.io.h5md
    import hyenamd.io.zarr_store  # noqa: F401
    from hyenamd import System
    from hyenamd.progress import progress_bar

    n_atoms = args.n_atoms or (100_000 if args.quick else 1_000_000)
    n_frames = args.frames or (4 if args.quick else 16)
    repeats = args.repeats or (1 if args.quick else 3)
    rng = np.random.default_rng(0)
    base = (rng.random((n_atoms, 3)) * 100).astype(np.float32)
    frames = [base + np.float32(0.01 * k) for k in range(n_frames)]
    template = System(positions=torch.from_numpy(base), species=torch.full((n_atoms,), 8))
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="hyenamd-io-", dir=args.workdir))
    results = {}
    load_start = os.getloadavg()
    try:
        for suffix in progress_bar((".h5", ".zarr"), desc="io_throughput", disable=args.quick):
            results["hdf5" if suffix == ".h5" else "zarr"] = bench_backend(
                suffix, frames, template, repeats, tmp
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    goals = {"write_ratio_min": 0.8, "whole_frame_read_MBps_min": 1000.0}
    met = {
        b: {
            "write_ratio": r["write"]["ratio"] >= goals["write_ratio_min"],
            "read_warm": r["read_warm"]["hyenamd_MBps"] >= goals["whole_frame_read_MBps_min"],
            "read_cold": r["read_cold"]["hyenamd_MBps"] >= goals["whole_frame_read_MBps_min"],
        }
        for b, r in results.items()
    }
    cmd = "python benchmarks/io_throughput.py" + (" --quick" if args.quick else "")
    payload = {
        **header(cmd),
        "config": {"n_atoms": n_atoms, "n_frames": n_frames, "dtype": "float32", "chunk_atoms": CHUNK_ATOMS,
                   "chunk_frames": 1, "frame_MB": frames[0].nbytes / 1e6, "repeats": repeats,
                   "workdir": str(args.workdir or tempfile.gettempdir())},
        "load_average_1_5_15min": {"start": load_start, "end": os.getloadavg()},  # shared machine
        "results": results,
        "goals": goals,
        "met": met,
    }  # fmt: skip
    path = write_json("io_throughput", payload, args.out)
    for b, r in results.items():
        w, rw, rc, ra = r["write"], r["read_warm"], r["read_cold"], r["atom_range_read"]
        print(
            f"{b:5s} write raw {w['raw_MBps']:7.0f} MB/s  hyenamd {w['hyenamd_MBps']:7.0f} MB/s ({w['ratio']:.0%}) | "
            f"read warm {rw['hyenamd_MBps']:7.0f} (raw {rw['raw_MBps']:.0f}) cold {rc['hyenamd_MBps']:7.0f} "
            f"(raw {rc['raw_MBps']:.0f}) MB/s | {ra['n_atoms_read']} atoms {ra['hyenamd_ms_per_frame']:.2f} ms "
            f"(raw {ra['raw_ms_per_frame']:.2f}, whole frame {ra['hyenamd_whole_frame_ms']:.1f} ms)"
        )
    print(f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
