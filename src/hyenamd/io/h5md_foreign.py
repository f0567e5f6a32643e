"""Read any H5MD 1.1 file (written by MDAnalysis, ZnH5MD, LAMMPS, HALMD...) as a frame store.

:func:`hyenamd.io.open_store` hands an H5MD file without the ``hyenamd_schema`` attribute to
:class:`ForeignH5MDStore` (read-only). What it reads, from ``/particles/<group>`` (the first
group, or ``particle_group=``):

- ``position`` (time-dependent, or time-independent = one frame), ``velocity`` and ``force``
  (also spelled ``velocities``/``forces``), each ``value [F, N, 3]`` with its ``unit``;
- ``box``: ``dimension`` (3), ``boundary`` (``periodic``/``none`` per axis), ``edges`` fixed
  (``[3]`` diagonal or ``[3, 3]``) or time-dependent (``value [F, 3]`` or ``[F, 3, 3]``);
- ``step``/``time`` as arrays or as a fixed interval (scalar, optional ``offset``);
- ``species`` (atomic numbers; fixed, or time-dependent: frame 0) and ``mass``;
- ``/observables/<name>`` and ``/observables/<group>/<name>`` with the same steps.

Units are converted to internal ones (Å, fs, Å/fs, eV/Å, amu; energies to eV) with
:func:`hyenamd.io.h5md_units.unit_factor`. An element whose steps differ from the positions'
is left out and listed in :attr:`ForeignH5MDStore.skipped`; so are momenta (no velocity is
derived from them). Files without species (MDAnalysis writes none) need ``species=`` (atomic
numbers or symbols) or ``topology=`` (a file MDAnalysis reads with elements: TPR, PDB...).
"""

from __future__ import annotations

import os

import numpy as np

from hyenamd.io.h5md import H5MDStore
from hyenamd.io.h5md_units import unit_factor
from hyenamd.io.schema import PARAMETERS, STEP_SENTINEL, Layout, SchemaError, StoreError

__all__ = ["ForeignH5MDStore", "is_foreign_h5md"]

_SPELLINGS = {"position": ("position", "positions"), "velocity": ("velocity", "velocities"),
              "force": ("force", "forces")}  # fmt: skip


def is_foreign_h5md(path: str | os.PathLike) -> bool:
    """True for an existing H5MD file (``/h5md`` and ``/particles``) not written by hyenamd."""
    import h5py

    if not os.path.isfile(path) or not h5py.is_hdf5(path):
        return False
    try:
        with h5py.File(path, "r") as f:
            return "h5md" in f and "particles" in f and "hyenamd_schema" not in f.attrs
    except OSError:  # a hyenamd writer has it open (SWMR): not foreign
        return False


def _decode(x) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


class _Series:
    """``step``/``time`` of one time-dependent element: an array, or a fixed interval."""

    @staticmethod
    def read(ds, n: int, factor: float = 1.0) -> np.ndarray:
        if ds.shape == ():
            offset = ds.attrs.get("offset", 0)
            return (offset + ds[()] * np.arange(n)) * factor
        return ds[()][:n] * factor


class ForeignH5MDStore(H5MDStore):
    """A read-only frame store over an H5MD 1.1 file written by another program."""

    backend = "h5md"

    def __init__(self, path, mode: str = "r", *, particle_group=None, species=None, topology=None):
        if mode != "r":
            raise StoreError(
                f"{path} is an H5MD file written by another program: it opens read-only (mode='r'); "
                "copy it into a hyenamd store with hyenamd.io.convert.convert_store to append"
            )
        self._group_name, self._species_opt, self._topology = particle_group, species, topology
        self.skipped: dict[str, str] = {}
        super().__init__(path, "r")

    # ------------------------------------------------------------------ opening
    def _open(self, *, writable: bool) -> None:
        import h5py

        try:
            self._f = f = h5py.File(self.path, "r")
        except OSError as e:
            raise StoreError(f"cannot open {self.path}: {e}") from None
        groups = [k for k, v in f["particles"].items() if isinstance(v, h5py.Group)]
        name = self._group_name or (groups[0] if groups else None)
        if name not in groups:
            self._f.close()
            raise SchemaError(f"{self.path} has no particle group {name!r} (groups: {groups})")
        self._group_name, g = name, f["particles"][name]
        self.creator = _decode(f["h5md/creator"].attrs.get("name", "?")) if "h5md/creator" in f else "?"
        self._elements: dict[str, tuple] = {}  # key -> (dataset, factor, fixed)
        pos = self._element(g, "position")
        if pos is None:
            self._f.close()
            raise SchemaError(f"{self.path}: /particles/{name} has no position element")
        ds, factor = pos
        if "value" not in ds.name.split("/")[-1:]:  # time-independent positions: one frame
            self._n_frames, steps, times = 1, np.zeros(1, np.int64), np.zeros(1)
        else:
            grp = ds.parent
            self._n_frames = ds.shape[0]
            steps = _Series.read(grp["step"], self._n_frames).astype(np.int64)
            tf = unit_factor(grp["time"].attrs.get("unit"), "time") if "time" in grp else 1.0
            times = _Series.read(grp["time"], self._n_frames, tf) if "time" in grp else steps.astype(float)
        self._step_arr, self._time_arr = steps, np.asarray(times, dtype=np.float64)
        self._elements["position"] = (ds, factor)
        for key in ("velocity", "force"):
            el = self._element(g, key)
            if el is not None and self._same_steps(key, el[0]):
                self._elements[key] = el
        if any(k in g for k in ("momentum", "momenta")):
            self.skipped["momentum"] = "momenta are not converted to velocities"
        self._fixed_box, has_box, pbc = self._box(g)
        self._observables = self._find_observables()
        shape_obs = {k: tuple(ds.shape[1:]) for k, (ds, _, _) in self._observables.items()}
        units = {k: u for k, (_, _, u) in self._observables.items() if u}
        dtype = ds.dtype if ds.dtype in (np.float32, np.float64) else np.dtype(np.float64)
        self.layout = Layout(
            n_atoms=ds.shape[-2], dtype=dtype, fields=tuple(k for k in self._elements if k != "box"), has_box=has_box, pbc=pbc,
            observables=shape_obs, units=units, chunk_frames=(ds.chunks or (1,))[0],
        )  # fmt: skip
        self._inner = {}

    def _element(self, g, key: str):
        """(value dataset, unit factor) of a per-atom element, or None."""
        import h5py

        for name in _SPELLINGS[key]:
            if name in g:
                obj = g[name]
                ds = obj if isinstance(obj, h5py.Dataset) else obj.get("value")
                if ds is None:
                    raise SchemaError(f"{self.path}: {obj.name} is a group without a value dataset")
                return ds, unit_factor(ds.attrs.get("unit"), key)
        return None

    def _same_steps(self, key: str, ds) -> bool:
        grp = ds.parent
        if ds.name.split("/")[-1] != "value":
            self.skipped[key] = "time-independent (one value for every frame)"
            return False
        if "step" not in grp or ds.shape[0] != self._n_frames:
            self.skipped[key] = f"{ds.shape[0]} frames at other steps than the positions'"
            return False
        ok = np.array_equal(_Series.read(grp["step"], self._n_frames), self._step_arr)
        if not ok:
            self.skipped[key] = "sampled at other steps than the positions"
        return ok

    def _box(self, g):
        """(fixed [3, 3] box or None, time-dependent box?, pbc)."""
        import h5py

        if "box" not in g:
            return None, False, (False, False, False)
        box = g["box"]
        dim = int(np.asarray(box.attrs.get("dimension", 3)))
        if dim != 3:
            raise SchemaError(f"{self.path}: box dimension {dim}; hyenamd reads 3-dimensional systems only")
        boundary = [_decode(b) for b in np.atleast_1d(box.attrs.get("boundary", ["none"] * 3))]
        pbc = tuple(b == "periodic" for b in boundary)
        edges = box.get("edges")
        if edges is None:
            if any(pbc):
                raise SchemaError(f"{self.path}: periodic box without edges")
            return None, False, pbc
        if isinstance(edges, h5py.Dataset):
            return _as_matrix(edges[()] * unit_factor(edges.attrs.get("unit"), "box")), False, pbc
        ds = edges["value"]
        f = unit_factor(ds.attrs.get("unit"), "box")
        if self._same_steps("box", ds):
            self._elements["box"] = (ds, f)
            return None, True, pbc
        return _as_matrix(ds[0] * f), False, pbc  # sampled elsewhere: the first box for every frame

    def _find_observables(self) -> dict:
        """name -> (value dataset, factor, unit) of the time-dependent observables at our steps."""
        import h5py

        out: dict = {}
        if "observables" not in self._f:
            return out

        def add(name, grp):
            ds = grp["value"]
            if name in ("position", "velocity", "force", "box", "step", "time", "cell"):
                self.skipped[f"observable {name}"] = "its name is reserved for a per-atom element"
                return
            if ds.dtype.kind not in "fiu" or not self._same_steps(f"observable {name}", ds):
                return
            unit = _decode(ds.attrs["unit"]) if "unit" in ds.attrs else None
            for qty, internal in (("energy", "eV"), ("temperature", "K")):
                try:
                    out[name] = (ds, unit_factor(unit, qty), internal if unit else None)
                    return
                except SchemaError:
                    pass
            out[name] = (ds, 1.0, unit)

        for name, obj in self._f["observables"].items():
            if not isinstance(obj, h5py.Group):
                self.skipped[f"observable {name}"] = "time-independent"
                continue
            if "value" in obj:
                add(name, obj)
                continue
            for sub, o in obj.items():
                if isinstance(o, h5py.Group) and "value" in o:
                    add(sub if name == self._group_name else f"{name}_{sub}", o)
        return out

    def _bind(self) -> None:  # the datasets were bound in _open
        pass

    # ------------------------------------------------------------------ topology
    def _read_static(self) -> dict:
        g = self._f["particles"][self._group_name]
        n = self.layout.n_atoms
        species = self._species(g, n)
        masses = None
        if "mass" in g:
            m = g["mass"]
            ds = m if not hasattr(m, "keys") else m["value"]
            arr = np.asarray(ds[()] if ds.ndim <= 1 else ds[0], dtype=np.float64)
            masses = np.broadcast_to(arr * unit_factor(ds.attrs.get("unit"), "mass"), (n,)).copy()
        if masses is None:
            from hyenamd.elements import MASSES

            masses = np.asarray(MASSES, dtype=np.float64)[species]
        cell = self._fixed_box
        if cell is None and "box" in self._elements:
            cell = self._read("box", 0)
        return {
            "species": species, "masses": masses, "template_cell": cell,
            "pbc": np.array(self.layout.pbc, dtype=bool), "labels": None, "order": None,
        }  # fmt: skip

    def _species(self, g, n: int) -> np.ndarray:
        from hyenamd.elements import SYMBOLS

        given = self._species_opt
        if given is None and self._topology is not None:
            given = _topology_elements(self._topology, n)
        if given is not None:
            arr = np.asarray(given)
            if arr.dtype.kind in "US":
                index = {s.lower(): z for z, s in enumerate(SYMBOLS)}
                bad = [s for s in arr.tolist() if _decode(s).strip().lower() not in index]
                if bad:
                    raise SchemaError(f"unknown element symbols {sorted(set(bad))[:5]} in species=")
                arr = np.array([index[_decode(s).strip().lower()] for s in arr.tolist()])
            if arr.shape != (n,):
                raise SchemaError(f"species= has {arr.shape} entries; {self.path} has {n} atoms")
            return arr.astype(np.int64)
        if "species" not in g:
            raise SchemaError(
                f"{self.path} (written by {self.creator!r}) has no species: pass species= (atomic numbers "
                "or symbols) or topology= (a file MDAnalysis reads with elements, e.g. a TPR or PDB)"
            )
        obj = g["species"]
        ds = obj if not hasattr(obj, "keys") else obj["value"]
        arr = np.asarray(ds[()] if ds.ndim <= 1 else ds[0])
        z = np.rint(arr).astype(np.int64)
        if arr.shape != (n,) or not np.array_equal(z, arr) or z.min() < 1 or z.max() >= len(SYMBOLS):
            raise SchemaError(
                f"{self.path}: species are not atomic numbers (values {np.unique(arr)[:5].tolist()}...); "
                "pass species= or topology="
            )
        return z

    # ------------------------------------------------------------------ reading
    def _slots(self) -> int:
        return self._n_frames

    def _read(self, key, k, atoms=None) -> np.ndarray:
        if key == "step":
            return self._step_arr[k]
        if key == "time":
            return self._time_arr[k]
        if key in self._observables:
            ds, f, _ = self._observables[key]
            v = np.asarray(ds[k], dtype=np.float64)
            return v * f if f != 1.0 else v
        ds, f = self._elements[key]
        fixed = ds.ndim == 2 and key == "position"  # a time-independent position: frame 0 only
        sel = () if fixed else (k,)
        if atoms is not None and key != "box":
            sel = (*sel, atoms)
        out = np.asarray(ds[sel] if sel else ds[()], dtype=self.layout.dtype)
        if key == "box":
            out = _as_matrix(out)
        return out * np.asarray(f, dtype=out.dtype) if f != 1.0 else out

    def _read_array(self, path: str) -> np.ndarray:
        if path == f"{PARAMETERS}/template_position":
            return self._read("position", 0)
        return super()._read_array(path)

    def _get_status(self) -> str:
        return "complete"

    def _refresh_file(self) -> None:
        self._f.close()
        self._open(writable=False)

    def _scan(self) -> None:
        super()._scan()
        if (self._steps == STEP_SENTINEL).any():  # pragma: no cover - a foreign file with our sentinel
            raise SchemaError(f"{self.path}: step {STEP_SENTINEL} is reserved")


def _as_matrix(edges: np.ndarray) -> np.ndarray:
    """``[..., 3]`` box lengths (orthorhombic) or ``[..., 3, 3]`` edge vectors → ``[..., 3, 3]``."""
    edges = np.asarray(edges)
    if edges.shape[-1:] == (3,) and (edges.ndim == 1 or edges.shape[-2:] != (3, 3)):
        out = np.zeros((*edges.shape, 3), dtype=edges.dtype)
        for i in range(3):
            out[..., i, i] = edges[..., i]
        return out
    return edges


def _topology_elements(topology, n: int) -> list[str]:
    """Element symbols of a topology file, read by MDAnalysis."""
    import MDAnalysis as mda

    u = mda.Universe(os.fspath(topology))
    if u.atoms.n_atoms != n:
        raise SchemaError(f"topology {topology} has {u.atoms.n_atoms} atoms, the trajectory {n}")
    if not hasattr(u.atoms, "elements"):
        raise SchemaError(f"topology {topology} has no elements; pass species= instead")
    el = [str(e) for e in u.atoms.elements]
    missing = [i for i, e in enumerate(el) if not e.strip()]
    if missing:
        raise SchemaError(
            f"topology {topology} gives no element for {len(missing)} atoms (e.g. atom {missing[0]} "
            f"named {u.atoms[missing[0]].name!r}, a virtual site?); pass species= instead"
        )
    return el
