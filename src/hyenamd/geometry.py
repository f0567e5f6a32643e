"""Geometry: fractional coordinates, wrapping, minimum image and neighbour lists.

Conventions (ASE's): a cell is ``[3, 3]`` with the lattice vectors as rows, Å; fractional
coordinates ``f`` satisfy ``x = f @ cell``; ``pbc`` is ``[3]`` bool per cell vector. A cell
vector may be zero along a non-periodic axis (a slab or a wire); such axes are completed by
an orthonormal vector wherever an inverse is needed.

Neighbour lists are computed by **vesin** (cell lists in C++) and returned as
:class:`Neighbors`: pairs ``(i, j)`` and integer lattice shifts ``S`` such that the pair
vector is ``r_ij = x_j - x_i + S @ cell`` (the ASE/vesin convention). A pair appears once
per periodic image, so cut-offs longer than half the box are handled.
:func:`brute_force_neighbor_list` is the slow, obviously-correct oracle of the tests.

:class:`VerletList` caches a list built with ``cutoff + skin`` and rebuilds only when some
atom moved more than ``skin / 2`` since the last build. It tracks displacements with the
minimum image, so positions re-wrapped into the cell between calls are not mistaken for
large moves; the lattice shifts are corrected for the re-wrap instead.

All tensor functions here are differentiable in positions and cell and device-agnostic;
the index computation itself runs on the CPU (see :func:`neighbor_list` for CUDA tensors).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from hyenamd.checks import InvalidSystemError, check_neighbor_search

__all__ = [
    "Neighbors",
    "VerletList",
    "batch_neighbor_list",
    "brute_force_neighbor_list",
    "complete_cell",
    "edge_vectors",
    "fractional",
    "index_dtype",
    "minimum_image",
    "neighbor_list",
    "perpendicular_widths",
    "shift_vectors",
    "wrap_positions",
]


# --------------------------------------------------------------------------- cells
def complete_cell(cell: Tensor) -> Tensor:
    """Replace zero cell vectors (non-periodic axes) by orthonormal ones so the cell inverts.

    cell: ``[3, 3]`` Å. Returns ``[3, 3]``; non-zero rows are unchanged.
    """
    norms = cell.detach().norm(dim=1)
    zero = (norms <= 1e-12 * max(float(norms.max()), 1.0)).tolist()
    if not any(zero):
        return cell
    out = cell.clone()
    nz = [k for k in range(3) if not zero[k]]
    if len(nz) == 0:
        return torch.eye(3, dtype=cell.dtype, device=cell.device)
    if len(nz) == 2:
        a, b = cell[nz[0]].detach(), cell[nz[1]].detach()
        z = next(k for k in range(3) if zero[k])
        c = torch.linalg.cross(a, b)
        out[z] = c / c.norm()
        if torch.linalg.det(out) < 0:
            out[z] = -out[z]
        return out
    a = cell[nz[0]].detach()
    a = a / a.norm()
    trial = torch.eye(3, dtype=cell.dtype, device=cell.device)[int(torch.argmin(a.abs()))]
    u = torch.linalg.cross(a, trial)
    u = u / u.norm()
    w = torch.linalg.cross(a, u)
    zs = [k for k in range(3) if zero[k]]
    out[zs[0]], out[zs[1]] = u, w
    if torch.linalg.det(out) < 0:
        out[zs[1]] = -out[zs[1]]
    return out


def perpendicular_widths(cell: Tensor) -> Tensor:
    """Distances between opposite faces of the cell, ``[3]`` Å (volume / face area)."""
    c = complete_cell(cell)
    vol = torch.linalg.det(c).abs()
    areas = torch.stack(
        [
            torch.linalg.cross(c[1], c[2]).norm(),
            torch.linalg.cross(c[2], c[0]).norm(),
            torch.linalg.cross(c[0], c[1]).norm(),
        ]
    )
    return vol / areas


def fractional(positions: Tensor, cell: Tensor) -> Tensor:
    """Fractional coordinates ``f`` with ``positions = f @ cell``; positions ``[..., 3]`` Å."""
    return positions @ torch.linalg.inv(complete_cell(cell))


def wrap_positions(positions: Tensor, cell: Tensor, pbc: Tensor) -> Tensor:
    """Wrap positions ``[n, 3]`` Å into the cell along periodic axes (fractional in [0, 1))."""
    c = complete_cell(cell)
    f = positions @ torch.linalg.inv(c)
    pbc = torch.as_tensor(pbc, dtype=torch.bool, device=positions.device)
    f = torch.where(pbc, f - torch.floor(f), f)
    return f @ c


_IMAGES = torch.tensor(list(itertools.product((-1, 0, 1), repeat=3)), dtype=torch.float64)


def minimum_image(displacements: Tensor, cell: Tensor | None, pbc: Tensor) -> Tensor:
    """Shortest periodic image of displacement vectors ``[..., 3]`` Å (differentiable).

    Orthorhombic and triclinic cells, mixed pbc. The fractional components are first
    reduced to [-0.5, 0.5), then the 27 neighbouring images are searched, which gives the
    true minimum image for any cell that is not pathologically skewed (Niggli-reduced
    cells always qualify). Non-periodic axes are left unchanged.
    """
    if cell is None:
        return displacements
    pbc = torch.as_tensor(pbc, dtype=torch.bool, device=displacements.device)
    if not bool(pbc.any()):
        return displacements
    c = complete_cell(cell)
    f = displacements @ torch.linalg.inv(c)
    f = torch.where(pbc, f - torch.round(f), f)
    reduced = f @ c
    images = _IMAGES.to(displacements) * pbc.to(displacements)
    cand = reduced.unsqueeze(-2) + images @ c  # [..., 27, 3]
    best = cand.detach().pow(2).sum(-1).argmin(-1, keepdim=True)
    return torch.gather(cand, -2, best.unsqueeze(-1).expand(*best.shape, 3)).squeeze(-2)


# --------------------------------------------------------------------------- neighbour lists
@dataclass(frozen=True)
class Neighbors:
    """A neighbour list: pair ``k`` joins atoms ``i[k]`` and ``j[k]`` through lattice shift ``shifts[k]``.

    i, j: ``[n_pairs]`` atom indices (global indices for a batch), int32 as built here while the
    atoms number fewer than 2³¹ (:func:`index_dtype`; int64 is accepted everywhere);
    shifts: ``[n_pairs, 3]`` int32 lattice images; the pair vector is ``x[j] - x[i] + shifts @ cell``.
    20 bytes per pair (40 with int64). Torch's CPU ``index_add_`` runs ~3.7× slower with int32
    indices than with int64 (measured, torch 2.13), so scatter-heavy consumers (the model's local
    blocks) take int64 copies for the duration of one call.
    full: whether each pair appears twice (i→j and j→i).
    """

    i: Tensor
    j: Tensor
    shifts: Tensor
    full: bool = True

    def __len__(self) -> int:
        return int(self.i.shape[0])

    def to(self, device: torch.device | str) -> Neighbors:
        return Neighbors(self.i.to(device), self.j.to(device), self.shifts.to(device), self.full)


def index_dtype(n_atoms: int) -> torch.dtype:
    """The dtype of pair indices for ``n_atoms`` atoms: int32 below 2³¹, else int64."""
    return torch.int32 if n_atoms < 2**31 else torch.int64


def shift_vectors(shifts: Tensor, cell: Tensor, pair_system: Tensor | None = None) -> Tensor:
    """Cartesian lattice offsets ``S @ cell`` of pairs, ``[n_pairs, 3]`` Å (differentiable in cell).

    cell ``[3, 3]``, or ``[n_systems, 3, 3]`` with ``pair_system`` ``[n_pairs]`` (system of each pair).
    """
    s = shifts.to(cell.dtype)
    if cell.ndim == 2:
        return s @ cell
    if cell.shape[0] == 1:
        return s @ cell[0]
    # three [n_pairs, 3] gathers instead of one [n_pairs, 3, 3]
    return sum(s[:, k : k + 1] * cell[:, k, :][pair_system] for k in range(3))


def edge_vectors(positions: Tensor, cell: Tensor, nbrs: Neighbors, batch: Tensor | None = None) -> Tensor:
    """Pair vectors ``r_ij = x_j - x_i + S @ cell``, ``[n_pairs, 3]`` Å (differentiable).

    positions: ``[n_atoms, 3]``; cell: ``[3, 3]`` or, for a batch, ``[n_systems, 3, 3]`` together
    with ``batch`` ``[n_atoms]`` (system index of each atom).
    """
    pair_system = None if cell.ndim == 2 or cell.shape[0] == 1 else batch[nbrs.i]
    return positions[nbrs.j] - positions[nbrs.i] + shift_vectors(nbrs.shifts, cell, pair_system)


def _as_numpy_box(cell: Tensor | None, pbc: Tensor | None) -> tuple[np.ndarray, list[bool]]:
    if cell is None:
        return np.zeros((3, 3)), [False, False, False]
    pb = [False] * 3 if pbc is None else [bool(p) for p in torch.as_tensor(pbc).tolist()]
    return cell.detach().cpu().double().numpy(), pb


def neighbor_list(
    positions: Tensor,
    cell: Tensor | None,
    pbc: Tensor | None,
    cutoff: float,
    *,
    full: bool = True,
) -> Neighbors:
    """All pairs closer than ``cutoff`` Å (vesin cell lists), returned on ``positions.device``.

    positions: ``[n_atoms, 3]`` Å; cell ``[3, 3]`` or None; pbc ``[3]`` bool.
    ``full=True`` lists each pair both ways, ``full=False`` once. Self-pairs appear only as
    periodic images (``i == j`` with a non-zero shift) when the cutoff exceeds a box width.

    On CUDA tensors the list is built by ``vesin.torch`` when that package is installed (and pbc
    is the same on all axes); otherwise positions are copied to the host (one ``[n_atoms, 3]``
    float64 copy, then ``i``, ``j``, ``shifts`` copied back), which is the documented fallback.
    """
    if cutoff <= 0 or not math.isfinite(cutoff):
        raise ValueError(f"cutoff must be a positive finite length in Å, got {cutoff}")
    check_neighbor_search(positions, cell, pbc, cutoff)  # refuses what would crash or hang vesin
    device = positions.device
    if device.type == "cuda":
        nb = _neighbor_list_vesin_torch(positions, cell, pbc, cutoff, full)
        if nb is not None:
            return nb
    import vesin

    box, periodic = _as_numpy_box(cell, pbc)
    pts = positions.detach().cpu().double().numpy()
    calc = vesin.NeighborList(cutoff=float(cutoff), full_list=full)
    i, j, s = calc.compute(points=pts, box=box, periodic=periodic, quantities="ijS", copy=False)
    idt = np.int32 if index_dtype(positions.shape[0]) == torch.int32 else np.int64
    return Neighbors(  # one compact copy each out of vesin's buffers (size_t indices, int32 shifts)
        torch.from_numpy(i.astype(idt)).to(device),
        torch.from_numpy(j.astype(idt)).to(device),
        torch.from_numpy(s.astype(np.int32)).to(device),
        full,
    )


def _neighbor_list_vesin_torch(positions, cell, pbc, cutoff, full) -> Neighbors | None:
    try:
        from vesin.torch import NeighborList as TorchNeighborList  # optional package vesin-torch
    except ImportError:
        return None
    box, periodic = _as_numpy_box(cell, pbc)
    if len(set(periodic)) != 1:
        return None
    box_t = torch.as_tensor(box, dtype=positions.dtype, device=positions.device)
    calc = TorchNeighborList(cutoff=float(cutoff), full_list=full)
    i, j, s = calc.compute(
        points=positions.detach(), box=box_t, periodic=periodic[0], quantities="ijS", copy=True
    )
    idt = index_dtype(positions.shape[0])
    return Neighbors(i.to(idt), j.to(idt), s.to(torch.int32), full)


def batch_neighbor_list(
    positions: Tensor, cell: Tensor, pbc: Tensor, ptr: Tensor, cutoff: float, *, full: bool = True
) -> Neighbors:
    """Neighbour list of a batch: systems never see each other; indices are global.

    positions ``[n_atoms, 3]``; cell ``[n_systems, 3, 3]`` (zeros for no cell); pbc
    ``[n_systems, 3]``; ptr ``[n_systems + 1]`` atom offsets (see :class:`hyenamd.Batch`).
    """
    parts_i, parts_j, parts_s = [], [], []
    ptr_l = ptr.tolist()
    if len(ptr_l) == 2:  # one system: no offsets, no copies
        return neighbor_list(positions, cell[0], pbc[0], cutoff, full=full)
    idt = index_dtype(ptr_l[-1])
    for k in range(len(ptr_l) - 1):
        a, b = ptr_l[k], ptr_l[k + 1]
        nb = neighbor_list(positions[a:b], cell[k], pbc[k], cutoff, full=full)
        parts_i.append(nb.i.to(idt) + a)
        parts_j.append(nb.j.to(idt) + a)
        parts_s.append(nb.shifts)
    return Neighbors(torch.cat(parts_i), torch.cat(parts_j), torch.cat(parts_s), full)


def brute_force_neighbor_list(
    positions: Tensor, cell: Tensor | None, pbc: Tensor | None, cutoff: float
) -> Neighbors:
    """O(n² · images) reference: every pair and lattice image within ``cutoff`` (full list).

    The test oracle for :func:`neighbor_list`; loops over all lattice shifts that can reach
    the cutoff along each periodic axis (``ceil(cutoff / width)`` images each way).
    """
    x = positions.detach().double().cpu()
    n = x.shape[0]
    if cell is None or pbc is None or not bool(torch.as_tensor(pbc).any()):
        ranges = [range(1), range(1), range(1)]
        c = torch.zeros(3, 3, dtype=torch.float64)
    else:
        c = cell.detach().double().cpu()
        widths = perpendicular_widths(c)
        ranges = []
        for ax in range(3):
            m = math.ceil(cutoff / float(widths[ax])) + 1 if bool(pbc[ax]) else 0
            ranges.append(range(-m, m + 1))
    out_i, out_j, out_s = [], [], []
    diff = x[None, :, :] - x[:, None, :]  # [i, j] -> x_j - x_i
    eye = torch.eye(n, dtype=torch.bool)
    for s in itertools.product(*ranges):
        st = torch.tensor(s, dtype=torch.float64)
        d = (diff + st @ c).norm(dim=-1)
        mask = d < cutoff
        if s == (0, 0, 0):
            mask &= ~eye
        ii, jj = mask.nonzero(as_tuple=True)
        out_i.append(ii)
        out_j.append(jj)
        out_s.append(torch.tensor(s, dtype=torch.int64).expand(ii.shape[0], 3))
    return Neighbors(torch.cat(out_i), torch.cat(out_j), torch.cat(out_s), True)


# --------------------------------------------------------------------------- Verlet list
def _system_index(ptr: Tensor) -> Tensor:
    """``[n_atoms]`` system index of each atom from the offsets ``ptr`` ``[n_systems + 1]``."""
    return torch.repeat_interleave(torch.arange(ptr.shape[0] - 1, device=ptr.device), ptr[1:] - ptr[:-1])


class VerletList:
    """A neighbour list with a skin, rebuilt only when needed.

    ``nl = VerletList(cutoff=5.0, skin=1.0)``; ``nbrs = nl(positions, cell, pbc)`` for one
    system, or ``nl(positions, cell, pbc, ptr)`` for a batch (cell ``[n_systems, 3, 3]``).
    The returned pairs are exactly those closer than ``cutoff`` (pairs in the skin are
    filtered out), with shifts valid for the positions passed in.

    With ``exact=False`` the pairs within ``cutoff + skin`` at the last build are returned
    instead (a superset of the pairs within ``cutoff``), which makes a reuse O(n_atoms) when
    nothing was re-wrapped and O(n_pairs) integer work otherwise: the right choice for a model
    whose cutoff envelope vanishes smoothly at ``cutoff`` (G-Hyena's local blocks).

    The list is rebuilt (with ``cutoff + skin``) when any atom moved more than ``skin / 2``
    since the last build, or when the cell, pbc or atom count changed. Moves are measured
    with the minimum image, so a re-wrap of positions into the cell is not a move: the
    shift of pair (i, j) becomes ``S + n_i - n_j`` where ``n`` are the integer lattice
    translations the wrap applied. This requires ``skin / 2`` to stay below half the
    narrowest periodic width, which the constructor cannot know and :meth:`__call__` checks.

    Attributes: ``n_builds`` (rebuilds so far), ``n_calls``.
    """

    def __init__(self, cutoff: float, skin: float = 1.0, *, full: bool = True, exact: bool = True) -> None:
        if cutoff <= 0 or skin < 0:
            raise ValueError(f"need cutoff > 0 and skin >= 0 (Å), got cutoff={cutoff}, skin={skin}")
        self.cutoff = float(cutoff)
        self.skin = float(skin)
        self.full = full
        self.exact = exact
        self.n_builds = 0
        self.n_calls = 0
        self._ref: Tensor | None = None
        self._cell: Tensor | None = None
        self._pbc: Tensor | None = None
        self._ptr: Tensor | None = None
        self._nbrs: Neighbors | None = None
        self._inv: Tensor | None = None

    def reset(self) -> None:
        """Forget the cached list; the next call rebuilds."""
        self._ref = None

    def __call__(
        self, positions: Tensor, cell: Tensor | None, pbc: Tensor | None, ptr: Tensor | None = None
    ) -> Neighbors:
        self.n_calls += 1
        positions = positions.detach()
        n = positions.shape[0]
        dev, dt = positions.device, positions.dtype
        if ptr is None:
            ptr = torch.tensor([0, n], device=dev)
            cell = (
                torch.zeros(1, 3, 3, dtype=dt, device=dev) if cell is None else cell.detach().reshape(1, 3, 3)
            )
            pbc = (
                torch.zeros(1, 3, dtype=torch.bool, device=dev)
                if pbc is None
                else torch.as_tensor(pbc, device=dev).reshape(1, 3)
            )
        else:
            cell, pbc = cell.detach(), torch.as_tensor(pbc, device=dev)
        if self._needs_rebuild(positions, cell, pbc, ptr):
            return self._build(positions, cell, pbc, ptr, _system_index(ptr))
        if cell.shape[0] == 1:
            return self._reuse_one(positions)
        batch = _system_index(ptr)
        # displacement since the build, in fractional coordinates of each system's cell
        d = positions - self._ref
        dfrac = (
            torch.bmm(d.unsqueeze(1), self._inv[batch]).squeeze(1) if cell.shape[0] > 1 else d @ self._inv[0]
        )
        per = pbc[batch]
        wraps = torch.where(per, torch.round(dfrac), torch.zeros_like(dfrac))
        rest = dfrac - wraps
        moved = (
            torch.bmm(rest.unsqueeze(1), self._cell_c[batch]).squeeze(1)
            if cell.shape[0] > 1
            else rest @ self._cell_c[0]
        )
        if self.skin == 0 or float(moved.norm(dim=1).max()) > 0.5 * self.skin:
            return self._build(positions, cell, pbc, ptr, batch, same_box=True)
        nb = self._nbrs
        w = wraps.to(nb.shifts.dtype)
        if not self.exact:
            if not bool(w.any()):
                return nb
            return Neighbors(nb.i, nb.j, nb.shifts + w[nb.i] - w[nb.j], self.full)
        # r_ij = (x_j - W_j) - (x_i - W_i) + S @ cell, with W = wraps @ cell the lattice
        # translation the re-wrap applied to each atom since the build
        wvec = (
            wraps @ self._cell_c[0]
            if cell.shape[0] == 1
            else torch.bmm(wraps.unsqueeze(1), self._cell_c[batch]).squeeze(1)
        )
        xu = positions - wvec
        keep = (xu[nb.j] - xu[nb.i] + self._svec).norm(dim=1) < self.cutoff
        i, j = nb.i[keep], nb.j[keep]
        return Neighbors(i, j, nb.shifts[keep] + w[i] - w[j], self.full)

    def _reuse_one(self, positions: Tensor) -> Neighbors:
        """:meth:`__call__`'s reuse test and list for one system (the same arithmetic as the
        batched path with ``batch = 0``, in about half the torch calls: ~0.1 ms at 108 atoms)."""
        dfrac = (positions - self._ref) @ self._inv[0]
        rounded = torch.round(dfrac)
        wraps = rounded if self._all_pbc else torch.where(self._pbc[0], rounded, torch.zeros_like(dfrac))
        moved = (dfrac - wraps) @ self._cell_c[0]
        if self.skin == 0 or float(moved.norm(dim=1).max()) > 0.5 * self.skin:
            ptr = self._ptr
            return self._build(positions, self._cell, self._pbc, ptr, _system_index(ptr), same_box=True)
        nb = self._nbrs
        if not self._any_pbc:
            w = None  # nothing can have been re-wrapped
        else:
            w = wraps.to(nb.shifts.dtype)
            if not bool(w.any()):
                w = None
        if not self.exact:
            return nb if w is None else Neighbors(nb.i, nb.j, nb.shifts + w[nb.i] - w[nb.j], self.full)
        xu = positions if w is None else positions - wraps @ self._cell_c[0]
        keep = (xu[nb.j] - xu[nb.i] + self._svec).norm(dim=1) < self.cutoff
        i, j = nb.i[keep], nb.j[keep]
        shifts = nb.shifts[keep] if w is None else nb.shifts[keep] + w[i] - w[j]
        return Neighbors(i, j, shifts, self.full)

    def _needs_rebuild(self, positions, cell, pbc, ptr) -> bool:
        return (
            self._ref is None
            or self._ref.shape != positions.shape
            or not torch.equal(self._ptr, ptr)
            or not torch.equal(self._pbc, pbc)
            or not torch.equal(self._cell, cell)
        )

    def _build(self, positions, cell, pbc, ptr, batch, *, same_box: bool = False) -> Neighbors:
        """Build from ``positions``; ``same_box``: cell, pbc and ptr equal the last build's (a
        rebuild because atoms moved), so their checks and derived matrices are kept."""
        self.n_builds += 1
        if not same_box:
            for k in range(cell.shape[0]):
                if bool(pbc[k].any()):
                    widths = perpendicular_widths(cell[k])[pbc[k]]
                    if 0.5 * self.skin >= 0.5 * float(widths.min()):
                        raise InvalidSystemError(
                            f"skin {self.skin} Å is too large for system {k}: skin/2 must stay below half "
                            f"the narrowest periodic cell width ({float(widths.min()):.3f} Å)"
                        )
            self._cell = cell.clone()
            self._pbc = pbc.clone()
            self._all_pbc, self._any_pbc = bool(pbc.all()), bool(pbc.any())
            self._ptr = ptr.clone()
            self._cell_c = torch.stack([complete_cell(c) for c in cell])
            self._inv = torch.linalg.inv(self._cell_c)
        self._ref = positions.clone()
        self._nbrs = batch_neighbor_list(positions, cell, pbc, ptr, self.cutoff + self.skin, full=self.full)
        nb = self._nbrs
        if not self.exact:
            return nb
        self._svec = shift_vectors(nb.shifts, cell, batch[nb.i] if cell.shape[0] > 1 else None)
        keep = (positions[nb.j] - positions[nb.i] + self._svec).norm(dim=1) < self.cutoff
        return Neighbors(nb.i[keep], nb.j[keep], nb.shifts[keep], self.full)
