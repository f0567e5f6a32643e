"""Backbone torsions (φ, ψ), their histograms, and the Jensen–Shannon divergence.

Dihedral of four points p0-p1-p2-p3 (IUPAC/IUB 1970 convention, the one MDAnalysis, MDTraj
and OpenMM use), with ``b1 = p1 − p0``, ``b2 = p2 − p1``, ``b3 = p3 − p2``:

    φ = atan2( |b2| b1 · (b2 × b3),  (b1 × b2) · (b2 × b3) )      in (−180°, 180°]

0° is cis (eclipsed), ±180° trans; positive when, looking along p1 → p2, the far bond p2-p3
is rotated clockwise from the near bond p1-p0. Bond vectors use the minimum image, so
molecules split by periodic wrapping are handled.

Backbone torsions of residue k (same chain): φ_k = C(k−1)-N(k)-CA(k)-C(k),
ψ_k = N(k)-CA(k)-C(k)-N(k+1); atoms are found by name (N, CA, C) in the labels.

Jensen–Shannon divergence (base 2, in [0, 1]) of histograms p, q (normalised first):
``JS = ½ KL(p ‖ m) + ½ KL(q ‖ m)``, ``m = (p + q) / 2``.
"""

from __future__ import annotations

import numpy as np

from hyenamd.system import Labels
from hyenamd.validate.trajectory import SOLVENT_RESIDUES, mic

__all__ = ["TorsionAccumulator", "backbone_torsion_indices", "dihedral", "jensen_shannon"]


def dihedral(
    p0: np.ndarray,
    p1: np.ndarray,
    p2: np.ndarray,
    p3: np.ndarray,
    cell: np.ndarray | None = None,
    pbc: np.ndarray | None = None,
) -> np.ndarray:
    """Dihedral angles in degrees, (−180, 180], of points ``[..., 3]`` Å (see module docstring)."""
    pb = np.zeros(3, bool) if pbc is None else np.asarray(pbc, bool)
    b1 = mic(np.asarray(p1, float) - p0, cell, pb)
    b2 = mic(np.asarray(p2, float) - p1, cell, pb)
    b3 = mic(np.asarray(p3, float) - p2, cell, pb)
    n1 = np.cross(b1, b2)
    n2 = np.cross(b2, b3)
    y = np.linalg.norm(b2, axis=-1) * (b1 * n2).sum(-1)
    x = (n1 * n2).sum(-1)
    return np.degrees(np.arctan2(y, x))


def backbone_torsion_indices(labels: Labels | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Atom quadruples of the φ and ψ torsions of every residue that has both.

    Returns ``(phi [R, 4], psi [R, 4], residue_index [R])`` int64 (R may be 0: no labels, no
    atom names, no peptide). Residues are those of non-solvent residue names with atoms named
    N, CA and C; neighbours must be consecutive residues of the same chain.
    """
    empty = np.zeros((0, 4), np.int64), np.zeros((0, 4), np.int64), np.zeros(0, np.int64)
    if labels is None or labels.atom_names is None:
        return empty
    res = labels.residue_index.numpy()
    chain = labels.chain_index.numpy()
    resname = labels.residue_names
    atoms: dict[tuple[int, int], dict[str, int]] = {}
    for k, name in enumerate(labels.atom_names):
        if name.upper() in ("N", "CA", "C") and (
            resname is None or resname[k].upper() not in SOLVENT_RESIDUES
        ):
            atoms.setdefault((int(chain[k]), int(res[k])), {})[name.upper()] = k
    phi, psi, ids = [], [], []
    for (c, r), a in sorted(atoms.items()):
        prev, nxt = atoms.get((c, r - 1), {}), atoms.get((c, r + 1), {})
        if not all(n in a for n in ("N", "CA", "C")) or "C" not in prev or "N" not in nxt:
            continue
        phi.append([prev["C"], a["N"], a["CA"], a["C"]])
        psi.append([a["N"], a["CA"], a["C"], nxt["N"]])
        ids.append(r)
    if not ids:
        return empty
    return np.array(phi, np.int64), np.array(psi, np.int64), np.array(ids, np.int64)


class TorsionAccumulator:
    """Ramachandran histograms (2-D φ/ψ and 1-D φ, ψ) of all residues over a frame stream.

    ``n_bins`` bins per angle over [−180°, 180°). ``update(positions, cell, pbc)`` per frame;
    ``result()`` → dict with ``edges`` [n_bins + 1] degrees, ``rama`` [n_bins, n_bins] counts
    (φ along axis 0), ``phi`` and ``psi`` [n_bins] counts, ``n_residues``, ``n_frames``.
    """

    def __init__(self, labels: Labels | None, n_bins: int = 36) -> None:
        self.phi_idx, self.psi_idx, self.residues = backbone_torsion_indices(labels)
        self.n_bins = int(n_bins)
        self.edges = np.linspace(-180.0, 180.0, self.n_bins + 1)
        self._rama = np.zeros((self.n_bins, self.n_bins), np.int64)
        self.n_frames = 0

    @property
    def n_residues(self) -> int:
        return len(self.residues)

    def _bin(self, angle: np.ndarray) -> np.ndarray:
        return (np.floor((angle + 180.0) * self.n_bins / 360.0).astype(np.int64)) % self.n_bins

    def update(self, positions: np.ndarray, cell: np.ndarray | None, pbc: np.ndarray) -> None:
        if self.n_residues == 0:
            return
        x = positions
        phi = dihedral(*(x[self.phi_idx[:, k]] for k in range(4)), cell, pbc)
        psi = dihedral(*(x[self.psi_idx[:, k]] for k in range(4)), cell, pbc)
        ok = np.isfinite(phi) & np.isfinite(psi)
        flat = self._bin(phi[ok]) * self.n_bins + self._bin(psi[ok])
        self._rama += np.bincount(flat, minlength=self.n_bins**2).reshape(self.n_bins, self.n_bins)
        self.n_frames += 1

    def result(self) -> dict[str, object]:
        return {
            "edges": self.edges,
            "rama": self._rama.copy(),
            "phi": self._rama.sum(1),
            "psi": self._rama.sum(0),
            "n_residues": self.n_residues,
            "n_frames": self.n_frames,
        }


def jensen_shannon(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen–Shannon divergence (base 2, in [0, 1]) of two histograms of the same shape."""
    p = np.asarray(p, dtype=np.float64).ravel()
    q = np.asarray(q, dtype=np.float64).ravel()
    if p.shape != q.shape:
        raise ValueError(f"histograms differ in shape: {p.shape} vs {q.shape}")
    if p.sum() <= 0 or q.sum() <= 0 or (p < 0).any() or (q < 0).any():
        raise ValueError("histograms must be non-negative with a positive total")
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float((a[nz] * np.log2(a[nz] / m[nz])).sum())

    return max(0.0, 0.5 * kl(p) + 0.5 * kl(q))
