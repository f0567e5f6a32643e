"""Time-independent content of a store: topology arrays and the JSON layout attribute.

Both backends write the same paths (``/particles/all/species``...) from :func:`static_arrays`
and rebuild the topology with :func:`static_from_arrays`; string arrays are handed over as
numpy unicode and each backend stores them natively (HDF5 fixed-length UTF-8 bytes, zarr
variable-length UTF-8 strings).
"""

from __future__ import annotations

import json

import numpy as np

from hyenamd.io.schema import PARAMETERS, PARTICLES, UNITS, Layout, SchemaError

__all__ = ["layout_from_json", "layout_to_json", "static_arrays", "static_from_arrays"]


def static_arrays(system) -> tuple[dict[str, tuple[np.ndarray, str | None]], dict]:
    """``{path: (array, unit)}`` of a template System, and the box attributes (``boundary``)."""
    out: dict[str, tuple[np.ndarray, str | None]] = {
        f"{PARTICLES}/species": (system.species.cpu().numpy().astype(np.int64), None),
        f"{PARTICLES}/mass": (system.masses.detach().cpu().double().numpy(), UNITS["mass"]),
        f"{PARAMETERS}/template_position": (system.positions.detach().cpu().numpy(), UNITS["position"]),
    }
    if system.cell is not None:
        out[f"{PARAMETERS}/template_cell"] = (system.cell.detach().cpu().numpy(), UNITS["box"])
    if system.order is not None:
        out[f"{PARAMETERS}/order"] = (system.order.cpu().numpy().astype(np.int64), None)
    lab = system.labels
    if lab is not None:
        out[f"{PARTICLES}/residue_index"] = (lab.residue_index.cpu().numpy().astype(np.int64), None)
        out[f"{PARTICLES}/chain_index"] = (lab.chain_index.cpu().numpy().astype(np.int64), None)
        if lab.atom_names is not None:
            out[f"{PARTICLES}/atom_name"] = (np.array(lab.atom_names, dtype=str), None)
        if lab.residue_names is not None:
            out[f"{PARTICLES}/residue_name"] = (np.array(lab.residue_names, dtype=str), None)
    boundary = ["periodic" if p else "none" for p in system.pbc.tolist()]
    return out, {"boundary": boundary}


def _strings(a) -> tuple[str, ...]:
    a = np.asarray(a)
    if a.dtype.kind == "S":
        return tuple(x.decode() for x in a.tolist())
    return tuple(str(x) for x in a.tolist())


def static_from_arrays(get: dict[str, np.ndarray], boundary: list[str]) -> dict:
    """The topology dict the read API uses, from ``{path: array}`` as read back from a store."""
    from hyenamd.system import Labels

    def arr(name: str, base: str = PARTICLES):
        return get.get(f"{base}/{name}")

    species = arr("species")
    if species is None:
        raise SchemaError("store has no /particles/all/species dataset")
    labels = None
    if arr("residue_index") is not None:
        names, rnames = arr("atom_name"), arr("residue_name")
        labels = Labels(
            residue_index=np.asarray(arr("residue_index"), dtype=np.int64),
            chain_index=None
            if arr("chain_index") is None
            else np.asarray(arr("chain_index"), dtype=np.int64),
            atom_names=None if names is None else _strings(names),
            residue_names=None if rnames is None else _strings(rnames),
        )
    order = arr("order", PARAMETERS)
    cell = arr("template_cell", PARAMETERS)
    return {
        "species": np.asarray(species, dtype=np.int64),
        "masses": np.asarray(arr("mass"), dtype=np.float64),
        "template_cell": None if cell is None else np.asarray(cell),
        "pbc": np.array([b == "periodic" for b in boundary], dtype=bool),
        "labels": labels,
        "order": None if order is None else np.asarray(order, dtype=np.int64),
    }


def layout_to_json(lay: Layout) -> str:
    """The layout as the JSON string stored in the ``hyenamd_layout`` root attribute."""
    return json.dumps(
        {
            "n_atoms": lay.n_atoms,
            "dtype": lay.dtype.name,
            "fields": list(lay.fields),
            "has_box": lay.has_box,
            "pbc": list(lay.pbc),
            "observables": {k: list(v) for k, v in lay.observables.items()},
            "units": lay.units,
            "chunk_frames": lay.chunk_frames,
            "chunk_atoms": lay.chunk_atoms,
            "compression": lay.compression,
            "quantize": lay.quantize,
        },
        sort_keys=True,
    )


def layout_from_json(text: str) -> Layout:
    try:
        d = json.loads(text)
        d["observables"] = {k: tuple(v) for k, v in d["observables"].items()}
        d["pbc"] = tuple(d["pbc"])
        d["fields"] = tuple(d["fields"])
        return Layout(**d)
    except (ValueError, KeyError, TypeError) as e:
        raise SchemaError(f"the store's hyenamd_layout attribute is unreadable: {e}") from None
