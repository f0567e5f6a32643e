"""Converters: store ↔ store (HDF5 ↔ zarr, bitwise), ASE trajectories ↔ store, DCD/XTC export.

ASE is the reference for ``.traj`` (binary, float64) and extended XYZ (text: ASE writes
``%16.8f``, so extxyz keeps 8 decimals only). Velocities travel through ASE as momenta in
ASE time units: exact for float32 stores, within a few ulp for float64 stores.
DCD/XTC export (for VMD, PyMOL, ...) uses MDAnalysis' writers; it is one-way (positions and
box only). MDAnalysis reads our ``.h5md`` files itself (no registration needed: HDF5 stores
keep forces in ``kJ mol-1 Angstrom-1``, a unit its H5MD reader knows).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from hyenamd.io.schema import StoreError

__all__ = [
    "convert_store",
    "export_topology",
    "export_trajectory",
    "store_from_ase",
    "store_to_ase",
]


def _open(store_or_path):
    from hyenamd.io import FrameStore, open_store

    if isinstance(store_or_path, FrameStore):
        return store_or_path, False
    return open_store(store_or_path), True


def convert_store(src, dst: str | os.PathLike, *, overwrite: bool = False, **options) -> int:
    """Copy every frame of a store into a new store (e.g. ``.h5`` → ``.zarr``); returns n_frames.

    Values are copied as read (bitwise, except forces between HDF5, which keeps kJ/mol/Å on
    disk, and zarr, which keeps eV/Å: within one ulp); ``options`` (``compression``, ``chunk_frames``...)
    apply to the new store and default to the source's layout.
    """
    from hyenamd.io import open_store

    st, own = _open(src)
    try:
        lay = st.layout
        if lay is not None:
            options.setdefault("fields", lay.fields)
            options.setdefault("observables", lay.observables)
            options.setdefault("units", lay.units)
            options.setdefault("dtype", lay.dtype)
        with open_store(dst, "w", system=st.system, overwrite=overwrite, **options) as out:
            for fr in st.frames():
                out.append(
                    fr.arrays["position"], step=fr.step, time=fr.time, velocities=fr.arrays.get("velocity"),
                    forces=fr.arrays.get("force"), cell=fr.arrays.get("box"), allow_nan=True, **fr.observables,
                )  # fmt: skip
            return len(out)
    finally:
        if own:
            st.close()


def store_to_ase(src, path: str | os.PathLike | None = None, *, format: str | None = None) -> list:
    """Frames as ``ase.Atoms`` (positions Å, velocities, cell, pbc; energy/forces in a
    SinglePointCalculator; ``info["step"]``, ``info["time"]`` in fs and the other observables).
    Writes them with ``ase.io.write`` when ``path`` is given (``.traj``, ``.extxyz``...)."""
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator

    st, own = _open(src)
    try:
        images = []
        for fr in st.frames():
            atoms = st[fr.index].to_ase()
            atoms.info.update({"step": fr.step, "time": fr.time})
            obs = {k: (float(v) if np.ndim(v) == 0 else np.asarray(v)) for k, v in fr.observables.items()}
            energy = obs.pop("potential_energy", None)
            atoms.info.update(obs)
            forces = fr.arrays.get("force")
            if energy is not None or forces is not None:
                atoms.calc = SinglePointCalculator(
                    atoms, energy=energy, forces=None if forces is None else forces.astype(np.float64)
                )
            images.append(atoms)
    finally:
        if own:
            st.close()
    if path is not None:
        ase.io.write(path, images, format=format)
    return images


def store_from_ase(
    source: str | os.PathLike | Iterable[Any],
    dst: str | os.PathLike,
    *,
    dt_fs: float = 1.0,
    dtype=np.float64,
    overwrite: bool = False,
    **options,
) -> int:
    """Write ASE images (a file read with ``ase.io.iread`` or an iterable of Atoms) to a store.

    step = ``info["step"]`` (default: the image index), time = ``info["time"]`` (default
    ``step * dt_fs``) in fs; velocities from momenta; forces and the potential energy from an
    attached calculator's results when present; other numeric ``info`` entries named in
    ``observables=`` become observables. Values are cast to ``dtype``. Returns n_frames.
    """
    import ase.io
    import torch

    from hyenamd.io import open_store
    from hyenamd.system import System

    images = ase.io.iread(os.fspath(source)) if isinstance(source, (str, os.PathLike)) else iter(source)
    dtype = np.dtype(dtype)
    out = None
    try:
        for i, atoms in enumerate(images):
            res = dict(atoms.calc.results) if atoms.calc is not None else {}
            obs = {k: atoms.info[k] for k in options.get("observables", ()) if k in atoms.info}
            if "energy" in res:
                obs["potential_energy"] = float(res["energy"])
            system = System.from_ase(atoms)
            if out is None:
                fields = ["position"] + (["velocity"] if system.velocities is not None else [])
                fields += ["force"] if "forces" in res else []
                opts = {**options, "fields": tuple(fields), "observables": tuple(obs)}
                tmpl = system.to(dtype=torch.float32 if dtype == np.float32 else torch.float64)
                out = open_store(dst, "w", system=tmpl, overwrite=overwrite, dtype=dtype, **opts)
            step = int(atoms.info.get("step", i))
            vel = None if system.velocities is None else system.velocities.numpy().astype(dtype)
            out.append(
                atoms.get_positions().astype(dtype), step=step, time=float(atoms.info.get("time", step * dt_fs)),
                velocities=vel, forces=None if "forces" not in res else np.asarray(res["forces"]).astype(dtype),
                cell=None if system.cell is None else atoms.cell.array.astype(dtype), **obs,
            )  # fmt: skip
        if out is None:
            raise StoreError(f"no ASE images in {source!r}")
        return len(out)
    finally:
        if out is not None:
            out.close()


# ---------------------------------------------------------------------- MDAnalysis
def _universe(st, atoms: slice | None):
    """An MDAnalysis Universe with names/elements (and residues from the store's labels)."""
    import MDAnalysis as mda

    from hyenamd.elements import SYMBOLS

    sel = slice(None) if atoms is None else atoms
    species = st._static["species"][sel]
    n = len(species)
    lab = st._static["labels"]
    resindex = np.zeros(n, dtype=int) if lab is None else lab.residue_index.numpy()[sel]
    resindex = np.unique(resindex, return_inverse=True)[1]
    n_res = int(resindex.max()) + 1
    u = mda.Universe.empty(n, n_residues=n_res, atom_resindex=resindex, trajectory=True)
    elements = [SYMBOLS[z] for z in species]
    names = elements if lab is None or lab.atom_names is None else list(np.array(lab.atom_names)[sel])
    u.add_TopologyAttr("name", names)
    u.add_TopologyAttr("type", elements)
    u.add_TopologyAttr("element", elements)
    u.add_TopologyAttr("resid", np.arange(1, n_res + 1))
    rnames = ["MOL"] * n_res
    if lab is not None and lab.residue_names is not None:
        rn = np.array(lab.residue_names)[sel]
        for k in range(n_res):
            rnames[k] = str(rn[np.flatnonzero(resindex == k)[0]])
    u.add_TopologyAttr("resname", rnames)
    return u


def _set_frame(u, positions, cell, time_fs: float) -> None:
    from MDAnalysis.lib.mdamath import triclinic_box

    u.atoms.positions = positions
    u.trajectory.ts.dimensions = None if cell is None else triclinic_box(*cell)
    u.trajectory.ts.time = time_fs / 1000.0  # MDAnalysis time unit: ps


def export_trajectory(src, path: str | os.PathLike, *, atoms: slice | None = None, stride: int = 1) -> int:
    """Write positions and box of every ``stride``-th frame to DCD/XTC/... (MDAnalysis writer
    chosen by suffix; MDAnalysis converts Å to the format's units). Returns frames written."""
    import MDAnalysis as mda

    st, own = _open(src)
    try:
        u = _universe(st, atoms)
        n = 0
        with mda.Writer(os.fspath(path), n_atoms=u.atoms.n_atoms) as w:
            for fr in st.frames(
                0, None, stride, atoms=atoms, fields=("position", *(("box",) if "box" in st.fields else ()))
            ):
                _set_frame(u, fr.arrays["position"], fr.arrays.get("box"), fr.time)
                w.write(u.atoms)
                n += 1
        return n
    finally:
        if own:
            st.close()


def export_topology(src, path: str | os.PathLike, *, frame: int = 0) -> Path:
    """Write one frame as a topology file for viewers (PDB/GRO..., via MDAnalysis)."""
    st, own = _open(src)
    try:
        u = _universe(st, None)
        s = st[frame] if len(st) else st.system
        _set_frame(
            u, s.positions.numpy(), None if s.cell is None else s.cell.numpy(), float(s.info.get("time", 0.0))
        )
        with warnings.catch_warnings():  # PDB columns we have no data for (occupancy...)
            warnings.simplefilter("ignore", UserWarning)
            u.atoms.write(os.fspath(path))
        return Path(path)
    finally:
        if own:
            st.close()
