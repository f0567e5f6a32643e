"""Input checks of the data contract: the error type and the checks shared by
:class:`hyenamd.System` and :class:`hyenamd.Labels` (finite values, cell shape and handedness)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from hyenamd.errors import HyenaError

__all__ = [
    "MAX_COORDINATE",
    "InvalidSystemError",
    "as_numeric_tensor",
    "check_bounded",
    "check_finite",
    "check_neighbor_search",
    "fail",
    "validate_cell",
]

#: largest |coordinate| (Å) a System accepts: 10 µm, far beyond any simulation box, well below
#: what makes cell-list neighbour searches overflow (vesin dies with SIGFPE at ~1e6 Å).
MAX_COORDINATE = 1.0e5


class InvalidSystemError(HyenaError, ValueError):
    """A :class:`System` or :class:`Batch` was given inconsistent or non-physical data."""


def fail(msg: str) -> None:
    raise InvalidSystemError(msg)


def as_numeric_tensor(name: str, value, *, device=None, allow_bool: bool = False) -> Tensor:
    """``torch.as_tensor(value)`` for a numeric field, or :class:`InvalidSystemError` naming ``name``.

    Refuses None, strings, ragged or object data, complex numbers and (unless ``allow_bool``)
    booleans: they would otherwise be cast silently (complex drops the imaginary part).
    """
    if value is None:
        fail(f"{name} is None; give an array of numbers")
    if isinstance(value, str | bytes):
        fail(f"{name} must be an array of numbers, got a string {value[:40]!r}")
    try:
        t = torch.as_tensor(value, device=device)
    except (TypeError, ValueError, RuntimeError, OverflowError) as e:
        fail(f"{name} must be an array of numbers, got {type(value).__name__} ({' '.join(str(e).split())})")
    if t.is_complex():
        fail(f"{name} must be real numbers, got complex dtype {t.dtype}")
    if t.dtype == torch.bool and not allow_bool:
        fail(f"{name} must be numbers, got booleans")
    return t


def check_bounded(name: str, t: Tensor, bound: float = MAX_COORDINATE) -> None:
    """Refuse coordinates with ``|x| > bound`` Å (finite but beyond any simulation box)."""
    big = t.abs() > bound
    if bool(big.any()):
        first = tuple(big.nonzero()[0].tolist())
        fail(
            f"{name} has values beyond ±{bound:g} Å (first at index {first}: {float(t[first]):.6g}); "
            "coordinates this large are a units or data error (neighbour searches cannot handle them)"
        )


def check_finite(name: str, t: Tensor) -> None:
    if not bool(torch.isfinite(t).all()):
        bad = (~torch.isfinite(t)).nonzero()
        first = tuple(bad[0].tolist())
        kind = "NaN" if bool(torch.isnan(t).any()) else "inf"
        fail(f"{name} contains {kind} values ({bad.shape[0]} entries; first at index {first})")


def validate_cell(cell: Tensor, pbc: Tensor) -> None:
    """Check a [3, 3] cell against pbc: no pbc on a zero vector, not singular, right-handed."""
    norms = cell.detach().norm(dim=1)
    scale = float(norms.max()) if norms.numel() else 0.0
    zero = norms <= 1e-12 * max(scale, 1.0)
    for ax in range(3):
        if bool(pbc[ax]) and bool(zero[ax]):
            fail(
                f"pbc is True along axis {ax} but cell vector {ax} is zero; give a cell vector or set pbc False"
            )
    nonzero = cell[~zero]
    if nonzero.shape[0] == 0:
        return
    rank = int(torch.linalg.matrix_rank(nonzero.double(), rtol=1e-10))
    if rank < nonzero.shape[0]:
        fail(f"cell is singular: its non-zero vectors are linearly dependent (rank {rank}):\n{cell.tolist()}")
    if nonzero.shape[0] == 3:
        det = float(torch.linalg.det(cell.double()))
        if det < 0:
            fail(
                f"cell is left-handed (det = {det:.6g} Å³); reorder or negate a lattice vector "
                "so that det(cell) > 0"
            )


#: neighbour-search limits (see :func:`check_neighbor_search`)
MAX_EXTENT_PER_CUTOFF = 5.0e4  # open extent / cutoff: vesin's cell grid overflows (SIGFPE) near 2e5
MAX_IMAGES = 100_000  # periodic images searched per atom: 47^3, a cell ~23x narrower than the cutoff
MAX_PAIRS = 500_000_000  # expected pairs (~20 GB of indices and shifts)


def check_neighbor_search(positions: Tensor, cell: Tensor | None, pbc: Tensor | None, cutoff: float) -> None:
    """Refuse a neighbour search that would crash, hang or exhaust memory, before it starts.

    positions ``[n, 3]`` Å (finite), cell ``[3, 3]`` Å or None, pbc ``[3]``, cutoff Å. Refused:
    non-finite positions; an open extent above ``MAX_EXTENT_PER_CUTOFF`` cutoffs; a periodic
    cell so narrow (relative to the cutoff) that more than ``MAX_IMAGES`` images of each atom
    would be searched, or so dense that more than ``MAX_PAIRS`` pairs are expected. The messages
    name the cell width, the cutoff and what to change.
    """
    check_finite("positions", positions)
    n = int(positions.shape[0])
    periodic = [False] * 3 if (pbc is None or cell is None) else [bool(p) for p in pbc.tolist()]
    if n and not all(periodic):
        extent = float((positions.detach().amax(0) - positions.detach().amin(0)).max())
        if extent > MAX_EXTENT_PER_CUTOFF * cutoff:
            fail(
                f"the atoms span {extent:.6g} Å, more than {MAX_EXTENT_PER_CUTOFF:g} cutoffs "
                f"({cutoff:g} Å): the neighbour search cannot grid such a system (an atom far away?)"
            )
    if not any(periodic):
        return
    from hyenamd.geometry import perpendicular_widths

    widths = perpendicular_widths(cell.detach().double()).tolist()
    images = 1
    for ax in range(3):
        if periodic[ax]:
            images *= 2 * math.ceil(cutoff / max(widths[ax], 1e-300)) + 1
    if images > MAX_IMAGES:
        ax = min((w, a) for a, w in enumerate(widths) if periodic[a])[1]
        fail(
            f"periodic cell too narrow for the cutoff: width {widths[ax]:.3g} Å along cell vector {ax} "
            f"with a cutoff of {cutoff:g} Å would search {images:.3g} images of every atom; "
            "use a larger cell (replicate it) or a smaller cutoff"
        )
    if not all(periodic):
        return  # the density estimate below needs a closed volume
    volume = abs(float(torch.linalg.det(cell.detach().double())))
    pairs = n * n * (4.0 / 3.0 * math.pi * cutoff**3) / max(volume, 1e-300)
    if pairs > MAX_PAIRS:
        fail(
            f"{n} atoms in a periodic cell of {volume:.3g} Å³ with a cutoff of {cutoff:g} Å give "
            f"~{pairs:.3g} neighbour pairs (limit {MAX_PAIRS:.0e}); the cell is far too dense or too small"
        )
