"""Energy and forces of a state: the potential plus a Verlet neighbour list with a skin.

:class:`ForceEvaluator` is what the integrators call once per step. It owns a
:class:`~hyenamd.geometry.VerletList` (``cutoff = potential.cutoff``; none when the cutoff is 0),
rebuilt only when an atom moved more than ``skin / 2`` (and correct under re-wrapping), and it
calls the potential through its analytic fast path ``energy_and_forces`` when it has one, else
through :func:`hyenamd.surrogate.forces.compute_forces` (autograd, conservative forces). When
the state carries several sequence orders (``state.aux["orders"]`` ``[K, N]``, from
``order_samples=K``), energy and forces are the mean over them.

Exact resume. The list's pair *set* within the cutoff does not depend on when it was built,
but its pair *order* does, and the order decides the rounding of the force sums. So the state
records ``nl_ref``, the positions the current list was built from; an evaluator that meets a
state whose ``nl_ref`` it did not build itself (a state read from a checkpoint, or another
trajectory) first rebuilds the list from ``nl_ref``, which gives the same list, bit for bit,
as the uninterrupted run had.

Timings (``profile=True``): wall-clock seconds spent in the neighbour list and in the model
(synchronising CUDA around each), accumulated in :attr:`ForceEvaluator.timings`.
"""

from __future__ import annotations

import time

import torch
from torch import Tensor, nn

from hyenamd.geometry import VerletList

__all__ = ["ForceEvaluator", "verlet_list_for"]


def verlet_list_for(potential: nn.Module, skin: float) -> VerletList | None:
    """The Verlet list a potential needs: None for ``cutoff == 0``; a *superset* list
    (``exact=False``: pairs within ``cutoff + skin`` at the last build, O(N) reuse) when the
    potential's pair terms vanish identically beyond its cutoff — it says so with
    ``needs_exact_neighbors = False`` (the torch LJ does; G-Hyena's envelope is exactly zero
    beyond the cutoff, so it is treated the same) — else the exact list. Extra pairs at zero
    weight add exact zeros, so both give bit-identical results."""
    cutoff = float(getattr(potential, "cutoff", 0.0) or 0.0)
    if cutoff <= 0:
        return None
    exact = getattr(potential, "needs_exact_neighbors", None)
    if exact is None:
        from hyenamd.surrogate.model import GHyena

        exact = not isinstance(potential, GHyena)
    return VerletList(cutoff, skin, exact=bool(exact))


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class ForceEvaluator:
    """``energy [B] eV, forces [N, 3] eV/Å, nl_ref = evaluator(state, positions)``.

    potential: an ``nn.Module`` of the potential protocol (``cutoff`` Å, ``forward(batch, neighbors)``).
    skin: Verlet skin, Å. profile: accumulate timings (costs a CUDA sync per step on a GPU).
    """

    def __init__(self, potential: nn.Module, *, skin: float = 1.0, profile: bool = False) -> None:
        if not hasattr(potential, "cutoff"):
            raise TypeError(
                f"{type(potential).__name__} has no 'cutoff' attribute (Å); a potential must follow "
                "the protocol of hyenamd.surrogate.forces"
            )
        self.potential = potential
        self.neighbor_list = verlet_list_for(potential, skin)
        self.profile = profile
        self.timings = {"neighbors": 0.0, "model": 0.0}
        self.n_evaluations = 0
        self._ref: Tensor | None = None
        self._fast = callable(getattr(potential, "energy_and_forces", None))

    @property
    def n_builds(self) -> int:
        return 0 if self.neighbor_list is None else self.neighbor_list.n_builds

    def neighbors(self, state, positions: Tensor):
        """The neighbour list at ``positions`` and the new ``nl_ref`` (see the module docstring)."""
        nl = self.neighbor_list
        if nl is None:
            return None, None
        if state.nl_ref is not self._ref:
            nl.reset()
            if state.nl_ref is not None:
                nl(state.nl_ref, state.cell, state.pbc, state.ptr)
            self._ref = state.nl_ref
        before = nl.n_builds
        nbrs = nl(positions, state.cell, state.pbc, state.ptr)
        if nl.n_builds != before:
            self._ref = positions
        return nbrs, self._ref

    def __call__(self, state, positions: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        self.n_evaluations += 1
        if self.profile:
            synchronize(positions.device)
            t0 = time.perf_counter()
        nbrs, ref = self.neighbors(state, positions)
        if self.profile:
            t1 = time.perf_counter()
            self.timings["neighbors"] += t1 - t0
        batch = state.as_batch(positions)
        orders = state.aux.get("orders")
        if self._fast:
            out = self.potential.energy_and_forces(batch, nbrs)
        elif orders is not None:  # order_samples > 1: the mean over the K orders
            from hyenamd.surrogate.forces import compute_forces

            outs = [compute_forces(self.potential, batch.replace(order=o), neighbors=nbrs) for o in orders]
            out = {k: sum(o[k].detach() for o in outs) / len(outs) for k in ("energy", "forces")}
        else:
            from hyenamd.surrogate.forces import compute_forces

            out = compute_forces(self.potential, batch, neighbors=nbrs)
        if self.profile:
            synchronize(positions.device)
            self.timings["model"] += time.perf_counter() - t1
        return out["energy"].detach(), out["forces"].detach(), ref
