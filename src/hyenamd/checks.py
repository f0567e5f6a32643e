"""Input checks of the data contract: the error type and the checks shared by
:class:`hyenamd.System` and :class:`hyenamd.Labels` (finite values, cell shape and handedness)."""

from __future__ import annotations

import torch
from torch import Tensor

from hyenamd.errors import HyenaError

__all__ = ["InvalidSystemError", "check_finite", "fail", "validate_cell"]


class InvalidSystemError(HyenaError, ValueError):
    """A :class:`System` or :class:`Batch` was given inconsistent or non-physical data."""


def fail(msg: str) -> None:
    raise InvalidSystemError(msg)


def check_finite(name: str, t: Tensor) -> None:
    if not bool(torch.isfinite(t).all()):
        bad = (~torch.isfinite(t)).nonzero()
        first = tuple(bad[0].tolist())
        kind = "NaN" if bool(torch.isnan(t).any()) else "inf"
        fail(f"{name} contains {kind} values ({bad.shape[0]} entries; first at index {first})")


def validate_cell(cell: Tensor, pbc: Tensor) -> None:
    """Check a [3, 3] cell against pbc: no pbc on a zero vector, not singular, right-handed."""
    norms = cell.norm(dim=1)
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
