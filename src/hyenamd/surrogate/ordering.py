"""The canonical sequence order the global convolutions run along.

* Topology order when the system has labels: sort by ``(chain_index, residue_index, atom
  index)`` (stable), i.e. chain by chain, residue by residue, atoms in file order.
* Otherwise a 3-D Hilbert curve (``bits`` per axis, 21 by default: a 63-bit key):
  - periodic systems (a cell and any ``pbc``): over fractional coordinates, wrapped into
    ``[0, 1)`` along periodic axes; a non-periodic axis of a slab/wire uses the bounding box of
    its fractional coordinate;
  - open systems: over the bounding box of the positions, scaled by its longest edge (so the
    grid is isotropic in Å).
  Ties (atoms in one grid cell) are broken by atom index, so the order is deterministic.

Invariances (tested): the order is exactly invariant under periodic re-wrapping (adding
lattice vectors to atoms) and, for open systems, under whole-system translation, up to atoms
lying within floating-point rounding of a grid-cell boundary (a 2⁻²¹ grid: ~1e-10 chance per
atom). Translating a *periodic* system moves atoms across the cell boundary and does change
the order; that is not needed: the order is computed once per system and kept for its whole
trajectory (the engine stores it in ``System.order``), so the energy surface stays smooth.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hyenamd.system import Batch, System

__all__ = ["batch_order", "canonical_order", "hilbert_index", "hilbert_order", "topology_order"]


def hilbert_index(grid: Tensor, bits: int) -> Tensor:
    """Distance along the 3-D Hilbert curve of integer grid cells ``[N, 3]`` in ``[0, 2^bits)``.

    Skilling's transform ("Programming the Hilbert curve", AIP Conf. Proc. 707, 2004):
    axes → transposed Hilbert index by bit-wise exchanges/inversions, Gray decoding, then the
    transposed bits are interleaved (x first). Vectorised over atoms; loops over bits only.
    Returns ``[N]`` int64 in ``[0, 2^(3 bits))``; consecutive indices are face-adjacent cells.
    """
    if not 1 <= bits <= 21:
        raise ValueError(f"hilbert_index: bits must be in 1..21 (3 bits ≤ 63), got {bits}")
    grid = torch.as_tensor(grid)
    if grid.ndim != 2 or grid.shape[1] != 3 or grid.is_floating_point():
        raise ValueError(f"hilbert_index: grid must be integer [N, 3], got {tuple(grid.shape)} {grid.dtype}")
    if grid.numel() and (int(grid.min()) < 0 or int(grid.max()) >= (1 << bits)):
        raise ValueError(f"hilbert_index: grid coordinates must lie in [0, 2^{bits})")
    x = [grid[:, k].to(torch.int64).clone() for k in range(3)]
    m = 1 << (bits - 1)
    q = m
    while q > 1:  # inverse undo
        p = q - 1
        for i in range(3):
            hit = (x[i] & q) != 0
            flip = x[0] ^ p
            t = (x[0] ^ x[i]) & p
            swap0 = x[0] ^ t
            if i == 0:
                x[0] = torch.where(hit, flip, x[0])
            else:
                x[0], x[i] = torch.where(hit, flip, swap0), torch.where(hit, x[i], x[i] ^ t)
        q >>= 1
    for i in range(1, 3):  # Gray encode
        x[i] = x[i] ^ x[i - 1]
    t = torch.zeros_like(x[0])
    q = m
    while q > 1:
        t = torch.where((x[2] & q) != 0, t ^ (q - 1), t)
        q >>= 1
    x = [xi ^ t for xi in x]
    h = torch.zeros_like(x[0])
    for bit in range(bits - 1, -1, -1):  # interleave: most significant bit of x, y, z first
        for i in range(3):
            h = (h << 1) | ((x[i] >> bit) & 1)
    return h


def _grid(u: Tensor, bits: int) -> Tensor:
    """Unit-cube coordinates ``[N, 3]`` in [0, 1] -> integer cells in ``[0, 2^bits)``."""
    n_cells = 1 << bits
    return torch.floor(u * n_cells).clamp(0, n_cells - 1).to(torch.int64)


def _unit_coordinates(system: System) -> Tensor:
    """Coordinates in the unit cube that the Hilbert curve is drawn over (float64)."""
    x = system.positions.detach().to(torch.float64)
    pbc = system.pbc.to(x.device)
    if system.cell is not None and bool(pbc.any()):
        cell = system.cell.detach().to(torch.float64)
        frac = torch.linalg.solve(cell.T, x.T).T  # x = frac @ cell
        wrapped = frac - torch.floor(frac)
        wrapped = torch.where(wrapped >= 1.0, torch.zeros_like(wrapped), wrapped)  # -1e-17 % 1 == 1.0
        lo, hi = frac.min(0).values, frac.max(0).values
        boxed = (frac - lo) / (hi - lo).clamp_min(1e-12)
        return torch.where(pbc, wrapped, boxed)
    lo, hi = x.min(0).values, x.max(0).values
    return (x - lo) / (hi - lo).max().clamp_min(1e-12)


def hilbert_order(system: System, bits: int = 21) -> Tensor:
    """Atoms sorted along a 3-D Hilbert curve ``[N]`` int64 (ties by atom index)."""
    key = hilbert_index(_grid(_unit_coordinates(system), bits), bits)
    return torch.sort(key, stable=True).indices.cpu()


def topology_order(system: System) -> Tensor:
    """Atoms sorted by ``(chain_index, residue_index, atom index)`` ``[N]`` int64 (needs labels)."""
    if system.labels is None:
        raise ValueError("topology_order needs system.labels (residue/chain indices)")
    res = system.labels.residue_index.cpu()
    chain = system.labels.chain_index.cpu()
    order = torch.sort(res, stable=True).indices
    return order[torch.sort(chain[order], stable=True).indices]


def canonical_order(system: System, bits: int = 21) -> Tensor:
    """The canonical order of ``system`` ``[N]`` int64 on the CPU: topology if labelled, else Hilbert."""
    if system.n_atoms == 0:
        return torch.zeros(0, dtype=torch.int64)
    return topology_order(system) if system.labels is not None else hilbert_order(system, bits)


def batch_order(batch: Batch, bits: int = 21) -> Tensor:
    """Canonical orders of every system of ``batch`` in the ``Batch.order`` convention ``[N]``.

    System 0's order, then system 1's plus ``ptr[1]``, ... (global atom indices); on the
    batch's device.
    """
    parts = [canonical_order(batch.system(k), bits) + int(batch.ptr[k]) for k in range(batch.n_systems)]
    return torch.cat(parts).to(batch.positions.device) if parts else torch.zeros(0, dtype=torch.int64)
