"""Structural metrics: radial distribution functions, radius of gyration, RMSF.

Pure numpy functions on one frame, plus small accumulators that stream frames in bounded
memory (a trajectory is never held whole).

RDF of species pair (a, b) on bins of width Δr (shell volume ``V_k = 4π/3 (r_{k+1}³ − r_k³)``):

    g_ab(r_k) = n_ab(r_k) / (P_ab · V_k / V),    P_ab = N_a N_b (a ≠ b),  N_a (N_a − 1) / 2 (a = b)

where ``n_ab`` counts unordered pairs at distance in bin k (minimum image, triclinic cells) and V
is the cell volume; an ideal gas gives g = 1 on average. Pairs come from
:func:`hyenamd.geometry.neighbor_list` with cutoff ``r_max`` (never an N² distance matrix); for
large frames the pair search runs slab by slab (:func:`rdf_counts`), so memory stays bounded
by ``chunk_atoms`` atoms' worth of pairs. ``r_max`` must not exceed half the narrowest cell
width (one image per pair).

RMSF of atom i after superposition of each frame onto the first (Kabsch, no reflection):
``RMSF_i = sqrt(<|x_i − <x_i>|²>)`` accumulated as running sums of ``x − x_first`` (float64).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from hyenamd.elements import SYMBOLS
from hyenamd.validate.trajectory import half_width

__all__ = [
    "RDFAccumulator",
    "RMSFAccumulator",
    "kabsch",
    "pair_labels",
    "radius_of_gyration",
    "rdf_counts",
    "rdf_normalise",
    "residue_average",
]


# --------------------------------------------------------------------------- RDF
def pair_labels(type_species: np.ndarray) -> list[str]:
    """Labels ``"O-O"``, ``"H-O"`` of the unordered type pairs, in :func:`_pair_index` order."""
    t = len(type_species)
    return [f"{SYMBOLS[type_species[a]]}-{SYMBOLS[type_species[b]]}" for a in range(t) for b in range(a, t)]


def _pair_index(ti: np.ndarray, tj: np.ndarray, n_types: int) -> np.ndarray:
    """Index of the unordered type pair (min, max) in the upper triangle, row by row."""
    a, b = np.minimum(ti, tj), np.maximum(ti, tj)
    return a * n_types - a * (a - 1) // 2 + (b - a)


def _histogram_pairs(x, i, j, svec, types, n_types, r_max, n_bins, out) -> None:
    d = np.linalg.norm(x[j] - x[i] + svec, axis=1)
    keep = d < r_max
    k = _pair_index(types[i[keep]], types[j[keep]], n_types) * n_bins + (d[keep] * (n_bins / r_max)).astype(
        np.int64
    ).clip(0, n_bins - 1)
    out += np.bincount(k, minlength=out.size).reshape(out.shape)


def _neighbor_pairs(x: np.ndarray, cell: np.ndarray, pbc, r_max: float):
    from hyenamd.geometry import neighbor_list

    nb = neighbor_list(
        torch.from_numpy(x), torch.from_numpy(cell), torch.as_tensor(np.asarray(pbc, bool)), r_max, full=False
    )
    i, j, s = nb.i.numpy(), nb.j.numpy(), nb.shifts.numpy()
    return i, j, s.astype(np.float64) @ cell


def rdf_counts(
    positions: np.ndarray,
    cell: np.ndarray,
    pbc: np.ndarray,
    types: np.ndarray,
    n_types: int,
    r_max: float,
    n_bins: int,
    *,
    chunk_atoms: int = 100_000,
) -> np.ndarray:
    """Pair counts per type pair and distance bin, ``[n_types (n_types + 1) / 2, n_bins]`` int64.

    positions: [n, 3] Å; cell [3, 3] Å (fully periodic); types: [n] int in [0, n_types);
    bins of width ``r_max / n_bins`` from 0. Each unordered pair is counted once.

    Frames with more than ``chunk_atoms`` atoms are cut into slabs along the first cell vector
    (fractional coordinate); each slab's pairs are found with a neighbour list over the slab
    plus a halo of width ``r_max`` (non-periodic along that axis), and a pair is counted by the
    slab holding its lower-index atom, so every pair is counted exactly once.
    """
    pbc = np.asarray(pbc, dtype=bool)
    if cell is None or not pbc.all():
        raise ValueError("the RDF needs a fully periodic cell (pbc on all three axes)")
    hw = half_width(cell, pbc)
    if not 0 < r_max <= hw * (1 + 1e-9):
        raise ValueError(f"RDF r_max={r_max} Å must be positive and at most half the cell width ({hw:.3f} Å)")
    x = np.asarray(positions, dtype=np.float64)
    cell = np.asarray(cell, dtype=np.float64)
    n = len(x)
    out = np.zeros((n_types * (n_types + 1) // 2, n_bins), dtype=np.int64)
    n_slabs = math.ceil(n / chunk_atoms)
    width0 = 2 * half_width(cell, np.array([True, False, False]))
    delta = r_max / width0
    if n_slabs <= 1 or 1.0 / n_slabs + 2 * delta >= 1.0:
        i, j, svec = _neighbor_pairs(x, cell, pbc, r_max)
        _histogram_pairs(x, i, j, svec, types, n_types, r_max, n_bins, out)
        return out
    f = x @ np.linalg.inv(cell)
    f0 = f[:, 0] - np.floor(f[:, 0])
    for s in range(n_slabs):
        lo, hi = s / n_slabs, (s + 1) / n_slabs
        rel = np.mod(f0 - lo + delta, 1.0)  # fractional distance above the halo's lower edge
        idx = np.flatnonzero(rel < hi - lo + 2 * delta)
        fc = f[idx].copy()
        fc[:, 0] = lo - delta + rel[idx]  # the slab and its halo made contiguous along axis 0
        xc = fc @ cell
        i, j, svec = _neighbor_pairs(xc, cell, np.array([False, True, True]), r_max)
        gi, gj = idx[i], idx[j]
        owner = np.minimum(gi, gj)
        mine = (f0[owner] >= lo) & (f0[owner] < hi)
        _histogram_pairs(xc, i[mine], j[mine], svec[mine], types[idx], n_types, r_max, n_bins, out)
    return out


def rdf_normalise(counts: np.ndarray, type_counts: np.ndarray, volume: float, r_max: float) -> np.ndarray:
    """g(r) ``[n_pairs, n_bins]`` from :func:`rdf_counts` (see the module docstring).

    type_counts: [n_types] atoms of each type; volume Å³. Type pairs with no atom pair get NaN.
    """
    n_bins = counts.shape[1]
    edges = np.linspace(0.0, r_max, n_bins + 1)
    shell = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    t = len(type_counts)
    npair = np.array(
        [
            type_counts[a] * (type_counts[a] - 1) / 2 if a == b else type_counts[a] * type_counts[b]
            for a in range(t)
            for b in range(a, t)
        ],
        dtype=np.float64,
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        g = counts / (npair[:, None] * shell[None, :] / volume)
    g[npair == 0] = np.nan
    return g


class RDFAccumulator:
    """Frame-averaged g(r) of every species pair, streamed.

    ``acc = RDFAccumulator(species, r_max, n_bins)``; ``acc.update(positions, cell, pbc)`` per
    frame (volume may change between frames: each frame is normalised by its own volume);
    ``acc.result()`` → ``(r_centres [n_bins] Å, {"O-O": g [n_bins], ...})``.
    """

    def __init__(self, species: np.ndarray, r_max: float, n_bins: int, *, chunk_atoms: int = 100_000):
        self.type_species, self.types = np.unique(np.asarray(species), return_inverse=True)
        self.n_types = len(self.type_species)
        self.type_counts = np.bincount(self.types, minlength=self.n_types)
        self.labels = pair_labels(self.type_species)
        self.r_max, self.n_bins, self.chunk_atoms = float(r_max), int(n_bins), chunk_atoms
        self._sum = np.zeros((len(self.labels), n_bins))
        self.n_frames = 0

    def update(self, positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray) -> None:
        counts = rdf_counts(
            positions,
            cell,
            pbc,
            self.types,
            self.n_types,
            self.r_max,
            self.n_bins,
            chunk_atoms=self.chunk_atoms,
        )
        self._sum += rdf_normalise(counts, self.type_counts, abs(float(np.linalg.det(cell))), self.r_max)
        self.n_frames += 1

    def result(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        dr = self.r_max / self.n_bins
        r = (np.arange(self.n_bins) + 0.5) * dr
        g = self._sum / max(self.n_frames, 1)
        return r, {lab: g[k] for k, lab in enumerate(self.labels) if np.all(np.isfinite(g[k]))}


# --------------------------------------------------------------------------- Rg
def radius_of_gyration(positions: np.ndarray, masses: np.ndarray | None = None) -> float:
    """Mass-weighted radius of gyration, Å, of a whole molecule ``positions`` [n, 3] Å."""
    x = np.asarray(positions, dtype=np.float64)
    w = np.ones(len(x)) if masses is None else np.asarray(masses, dtype=np.float64)
    com = (w[:, None] * x).sum(0) / w.sum()
    return float(np.sqrt((w * ((x - com) ** 2).sum(1)).sum() / w.sum()))


# --------------------------------------------------------------------------- alignment and RMSF
def kabsch(
    mobile: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best rotation of ``mobile`` onto ``target`` (both [n, 3] Å), no reflection.

    Returns ``(R [3, 3], mobile_centre [3], target_centre [3])`` such that
    ``(mobile - mobile_centre) @ R + target_centre`` is the least-squares superposition.
    """
    w = np.ones(len(mobile)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    mc = (w[:, None] * mobile).sum(0)
    tc = (w[:, None] * target).sum(0)
    h = (mobile - mc).T @ (w[:, None] * (target - tc))
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(u @ vt)) or 1.0
    rot = u @ np.diag([1.0, 1.0, d]) @ vt
    return rot, mc, tc


class RMSFAccumulator:
    """Per-atom RMSF (Å) of ``n`` atoms over a stream of frames, optionally after alignment.

    ``update(x)`` takes the selected atoms' positions [n, 3] Å, unwrapped in time and whole;
    when ``align_index`` (indices into those n atoms) is given, each frame is first superposed
    onto the first frame's ``align_index`` atoms. Memory: three [n, 3] arrays.
    """

    def __init__(self, n_atoms: int, align_index: np.ndarray | None = None) -> None:
        self.n_atoms = n_atoms
        self.align_index = None if align_index is None or len(align_index) < 3 else np.asarray(align_index)
        self._first: np.ndarray | None = None
        self._sum = np.zeros((n_atoms, 3))
        self._sum2 = np.zeros(n_atoms)
        self.n_frames = 0

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64)
        if x.shape != (self.n_atoms, 3):
            raise ValueError(f"RMSF frame has shape {x.shape}, expected ({self.n_atoms}, 3)")
        if self._first is None:
            self._first = x.copy()
        elif self.align_index is not None:
            a = self.align_index
            rot, mc, tc = kabsch(x[a], self._first[a])
            x = (x - mc) @ rot + tc
        d = x - self._first
        self._sum += d
        self._sum2 += (d**2).sum(1)
        self.n_frames += 1

    def result(self) -> np.ndarray:
        """RMSF [n_atoms] Å."""
        if self.n_frames == 0:
            return np.full(self.n_atoms, np.nan)
        mean = self._sum / self.n_frames
        return np.sqrt(np.clip(self._sum2 / self.n_frames - (mean**2).sum(1), 0.0, None))


def residue_average(values: np.ndarray, residue_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean of per-atom ``values`` [n] over the atoms of each residue; ``(residue ids, means)``."""
    ids, inv = np.unique(np.asarray(residue_index), return_inverse=True)
    sums = np.bincount(inv, weights=values, minlength=len(ids))
    return ids, sums / np.bincount(inv, minlength=len(ids))
