"""Stability: time to blow-up, bond-length excursions and hydrogen detachment.

* **Blow-up**: the first frame with non-finite positions/velocities or a temperature above a
  limit (:func:`blowup_reason`); the surrogate's "time to blow-up" is that frame's time
  measured from the first frame (infinite when none is found).
* **Bonds** are inferred once, from the *reference's* first frame: atoms i, j are bonded when
  ``d_ij < factor · (r_i + r_j)`` with covalent radii r (Cordero et al., Dalton Trans. 2008,
  the table ASE uses) and ``factor = 1.2`` by default (O–H 0.96 Å bonded; water's H···H
  1.51 Å and hydrogen bonds ~1.8 Å not). A bond makes an **excursion** in a frame when its
  length differs from its first-frame length by more than ``threshold`` (0.5 Å).
* **H detachment**: a hydrogen that was bonded in the first frame and has no heavy atom X
  within ``detach_factor · (r_H + r_X)`` in a later frame (``detach_factor = 1.5``: 1.46 Å for
  O–H, 1.61 Å for C–H, so a stretch by the excursion limit is not yet a detachment, and a
  proton sitting at a hydrogen-bond distance of ~1.8 Å from every heavy atom is).

All distances use the minimum image (bonds are far shorter than half a box); the pair search
uses :func:`hyenamd.geometry.neighbor_list`, O(n_atoms) memory.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from hyenamd.validate.trajectory import mic

__all__ = ["BondMonitor", "blowup_reason", "bond_lengths", "infer_bonds"]


def _radii(species: np.ndarray) -> np.ndarray:
    """Covalent radii (Å) from ASE's maintained table (Cordero et al. 2008; ``ase.data``)."""
    from ase.data import covalent_radii

    return np.asarray(covalent_radii, dtype=np.float64)[np.asarray(species, dtype=np.int64)]


def _pairs(positions: np.ndarray, cell: np.ndarray | None, pbc: np.ndarray, cutoff: float):
    """Unordered pairs closer than ``cutoff`` (i, j, distance)."""
    from hyenamd.geometry import neighbor_list

    pb = np.asarray(pbc, dtype=bool)
    cell_t = None if cell is None or not pb.any() else torch.from_numpy(np.asarray(cell, np.float64))
    nb = neighbor_list(
        torch.from_numpy(np.asarray(positions, np.float64)), cell_t, torch.from_numpy(pb), cutoff, full=False
    )
    i, j = nb.i.numpy(), nb.j.numpy()
    svec = 0.0 if cell_t is None else nb.shifts.numpy().astype(np.float64) @ np.asarray(cell, np.float64)
    d = np.linalg.norm(positions[j] - positions[i] + svec, axis=1)
    return i, j, d


def infer_bonds(
    positions: np.ndarray,
    species: np.ndarray,
    cell: np.ndarray | None,
    pbc: np.ndarray,
    factor: float = 1.2,
) -> tuple[np.ndarray, np.ndarray]:
    """Bonds from distances and covalent radii: ``(bonds [n_bonds, 2] int64 with i < j, lengths [n_bonds] Å)``."""
    if factor <= 0:
        raise ValueError(f"bond factor must be positive, got {factor}")
    x = np.asarray(positions, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError("cannot infer bonds from a frame with non-finite positions")
    r = _radii(species)
    if len(x) < 2:
        return np.zeros((0, 2), np.int64), np.zeros(0)
    cutoff = factor * 2 * float(r.max())
    i, j, d = _pairs(x, cell, pbc, cutoff)
    keep = (d < factor * (r[i] + r[j])) & (i != j)
    a, b = np.minimum(i[keep], j[keep]), np.maximum(i[keep], j[keep])
    order = np.lexsort((b, a))
    return np.stack([a[order], b[order]], 1).astype(np.int64), d[keep][order]


def bond_lengths(
    positions: np.ndarray, bonds: np.ndarray, cell: np.ndarray | None, pbc: np.ndarray
) -> np.ndarray:
    """Lengths [n_bonds] Å of ``bonds`` [n_bonds, 2] in one frame (minimum image)."""
    d = mic(positions[bonds[:, 1]] - positions[bonds[:, 0]], cell, np.asarray(pbc, bool))
    return np.linalg.norm(d, axis=1)


def blowup_reason(
    positions: np.ndarray,
    velocities: np.ndarray | None = None,
    temperature: float | None = None,
    max_temperature: float = math.inf,
) -> str | None:
    """Why a frame counts as blown up (``None`` if it does not): non-finite data or temperature."""
    if not np.all(np.isfinite(positions)):
        return "non-finite positions"
    if velocities is not None and not np.all(np.isfinite(velocities)):
        return "non-finite velocities"
    if temperature is not None and not np.isfinite(temperature):
        return "non-finite temperature"
    if temperature is not None and temperature > max_temperature:
        return f"temperature {temperature:.0f} K above {max_temperature:.0f} K"
    return None


class BondMonitor:
    """Streams bond-length excursions and hydrogen detachment over frames.

    bonds [n_bonds, 2], lengths0 [n_bonds] Å (from :func:`infer_bonds` on the reference's first
    frame), species [n_atoms]. ``update(positions, cell, pbc, time)`` per frame; ``result()``
    → dict (see :meth:`result`).
    """

    def __init__(
        self,
        bonds: np.ndarray,
        lengths0: np.ndarray,
        species: np.ndarray,
        *,
        threshold: float = 0.5,
        detach_factor: float = 1.5,
    ) -> None:
        self.bonds = np.asarray(bonds, dtype=np.int64).reshape(-1, 2)
        self.lengths0 = np.asarray(lengths0, dtype=np.float64)
        self.species = np.asarray(species, dtype=np.int64)
        self.threshold, self.detach_factor = float(threshold), float(detach_factor)
        r = _radii(self.species)
        self._bond_cut = detach_factor * (r[self.bonds[:, 0]] + r[self.bonds[:, 1]])
        # hydrogens bonded to a heavy atom in the first frame
        h_in_bond = []
        for col, other in ((0, 1), (1, 0)):
            is_h = (self.species[self.bonds[:, col]] == 1) & (self.species[self.bonds[:, other]] != 1)
            h_in_bond.append(self.bonds[is_h, col])
        self.hydrogens = np.unique(np.concatenate(h_in_bond)) if self.bonds.size else np.zeros(0, np.int64)
        self._ever = np.zeros(len(self.bonds), bool)
        self.max_excursion = 0.0
        self.first_excursion_time = math.inf
        self.first_detach_time = math.inf
        self.max_detached = 0
        self.excursions_per_frame: list[int] = []
        self.detached_per_frame: list[int] = []
        self.times: list[float] = []

    def _detached(self, x: np.ndarray, cell, pbc, lengths: np.ndarray) -> int:
        if len(self.hydrogens) == 0:
            return 0
        # quick test: hydrogens with at least one first-frame partner still within reach
        ok_bond = lengths < self._bond_cut
        attached = np.zeros(len(self.species), bool)
        attached[self.bonds[ok_bond, 0]] = True
        attached[self.bonds[ok_bond, 1]] = True
        suspects = self.hydrogens[~attached[self.hydrogens]]
        if len(suspects) == 0:
            return 0
        # full check: any heavy atom within reach of a suspect (new partners count)
        r = _radii(self.species)
        i, j, d = _pairs(x, cell, pbc, self.detach_factor * (r[1] + float(r.max())))
        bonded = d < self.detach_factor * (r[i] + r[j])
        heavy_i, heavy_j = self.species[i] != 1, self.species[j] != 1
        has = np.zeros(len(self.species), bool)
        has[i[bonded & heavy_j]] = True
        has[j[bonded & heavy_i]] = True
        return int((~has[suspects]).sum())

    def update(self, positions: np.ndarray, cell: np.ndarray | None, pbc: np.ndarray, time: float) -> None:
        x = np.asarray(positions, dtype=np.float64)
        lengths = bond_lengths(x, self.bonds, cell, pbc) if len(self.bonds) else np.zeros(0)
        exc = np.abs(lengths - self.lengths0)
        over = exc > self.threshold
        self._ever |= over
        if len(exc):
            self.max_excursion = max(self.max_excursion, float(exc.max()))
        if over.any():
            self.first_excursion_time = min(self.first_excursion_time, time)
        n_det = self._detached(x, cell, pbc, lengths)
        if n_det:
            self.first_detach_time = min(self.first_detach_time, time)
        self.max_detached = max(self.max_detached, n_det)
        self.excursions_per_frame.append(int(over.sum()))
        self.detached_per_frame.append(n_det)
        self.times.append(float(time))

    def result(self) -> dict[str, object]:
        """n_bonds, broken_bonds (bonds that ever made an excursion), broken_fraction,
        max_excursion Å, first_excursion_time fs, n_hydrogens, max_detached_h,
        first_detach_time fs, and per-frame series (times, excursions, detached)."""
        n = len(self.bonds)
        return {
            "n_bonds": n,
            "broken_bonds": int(self._ever.sum()),
            "broken_fraction": float(self._ever.sum() / n) if n else 0.0,
            "max_excursion": self.max_excursion,
            "first_excursion_time": self.first_excursion_time,
            "n_hydrogens": len(self.hydrogens),
            "max_detached_h": self.max_detached,
            "first_detach_time": self.first_detach_time,
            "times": np.array(self.times),
            "excursions": np.array(self.excursions_per_frame),
            "detached": np.array(self.detached_per_frame),
        }
