"""The members of a committee evaluated together: ``torch.func.vmap`` over stacked parameters.

Members that share an architecture (same type and config up to the initialisation seed,
:attr:`~hyenamd.engine.committee.Committee.same_config`) differ only in their weights. Their
parameters and buffers are stacked along a leading member axis ``K``
(``torch.stack`` per tensor: the stacked tensors stay differentiable in each member's own
parameters) and one member's module runs on all of them through
``torch.func.functional_call`` under ``torch.func.vmap``: one forward pass whose every
per-atom and per-pair tensor carries the member axis, sharing one neighbour list and one
sequence order (both computed once, before the members run).

Forces ``F_k = -∂E_k/∂x``. Each member gets its own view of the positions: a leaf
``x`` ``[K, N, 3]`` (every row the batch's positions) mapped over the member axis, so one
backward pass of ``Σ_k E_k`` gives every member's forces at once (member ``k``'s energy
depends on row ``k`` only). Stress likewise through a strain ``ε`` ``[K, S, 3, 3]`` applied as
in :func:`hyenamd.surrogate.compute_forces`: ``x -> x (1 + sym ε)``, ``cell -> cell (1 + sym ε)``,
``σ = (1/V) ∂E/∂ε`` (zero for systems without a 3-D cell).

The loop over members (:func:`hyenamd.engine.committee.loop_statistics`) stays as the O(K)
reference; the tests check that both agree to float64 rounding.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from hyenamd.geometry import Neighbors
from hyenamd.surrogate.memory_policy import AUTO_MIN_ATOMS
from hyenamd.system import Batch

__all__ = ["StackedMembers", "shared_inputs", "vmap_energies", "vmap_fits", "vmap_statistics"]


class StackedMembers:
    """Parameters and buffers of ``K`` same-architecture modules stacked on a leading axis.

    ``state(grad)`` returns ``(params, buffers)`` dicts of ``[K, ...]`` tensors. Without
    gradients the stacked copies are cached and rebuilt only when a member's tensor changes
    (storage pointer or version counter, which optimiser steps and ``load_state_dict`` bump);
    with gradients (training a committee) they are stacked afresh so autograd reaches every
    member's own parameters.
    """

    def __init__(self, models: Sequence[nn.Module]) -> None:
        self.models = list(models)
        self._key: tuple | None = None
        self._state: tuple[dict[str, Tensor], dict[str, Tensor]] | None = None

    def _tensors(self):
        for m in self.models:
            yield from m.parameters()
            yield from m.buffers()

    def state(self, grad: bool) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """``(params, buffers)``: name -> ``[K, ...]`` stacked tensor (see the class doc)."""
        if grad:
            return self._stack(detach=False)
        key = tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in self._tensors())
        if key != self._key or self._state is None:
            self._state, self._key = self._stack(detach=True), key
        return self._state

    def _stack(self, detach: bool) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        per_member = [
            (dict(m.named_parameters()), dict(m.named_buffers())) for m in self.models
        ]  # fmt: skip
        params, buffers = per_member[0]
        out_p = {
            n: torch.stack([(pm[n].detach() if detach else pm[n]) for pm, _ in per_member]) for n in params
        }
        out_b = {n: torch.stack([bm[n] for _, bm in per_member]) for n in buffers}
        return out_p, out_b


def shared_inputs(model: nn.Module, batch: Batch, neighbors: Neighbors | None) -> tuple[Batch, Neighbors]:
    """Check the input once and build what every member shares: the order and the neighbour list.

    ``model``: one member (all share its config). Raises ValueError for unknown species before
    any other work. Returns the batch with its sequence order set (when the model needs one)
    and the neighbour list (``neighbors`` when given, else built for the model's cutoff).
    """
    model.check_species(batch.species)  # one config for all members: one check, before any work
    if batch.order is None:
        from hyenamd.engine.integrators import canonical_order

        order = canonical_order(model, batch)
        batch = batch if order is None else batch.replace(order=order)
    if neighbors is None:
        from hyenamd.surrogate.model import batch_neighbor_list

        neighbors = batch_neighbor_list(batch.positions, batch.cell, batch.pbc, batch.ptr, model.cutoff)
    return batch, neighbors


def vmap_fits(model: nn.Module, batch: Batch, neighbors: Neighbors) -> bool:
    """Whether the members may run under vmap on this input: not when gradients are recorded
    and the model would use activation checkpointing (its per-block checkpoints for batches of
    ``checkpoint_atoms`` atoms or more, or the local blocks' chunks of more than ``pair_chunk``
    pairs). Recomputation in the backward pass runs outside vmap, which functorch cannot do;
    those inputs are also the large ones, where K members' activations at once would cost K
    times the memory and the loop is as fast (``benchmarks/committee_vmap.py``). With
    ``checkpoint_atoms="auto"`` every batch from ``AUTO_MIN_ATOMS`` atoms on counts as one that
    may checkpoint (the choice reads the memory available at call time)."""
    cfg = model.cfg
    if cfg.checkpoint_atoms == "auto":
        blocks = batch.n_atoms >= AUTO_MIN_ATOMS
    else:
        blocks = cfg.checkpoint_atoms >= 0 and batch.n_atoms >= cfg.checkpoint_atoms
    # under "auto" a batch below AUTO_MIN_ATOMS takes the fast regime: its chunks never recompute
    chunks = int(neighbors.i.shape[0]) > cfg.pair_chunk and cfg.checkpoint_atoms != "auto"
    return not (blocks or chunks)


def vmap_energies(stacked: StackedMembers, batch: Batch, neighbors: Neighbors):
    """Every member's ``energy`` ``[K, S]`` and ``energies`` ``[K, N]`` (eV) in one vmapped pass.

    ``batch``/``neighbors`` as :func:`shared_inputs` returns them. Differentiable in
    ``batch.positions``/``batch.cell`` (shared by all members) and, when gradients are enabled
    and they require them, in the members' parameters.
    """
    base, nbrs = stacked.models[0], neighbors
    grad = torch.is_grad_enabled() and any(p.requires_grad for p in base.parameters())
    params, buffers = stacked.state(grad)

    def member(p, b):
        out = functional_call(base, (p, b), (batch,), {"neighbors": nbrs})
        return out["energy"], out["energies"]

    return vmap(member)(params, buffers)


def vmap_statistics(
    stacked: StackedMembers,
    batch: Batch,
    neighbors: Neighbors,
    *,
    stress: bool = False,
) -> dict[str, Tensor]:
    """Members' energies, forces (and stress) in one vmapped forward and one backward pass.

    ``batch``/``neighbors`` as :func:`shared_inputs` returns them. Returns the members' values (detached): ``energy`` ``[K, S]``, ``energies`` ``[K, N]``,
    ``forces`` ``[K, N, 3]`` and, with ``stress``, ``stress`` ``[K, S, 3, 3]`` (eV/Å³).
    The members' parameters get no gradient (inference).
    """
    base, nbrs = stacked.models[0], neighbors
    params, buffers = stacked.state(grad=False)
    k = len(stacked.models)
    dt, dev = batch.positions.dtype, batch.positions.device
    x = batch.positions.detach().unsqueeze(0).repeat(k, 1, 1).requires_grad_(True)  # [K, N, 3]
    cell0 = batch.cell.detach()
    leaves = [x]
    if stress:
        eps = torch.zeros(k, batch.n_systems, 3, 3, dtype=dt, device=dev, requires_grad=True)
        leaves.append(eps)

    def member(p, b, xk, *eps_k):
        cell = cell0
        if eps_k:
            deform = torch.eye(3, dtype=dt, device=dev) + 0.5 * (eps_k[0] + eps_k[0].transpose(1, 2))
            xk = torch.bmm(xk.unsqueeze(1), deform[batch.batch]).squeeze(1)
            cell = torch.bmm(cell0, deform)
        out = functional_call(base, (p, b), (batch.replace(positions=xk, cell=cell),), {"neighbors": nbrs})
        return out["energy"], out["energies"]

    with torch.enable_grad():
        energy, energies = vmap(member)(params, buffers, *leaves)
        grads = torch.autograd.grad(energy.sum(), leaves, allow_unused=True)
    res = {
        "energy": energy.detach(),
        "energies": energies.detach(),
        "forces": torch.zeros_like(x) if grads[0] is None else -grads[0],
    }
    if stress:
        de = torch.zeros_like(eps) if grads[1] is None else grads[1]
        vol = torch.linalg.det(cell0).abs()
        full = (batch.has_cell if batch.has_cell is not None else torch.ones_like(vol, dtype=torch.bool)) & (
            vol > 0
        )
        safe = torch.where(full, vol, torch.ones_like(vol))
        res["stress"] = torch.where(full[:, None, None], de / safe[:, None, None], torch.zeros_like(de))
    return res
