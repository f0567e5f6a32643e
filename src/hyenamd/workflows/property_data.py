"""Data of the property workflow: PDB structures (OpenMM's reader), CSV label tables, and a
proof-of-workflow data set computed from reference MD (see :mod:`hyenamd.workflows.property`)."""

from __future__ import annotations

import csv
import math
import pathlib
from dataclasses import dataclass

import numpy as np
import torch

from hyenamd.system import Labels, System

__all__ = ["PropertyData", "load_property_data", "make_rmsf_dataset", "read_pdb", "write_pdb"]


@dataclass(frozen=True)
class PropertyData:
    """The ``property:`` section: data files, target names, split and optimisation.

    structures_csv / residues_csv: the label tables (module doc); at least one must give targets.
    structure_targets / residue_targets: column names to learn (empty: none of that kind).
    valid_fraction, seed; epochs, batch_size, lr, weight_decay, warmup_steps, clip_grad_norm,
    patience (epochs; 0: never stop early); progress.
    """

    structures_csv: str = ""
    residues_csv: str = ""
    structure_targets: tuple[str, ...] = ()
    residue_targets: tuple[str, ...] = ()
    valid_fraction: float = 0.2
    seed: int = 0
    epochs: int = 50
    batch_size: int = 4
    lr: float = 2e-3
    weight_decay: float = 0.0
    warmup_steps: int = 10
    clip_grad_norm: float = 10.0
    patience: int = 15
    progress: bool = True

    def __post_init__(self) -> None:
        if not self.structures_csv:
            raise ValueError("property.structures_csv is required (id,path[,targets...])")
        if not self.structure_targets and not self.residue_targets:
            raise ValueError(
                "name at least one target in property.structure_targets or property.residue_targets"
            )
        if self.residue_targets and not self.residues_csv:
            raise ValueError("property.residue_targets needs property.residues_csv")
        if not 0 < self.valid_fraction < 1 or self.epochs < 1 or self.batch_size < 1 or not self.lr > 0:
            raise ValueError("need 0 < valid_fraction < 1, epochs >= 1, batch_size >= 1, lr > 0")


def read_pdb(path: str | pathlib.Path, dtype: torch.dtype = torch.float64) -> System:
    """A PDB file as a :class:`System` (OpenMM's reader): positions Å, elements, residue labels, box if any."""
    import openmm.app as app
    import openmm.unit as u

    pdb = app.PDBFile(str(path))
    top = pdb.topology
    atoms = list(top.atoms())
    missing = [a.name for a in atoms if a.element is None]
    if missing:
        raise ValueError(f"{path}: atoms without an element: {missing[:5]}")
    res_index = {r: k for k, r in enumerate(top.residues())}
    pos = np.asarray(pdb.getPositions(asNumpy=True).value_in_unit(u.angstrom))
    box = top.getPeriodicBoxVectors()
    cell = None if box is None else np.asarray(box.value_in_unit(u.angstrom))
    labels = Labels(
        residue_index=torch.tensor([res_index[a.residue] for a in atoms]),
        chain_index=torch.tensor([a.residue.chain.index for a in atoms]),
        atom_names=tuple(a.name for a in atoms),
        residue_names=tuple(a.residue.name for a in atoms),
    )
    return System(
        positions=torch.tensor(pos, dtype=dtype),
        species=torch.tensor([a.element.atomic_number for a in atoms]),
        cell=None if cell is None else torch.tensor(cell, dtype=dtype),
        pbc=cell is not None,
        labels=labels,
    )


def write_pdb(system: System, path: str | pathlib.Path) -> None:
    """Minimal PDB (ATOM records, one model, no box) of a labelled system, readable by :func:`read_pdb`."""
    from hyenamd.elements import SYMBOLS

    lab = system.labels
    lines = []
    for k, (x, y, z) in enumerate(system.positions.double().tolist()):
        name = lab.atom_names[k] if lab and lab.atom_names else SYMBOLS[int(system.species[k])]
        rname = lab.residue_names[k] if lab and lab.residue_names else "UNK"
        rnum = int(lab.residue_index[k]) + 1 if lab else 1
        el = SYMBOLS[int(system.species[k])]
        nm = f" {name:<3s}" if len(name) < 4 else name
        lines.append(
            f"ATOM  {k + 1:5d} {nm:4s} {rname:>3s} A{rnum:4d}    {x:8.3f}{y:8.3f}{z:8.3f}  1.00  0.00          {el:>2s}"
        )
    pathlib.Path(path).write_text("\n".join(lines) + "\nEND\n")


def _read_csv(path: pathlib.Path) -> list[dict[str, str]]:
    if not path.exists():
        raise FileNotFoundError(f"label table not found: {path}")
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _float(row: dict, col: str, where: str) -> float:
    if col not in row:
        raise ValueError(f"{where}: no column {col!r} (have {list(row)})")
    val = row[col].strip()
    return math.nan if val in ("", "nan", "NaN", "NA") else float(val)


def load_property_data(d: PropertyData, dtype: torch.dtype) -> list[dict]:
    """Items ``{id, system, structure [T_s], residue [R, T_r]}`` from the CSVs (labels NaN where absent)."""
    sp = pathlib.Path(d.structures_csv)
    items, by_id = [], {}
    for n, row in enumerate(_read_csv(sp)):
        if "id" not in row or "path" not in row:
            raise ValueError(f"{sp}: needs columns 'id' and 'path' (row {n + 1} has {list(row)})")
        pdb = (sp.parent / row["path"]).resolve()
        system = read_pdb(pdb, dtype)
        n_res = int(system.labels.residue_index.max()) + 1
        it = {
            "id": row["id"],
            "system": system,
            "structure": torch.tensor(
                [_float(row, c, f"{sp} row {n + 1}") for c in d.structure_targets], dtype=dtype
            ),
            "residue": torch.full((n_res, len(d.residue_targets)), math.nan, dtype=dtype),
        }
        items.append(it)
        by_id[row["id"]] = it
    if d.residue_targets:
        rp = pathlib.Path(d.residues_csv)
        for n, row in enumerate(_read_csv(rp)):
            it = by_id.get(row.get("id"))
            if it is None:
                raise ValueError(f"{rp} row {n + 1}: unknown structure id {row.get('id')!r}")
            r = int(row["residue"])
            if not 0 <= r < it["residue"].shape[0]:
                raise ValueError(f"{rp} row {n + 1}: residue {r} outside 0..{it['residue'].shape[0] - 1}")
            it["residue"][r] = torch.tensor([_float(row, c, f"{rp} row {n + 1}") for c in d.residue_targets])
    if len(items) < 2:
        raise ValueError(f"{sp}: need at least two structures for a train/validation split, got {len(items)}")
    return items


def _write_csv(path: pathlib.Path, header: list[str], rows: list[list]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def make_rmsf_dataset(
    store_path: str | pathlib.Path, out_dir: str | pathlib.Path, window: int = 20
) -> dict[str, pathlib.Path]:
    """Labels the project computes itself, from a reference store of a labelled peptide/protein.

    Consecutive windows of ``window`` frames become structures: the window's first frame is
    written as ``structures/<id>.pdb``; labels are ``rmsf`` per residue (Å: RMS fluctuation of the
    residue's atoms about their window mean, after removing the window's centre-of-mass motion)
    and ``rg`` per structure (Å, radius of gyration of that first frame). Returns the CSV paths.
    """
    from hyenamd.io import open_store

    out = pathlib.Path(out_dir)
    (out / "structures").mkdir(parents=True, exist_ok=True)
    srows, rrows = [], []
    with open_store(store_path) as st:
        tmpl = st.system
        if tmpl.labels is None:
            raise ValueError(f"{store_path} has no residue labels: RMSF per residue needs a topology")
        rid = tmpl.labels.residue_index.numpy()
        n_res = int(rid.max()) + 1
        masses = tmpl.masses.double().numpy()
        for w in range(len(st) // window):
            xs = np.stack([st[k].positions.double().numpy() for k in range(w * window, (w + 1) * window)])
            xs = xs - (xs * masses[None, :, None]).sum(1, keepdims=True) / masses.sum()
            dev = ((xs - xs.mean(0)) ** 2).sum(-1).mean(0)  # [N] Å²
            first = st[w * window]
            wid = f"w{w:04d}"
            write_pdb(first, out / "structures" / f"{wid}.pdb")
            x0 = xs[0]
            rg = math.sqrt(float((masses * (x0**2).sum(-1)).sum() / masses.sum()))
            srows.append([wid, f"structures/{wid}.pdb", f"{rg:.6f}"])
            for r in range(n_res):
                rrows.append([wid, r, f"{math.sqrt(float(dev[rid == r].mean())):.6f}"])
    if len(srows) < 2:
        raise ValueError(f"{store_path}: {len(srows)} window(s) of {window} frames; need at least two")
    _write_csv(out / "structures.csv", ["id", "path", "rg"], srows)
    _write_csv(out / "residues.csv", ["id", "residue", "rmsf"], rrows)
    return {"structures_csv": out / "structures.csv", "residues_csv": out / "residues.csv"}
