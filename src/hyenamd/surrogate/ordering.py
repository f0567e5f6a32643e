"""The sequence order the global convolutions run along: one rule per model, one function.

The rule is a property of the model (``GHyenaConfig.ordering``, saved in the checkpoint) and
:func:`canonical_order` ``(system, rule)`` is the one function that turns (rule, system) into
an order; the ASE calculator, the OpenMM force, the engine, Ray workers, training and
validation all call it (through :func:`batch_order` / :func:`order_samples`).

``"topology"``
    Sort by ``(chain_index, residue_index, atom index)`` (stable): chain by chain, residue by
    residue, atoms in file order. Needs ``system.labels``; a system without them raises
    :class:`OrderingError` (never a silent fallback to another rule).
``"hilbert"``
    A 3-D Hilbert curve (``bits`` per axis, 21 by default: a 63-bit key) through coordinates in
    a frame that does not depend on the lab frame, so the order (and hence the energy) of a
    rotated, reflected, translated or re-wrapped copy is the same:

    * periodic axes: fractional coordinates ``f`` about a translation-covariant,
      permutation-invariant origin ``o`` = the circular mean of ``f`` along that axis
      (``arg Σ exp(2πi f) / 2π``); ``u = (f − o + ½) mod 1``. The direction of the axis is
      fixed by the sign of the second circular harmonic ``Σ sin(4π (f − o))`` (then the third),
      so negating a lattice vector (a reflection) gives the same ``u``. Lattice rotations
      leave ``f`` unchanged.
    * open systems (no periodic axis): centroid (unweighted: the order must not change when
      masses are repartitioned) and principal axes of the positions' covariance, largest
      variance first; each axis's sign makes the third moment ``Σ (y·e)³`` positive
      (reflections included). ``u`` = the canonical coordinates over their bounding box,
      scaled by its longest edge. Non-periodic axes of a slab/wire are treated the same way
      along that fractional axis (centre, sign rule, bounding box).
    * fallbacks, in this order, when an invariant vanishes (|value| ≤ 1e-8 of its scale):
      sign rules: third moment → species-weighted first moment ``Σ Z (y·e)`` →
      species-weighted third moment → +1; periodic origin: circular mean of all atoms →
      of each species (fewest atoms first) → the fractional coordinate of atom 0 (a perfect
      lattice: every atom is equivalent, so any choice gives the same energy); degenerate
      covariance (eigenvalues equal within 1e-6 of the trace): inside the degenerate subspace
      the axes follow the atoms farthest from the centroid (stable sort, ties by atom index)
      whose projection is not negligible. For an exactly symmetric system these choices are
      related by a symmetry of the system, so the energy does not depend on them.
    Ties (atoms in one grid cell) are broken by atom index. The grid is shifted by 1/π of a
    cell so that atoms which symmetry puts exactly on a cell boundary (a central atom, a
    perfect lattice) are not split by rounding.

Rounding: rotating a system changes canonical coordinates by ~1e-15 relative; an atom lies
that close to one of the 2²¹ grid-cell boundaries with a chance of ~1e-8, so the order of a
transformed copy is the same except with that chance per atom.

Variants. :func:`order_samples` returns ``K`` deterministic orders (row 0 = the canonical
one; further rows apply axis permutations, reflections and, on periodic axes, offsets to the
canonical coordinates, or for "topology" shuffle identical solvent molecules), which the
adapters average over (``order_samples=K``); :func:`random_order` draws one such order at
random (training augmentation). See ``docs/model.md`` ("Ordering").
"""

from __future__ import annotations

import itertools
import math
from typing import Literal

import torch
from torch import Tensor

from hyenamd.system import Batch, System

__all__ = [
    "ORDERINGS",
    "OrderingError",
    "OrderingRule",
    "batch_order",
    "batch_order_samples",
    "canonical_coordinates",
    "canonical_order",
    "hilbert_index",
    "hilbert_order",
    "model_ordering",
    "order_samples",
    "random_order",
    "topology_order",
]

OrderingRule = Literal["topology", "hilbert"]
ORDERINGS: tuple[str, ...] = ("topology", "hilbert")
_TOL = 1e-8  # relative size below which an odd moment is "zero" (fallback to the next invariant)
_DEGENERATE = 1e-6  # relative eigenvalue gap below which principal axes are degenerate
_GOLDEN = (0.6180339887498949, 0.41421356237309503, 0.7320508075688772)  # offset steps of variants
_PERMS = list(itertools.permutations(range(3)))


class OrderingError(ValueError):
    """A system cannot be ordered by the model's rule (e.g. topology order without residue labels)."""


def _check_rule(rule: str) -> str:
    if rule not in ORDERINGS:
        raise ValueError(f"ordering rule must be 'topology' or 'hilbert', got {rule!r}")
    return rule


def model_ordering(model) -> str | None:
    """The ordering rule of a potential, or None when it needs no order.

    None for potentials that declare ``uses_order = False`` (classical ones) or
    ``needs_order = False`` (a G-Hyena without global blocks), and for modules without a
    ``cfg.ordering`` (they do not run along a sequence).
    """
    if not getattr(model, "uses_order", True) or not getattr(model, "needs_order", True):
        return None
    rule = getattr(getattr(model, "cfg", None), "ordering", None)
    return None if rule is None else _check_rule(rule)


# ---------------------------------------------------------------------- Hilbert curve
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


# ---------------------------------------------------------------------- canonical frame
def _odd_sign(*candidates: tuple[Tensor, Tensor]) -> float:
    """The sign of the first ``(value, scale)`` whose |value| > _TOL · scale; +1 if none."""
    for value, scale in candidates:
        v, s = float(value), float(scale)
        if abs(v) > _TOL * s and s > 0:
            return 1.0 if v > 0 else -1.0
    return 1.0


def _axis_sign(p: Tensor, z: Tensor) -> float:
    """Sign making the projections ``p`` [N] (centred) point the canonical way (module doc)."""
    return _odd_sign(
        ((p**3).sum(), (p.abs() ** 3).sum()),
        ((z * p).sum(), (z * p.abs()).sum()),
        ((z * p**3).sum(), (z * p.abs() ** 3).sum()),
    )


def _principal_axes(y: Tensor) -> Tensor:
    """Principal axes ``[3, 3]`` (columns, largest variance first) of centred positions ``y`` [N, 3].

    Degenerate eigenvalue groups get axes from the atoms farthest from the centroid (module doc).
    """
    cov = y.T @ y / max(y.shape[0], 1)
    evals, evecs = torch.linalg.eigh(cov)
    evals, evecs = evals.flip(0), evecs.flip(1)
    scale = float(evals.abs().sum())
    if scale <= 0:
        return torch.eye(3, dtype=y.dtype)
    groups, start = [], 0
    for k in range(1, 4):
        if k == 3 or float(evals[k - 1] - evals[k]) > _DEGENERATE * scale:
            groups.append((start, k))
            start = k
    axes = evecs.clone()
    far = torch.sort(y.norm(dim=1), descending=True, stable=True).indices
    for a, b in groups:
        if b - a == 1:
            continue
        basis = evecs[:, a:b]  # [3, d] orthonormal basis of the degenerate subspace
        chosen: list[Tensor] = []
        for i in far.tolist():
            r = basis.T @ y[i]  # coordinates in the subspace
            for c in chosen:
                r = r - (r @ c) * c
            if float(r.norm()) > _DEGENERATE * math.sqrt(scale):
                chosen.append(r / r.norm())
                if len(chosen) == b - a - 1:
                    break
        if len(chosen) < b - a - 1:  # every atom at the centroid within the subspace: keep eigh's
            continue
        if b - a == 3:
            chosen.append(torch.linalg.cross(chosen[0], chosen[1]))
        else:
            chosen.append(torch.stack([-chosen[0][1], chosen[0][0]]))
        axes[:, a:b] = basis @ torch.stack(chosen, 1)
    return axes


def _circular_origin(f: Tensor, species: Tensor) -> Tensor:
    """Translation-covariant origin of fractional coordinates ``f`` [N] on a periodic axis."""
    theta = 2 * math.pi * f
    groups = [torch.ones_like(species, dtype=torch.bool)]
    values, counts = torch.unique(species, return_counts=True)
    groups += [species == values[k] for k in torch.argsort(counts, stable=True).tolist()]
    for g in groups:
        c, s = torch.cos(theta[g]).mean(), torch.sin(theta[g]).mean()
        if float(torch.hypot(c, s)) > 1e-6:
            return torch.atan2(s, c) / (2 * math.pi)
    return f[0]


def canonical_coordinates(system: System) -> tuple[Tensor, Tensor]:
    """Frame-independent unit-cube coordinates ``u`` [N, 3] float64 and which axes are periodic [3].

    See the module doc for the frame. Periodic axes of ``u`` lie in ``[0, 1)``; open axes in
    ``[0, 1]`` (the bounding box scaled by its longest edge, for an isotropic grid).
    """
    x = system.positions.detach().to("cpu", torch.float64)
    z = system.species.detach().cpu().to(torch.float64)
    pbc = system.pbc.detach().cpu()
    if system.cell is None or not bool(pbc.any()):
        y = x - x.mean(0)
        axes = _principal_axes(y)
        q = y @ axes
        signs = torch.tensor([_axis_sign(q[:, k], z) for k in range(3)], dtype=torch.float64)
        q = q * signs
        lo, hi = q.min(0).values, q.max(0).values
        return (q - lo) / (hi - lo).max().clamp_min(1e-12), torch.zeros(3, dtype=torch.bool)
    cell = system.cell.detach().to("cpu", torch.float64)
    frac = torch.linalg.solve(cell.T, x.T).T  # x = frac @ cell
    u = torch.empty_like(frac)
    span = []
    for k in range(3):
        f = frac[:, k]
        if bool(pbc[k]):
            d = f - _circular_origin(f, system.species.cpu())
            d = d - torch.round(d)  # in [-1/2, 1/2]
            a = 2 * math.pi * d
            s = _odd_sign(
                (torch.sin(2 * a).sum(), torch.sin(2 * a).abs().sum()),
                (torch.sin(3 * a).sum(), torch.sin(3 * a).abs().sum()),
                ((z * torch.sin(a)).sum(), (z * torch.sin(a).abs()).sum()),
            )
            w = s * d + 0.5
            w = w - torch.floor(w)
            u[:, k] = torch.where(w >= 1.0, torch.zeros_like(w), w)
        else:
            d = f - f.mean()
            d = d * _axis_sign(d, z)
            lo, hi = d.min(), d.max()
            u[:, k] = d - lo
            span.append(float(hi - lo))
    if span:
        open_axes = ~pbc
        u[:, open_axes] = u[:, open_axes] / max(max(span), 1e-12)
    return u, pbc.clone()


def _hilbert_from_unit(u: Tensor, bits: int) -> Tensor:
    """Hilbert order of unit-cube coordinates ``u``, on a grid shifted by 1/π of a cell: atoms that
    symmetry puts exactly on a dyadic boundary (a central atom at u = ½) land inside a cell,
    away from rounding."""
    n = float(1 << bits)
    u = u * (1.0 - 1.0 / n) + (1.0 / math.pi) / n
    key = hilbert_index(_grid(u, bits), bits)
    return torch.sort(key, stable=True).indices


def _transformed(u: Tensor, periodic: Tensor, perm, flips: Tensor, offset: Tensor) -> Tensor:
    """Unit coordinates with axes permuted, reflected (u -> 1 - u) and shifted (periodic axes)."""
    v = torch.where(flips.bool(), 1.0 - u, u)
    v = torch.where(periodic, v + offset, v)
    v = torch.where(periodic, v - torch.floor(v), v)
    v = torch.where(v >= 1.0, torch.zeros_like(v), v)
    return v[:, list(perm)]


def hilbert_order(system: System, bits: int = 21) -> Tensor:
    """Atoms sorted along a 3-D Hilbert curve in the canonical frame, ``[N]`` int64 (ties by index)."""
    u, _ = canonical_coordinates(system)
    return _hilbert_from_unit(u, bits)


# ---------------------------------------------------------------------- topology
def _no_labels(system: System) -> OrderingError:
    return OrderingError(
        f"this model orders atoms by topology (GHyenaConfig.ordering='topology') but the system of "
        f"{system.n_atoms} atoms has no residue information (labels). Give residue labels (ASE: "
        "atoms.arrays['residuenumbers'], as ase.io.read of a PDB sets them; OpenMM: the topology; "
        "stores: labels), or use a model trained with ordering='hilbert'"
    )


def topology_order(system: System) -> Tensor:
    """Atoms sorted by ``(chain_index, residue_index, atom index)`` ``[N]`` int64 (needs labels)."""
    if system.labels is None:
        raise _no_labels(system)
    res = system.labels.residue_index.cpu()
    chain = system.labels.chain_index.cpu()
    order = torch.sort(res, stable=True).indices
    return order[torch.sort(chain[order], stable=True).indices]


def _shuffled_topology(system: System, gen: torch.Generator) -> Tensor:
    """Topology order with identical molecules of homogeneous chains (solvent) shuffled.

    A chain whose residues all have the same residue name and species sequence is taken to
    be a set of identical molecules (a water box); their order within the chain is permuted.
    Chains with different residues (polymers) keep their sequence.
    """
    base = topology_order(system)
    labels = system.labels
    res = labels.residue_index.cpu()[base]
    chain = labels.chain_index.cpu()[base]
    sp = system.species.cpu()[base]
    names = None if labels.residue_names is None else [labels.residue_names[i] for i in base.tolist()]
    out = []
    bounds = torch.nonzero((res[1:] != res[:-1]) | (chain[1:] != chain[:-1])).flatten() + 1
    starts = [0, *bounds.tolist()]
    ends = [*bounds.tolist(), len(base)]
    by_chain: dict[int, list[tuple[int, int]]] = {}
    for a, b in zip(starts, ends):
        by_chain.setdefault(int(chain[a]), []).append((a, b))
    for c in sorted(by_chain):
        segs = by_chain[c]
        kinds = {(tuple(sp[a:b].tolist()), None if names is None else names[a]) for a, b in segs}
        if len(kinds) == 1 and len(segs) > 1:
            segs = [segs[k] for k in torch.randperm(len(segs), generator=gen).tolist()]
        out += [base[a:b] for a, b in segs]
    return torch.cat(out)


# ---------------------------------------------------------------------- the one function
def canonical_order(system: System, rule: str, *, bits: int = 21) -> Tensor:
    """THE order of ``system`` under ``rule`` (``"topology"`` | ``"hilbert"``): ``[N]`` int64 on the CPU.

    ``order[k]`` is the atom at sequence position k. Raises :class:`OrderingError` for
    ``"topology"`` without labels. Every path of hyenamd computes orders through this function.
    """
    _check_rule(rule)
    return topology_order(system) if rule == "topology" else hilbert_order(system, bits)


def order_samples(system: System, rule: str, k: int, *, bits: int = 21) -> Tensor:
    """``k`` deterministic valid orders ``[k, N]`` int64; row 0 is :func:`canonical_order`.

    "hilbert": row j ≥ 1 permutes the canonical axes (``itertools.permutations`` order,
    j mod 6), reflects them (bits of j // 6) and shifts periodic axes by ``j·(0.618, 0.414,
    0.732) mod 1``; all in the canonical frame, so every row is as frame-independent as row 0.
    "topology": row j ≥ 1 shuffles identical solvent molecules with seed j.
    """
    _check_rule(rule)
    if k < 1:
        raise ValueError(f"order samples must be >= 1, got {k}")
    rows = [canonical_order(system, rule, bits=bits)]
    if k == 1:
        return rows[0].unsqueeze(0)
    if rule == "topology":
        rows += [_shuffled_topology(system, torch.Generator().manual_seed(j)) for j in range(1, k)]
        return torch.stack(rows)
    u, periodic = canonical_coordinates(system)
    for j in range(1, k):
        flips = torch.tensor([(j // 6) >> a & 1 for a in range(3)], dtype=torch.bool)
        offset = torch.tensor([(j * g) % 1.0 for g in _GOLDEN], dtype=torch.float64)
        rows.append(_hilbert_from_unit(_transformed(u, periodic, _PERMS[j % 6], flips, offset), bits))
    return torch.stack(rows)


def random_order(system: System, rule: str, generator: torch.Generator, *, bits: int = 21) -> Tensor:
    """A random valid order ``[N]`` (training augmentation), drawn with ``generator`` (CPU).

    "hilbert": a random frame: the canonical coordinates of an open system rotated by a random
    orthogonal matrix (then boxed); periodic axes get a random permutation, reflections and
    offsets. "topology": identical solvent molecules shuffled.
    """
    _check_rule(rule)
    if rule == "topology":
        return _shuffled_topology(system, generator)
    u, periodic = canonical_coordinates(system)
    if not bool(periodic.any()):
        q, r = torch.linalg.qr(torch.randn(3, 3, generator=generator, dtype=torch.float64))
        y = (u - 0.5) @ (q * torch.sign(torch.diagonal(r)))
        lo, hi = y.min(0).values, y.max(0).values
        return _hilbert_from_unit((y - lo) / (hi - lo).max().clamp_min(1e-12), bits)
    perm = _PERMS[int(torch.randint(6, (1,), generator=generator))]
    flips = torch.randint(2, (3,), generator=generator).bool()
    offset = torch.rand(3, generator=generator, dtype=torch.float64)
    return _hilbert_from_unit(_transformed(u, periodic, perm, flips, offset), bits)


def batch_order(batch: Batch, rule: str, *, bits: int = 21) -> Tensor:
    """Orders of every system of ``batch`` in the ``Batch.order`` convention ``[N]`` (batch's device).

    System 0's order, then system 1's plus ``ptr[1]``, ... (global atom indices).
    """
    parts = [
        canonical_order(batch.system(k), rule, bits=bits) + int(batch.ptr[k]) for k in range(batch.n_systems)
    ]
    return torch.cat(parts).to(batch.positions.device) if parts else torch.zeros(0, dtype=torch.int64)


def batch_order_samples(batch: Batch, rule: str, k: int, *, bits: int = 21) -> Tensor:
    """:func:`order_samples` of every system of ``batch``, ``[k, N]`` global indices (batch's device)."""
    parts = [
        order_samples(batch.system(j), rule, k, bits=bits) + int(batch.ptr[j]) for j in range(batch.n_systems)
    ]
    return torch.cat(parts, 1).to(batch.positions.device)
