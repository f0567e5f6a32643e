"""The learned propagator: steps of Δτ predicted by the surrogate's dynamics head.

A G-Hyena with the ``"dynamics"`` head maps ``(x, v, species)`` to a displacement ``d`` (Å)
and new velocities ``v'`` (Å/fs) over its horizon ``Δτ = model.cfg.dynamics_horizon_fs``::

    x(t + Δτ) = x(t) + d(x(t), v(t))
    v(t + Δτ) = v'(x(t), v(t))

    ========  ================================  ======
    symbol    variable                          unit
    ========  ================================  ======
    x         ``state.positions``               Å
    v         ``state.velocities``              Å/fs
    d, v'     ``state.aux["displacement"]``,    Å, Å/fs
              ``state.aux["next_velocities"]``
    Δτ        ``dt_fs`` (the model's horizon)   fs
    E         ``state.energy`` (energy head)    eV
    ========  ================================  ======

One model evaluation per step, like velocity Verlet's one force evaluation: the prediction
for the *next* step is made at the end of each step (from the new x and v) and carried in the
state's ``aux`` tensors, together with the energy head's ``E(x)`` of the current positions.
So ``state.energy`` always belongs to ``state.positions`` and a checkpoint resumes exactly.

``forces``: what goes into ``state.forces`` (used by the blow-up guard and reporters):
``"none"`` (zeros; the default, cheapest), ``"direct"`` (the model's direct force head, needs
``"direct_forces"`` in its heads) or ``"conservative"`` (−∂E/∂x by autograd in the same
evaluation, about 2-3× the cost). The sequence order is computed once at :meth:`init` by the
model's rule (:func:`hyenamd.surrogate.ordering.canonical_order`); :meth:`refresh_order`
recomputes it and the pending prediction.
"""

from __future__ import annotations

import time
from typing import Literal

import torch
from torch import Tensor, nn

from hyenamd.engine.evaluator import synchronize
from hyenamd.engine.integrators import Integrator
from hyenamd.engine.state import MDState, remove_com_velocity

__all__ = ["LearnedPropagator"]


class LearnedPropagator(Integrator):
    """``(init, step)`` over :class:`MDState` with the dynamics head of ``model`` (see the module doc)."""

    name = "learned_propagator"

    def __init__(
        self,
        model: nn.Module,
        *,
        forces: Literal["none", "direct", "conservative"] = "none",
        skin: float = 1.0,
        remove_com: bool = False,
        wrap: bool = False,
        profile: bool = False,
    ) -> None:
        if getattr(model, "dynamics_head", None) is None:
            raise ValueError(
                "LearnedPropagator needs a model with a dynamics head (GHyenaConfig(heads=(..., 'dynamics')))"
            )
        if forces not in ("none", "direct", "conservative"):
            raise ValueError(f"forces must be 'none', 'direct' or 'conservative', got {forces!r}")
        if forces == "direct" and getattr(model, "direct_force_head", None) is None:
            raise ValueError("forces='direct' needs a model with the 'direct_forces' head")
        horizon = float(model.cfg.dynamics_horizon_fs)
        super().__init__(model, horizon, skin=skin, remove_com=remove_com, wrap=wrap, profile=profile)
        self.forces = forces
        self.evaluator._fast = False  # never the analytic path: the model is evaluated below

    def describe(self) -> dict:
        return {**super().describe(), "forces": self.forces}

    def _predict(
        self, state: MDState, x: Tensor, v: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None]:
        """Energy at x, forces, displacement, next velocities, nl_ref — one model evaluation."""
        ev = self.evaluator
        if ev.profile:
            synchronize(x.device)
            t0 = time.perf_counter()
        nbrs, ref = ev.neighbors(state, x)
        if ev.profile:
            t1 = time.perf_counter()
            ev.timings["neighbors"] += t1 - t0
        batch = state.as_batch(x).replace(velocities=v)
        if self.forces == "conservative":
            from hyenamd.surrogate.forces import compute_forces

            out = compute_forces(self.potential, batch, neighbors=nbrs)
            f = out["forces"]
        else:
            with torch.no_grad():
                out = self.potential(batch, neighbors=nbrs)
            f = out["direct_forces"] if self.forces == "direct" else torch.zeros_like(x)
        ev.n_evaluations += 1
        if ev.profile:
            synchronize(x.device)
            ev.timings["model"] += time.perf_counter() - t1
        return (
            out["energy"].detach(),
            f.detach(),
            out["displacement"].detach(),
            out["velocities"].detach(),
            ref,
        )

    def init(self, system, *, temperature_k=None, seed: int = 0) -> MDState:
        """As :meth:`Integrator.init`, plus the first prediction (in ``state.aux``)."""
        state = super().init(system, temperature_k=temperature_k, seed=seed)
        return self._with_prediction(state, state.positions, state.velocities, step=0)

    def _with_prediction(self, state: MDState, x: Tensor, v: Tensor, step: int) -> MDState:
        energy, forces, disp, v_next, ref = self._predict(state, x, v)
        return state.replace(
            positions=x,
            velocities=v,
            forces=forces,
            energy=energy,
            nl_ref=ref,
            aux={**state.aux, "displacement": disp, "next_velocities": v_next},
            step=state.step + step,
            time_fs=state.time_fs + step * self.dt_fs,
        )

    def refresh_order(self, state: MDState) -> tuple[MDState, Tensor]:
        """As :meth:`Integrator.refresh_order`, and the pending prediction is redone with the new order."""
        new, _ = super().refresh_order(state)
        new = self._with_prediction(new, new.positions, new.velocities, step=0)
        return new, new.energy - state.energy

    def step(self, state: MDState) -> MDState:
        if "displacement" not in state.aux:
            raise ValueError("this state carries no prediction; create it with LearnedPropagator.init()")
        x = state.positions + state.aux["displacement"]
        v = state.aux["next_velocities"]
        if self.remove_com:
            v = remove_com_velocity(state.masses, v, state.batch, state.n_systems)
        if self.wrap:
            x = self._wrap(state, x)
        return self._with_prediction(state, x, v, step=1)
