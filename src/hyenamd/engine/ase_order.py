"""The sequence order carried by ``ase.Atoms``: what the ASE calculator reads and writes.

``atoms.arrays["hyenamd_order"]`` holds, for each atom, its *position in the sequence* (its
rank; ``[N]`` int64, or ``[N, K]`` for K averaged orders) and ``atoms.info["hyenamd_ordering"]``
the rule that made it ("topology" | "hilbert"). Ranks are per-atom values, so the order
survives what ASE does to per-atom arrays: ``atoms.copy()``, ``atoms[perm]`` (the atoms keep
their sequence positions) and ``atoms[mask]`` (the remaining atoms keep their relative
order). A :class:`hyenamd.System`'s ``order`` is the inverse permutation (atom at each
sequence position): ``order = argsort(ranks)``.

The calculator writes the order it used when the atoms carry none, and uses the one they
carry otherwise; it keeps no order itself, so its results are a function of the atoms it is
handed. Atoms whose order was made by another rule raise (delete the array to recompute).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["ORDER_ARRAY", "ORDER_RULE_INFO", "read_orders", "write_orders"]

ORDER_ARRAY = "hyenamd_order"
ORDER_RULE_INFO = "hyenamd_ordering"


def read_orders(atoms, rule: str) -> torch.Tensor | None:
    """The ``[K, N]`` sequence orders stored on ``atoms`` (None when they carry none).

    ValueError when the stored ranks repeat (e.g. after ``atoms.extend`` of atoms without
    them) or were made by a rule other than ``rule``.
    """
    ranks = atoms.arrays.get(ORDER_ARRAY)
    if ranks is None:
        return None
    made_by = atoms.info.get(ORDER_RULE_INFO)
    if made_by is not None and made_by != rule:
        raise ValueError(
            f"these atoms carry a hyenamd sequence order made by the {made_by!r} rule but the model "
            f"uses {rule!r}; delete atoms.arrays[{ORDER_ARRAY!r}] (and atoms.info[{ORDER_RULE_INFO!r}]) "
            "to let the calculator compute its own"
        )
    r = np.asarray(ranks)
    r = r.reshape(len(atoms), -1).T  # [K, N]
    for row in r:
        if len(np.unique(row)) != len(row):
            raise ValueError(
                f"atoms.arrays[{ORDER_ARRAY!r}] has repeated sequence positions (atoms were added "
                "without an order?); delete it to let the calculator compute the order afresh"
            )
    return torch.as_tensor(np.argsort(r, axis=1, kind="stable"), dtype=torch.int64)


def write_orders(atoms, orders: torch.Tensor, rule: str) -> None:
    """Store ``orders`` ``[K, N]`` on ``atoms`` as per-atom ranks (``[N]`` when K = 1) and the rule."""
    o = orders.detach().cpu().numpy().reshape(-1, len(atoms))
    ranks = np.empty_like(o)
    rows = np.arange(o.shape[0])[:, None]
    ranks[rows, o] = np.arange(o.shape[1])[None, :]
    atoms.set_array(ORDER_ARRAY, ranks[0] if ranks.shape[0] == 1 else ranks.T.copy())
    atoms.info[ORDER_RULE_INFO] = rule
