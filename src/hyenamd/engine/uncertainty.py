"""Stop or flag a run when a committee of models disagrees on the forces (active-learning trigger).

:class:`UncertaintyGuard` is a :class:`~hyenamd.engine.guard.BlowUpGuard` (same NaN,
temperature and force limits, checked at the same steps by
:class:`~hyenamd.engine.Simulation`) that also evaluates a
:class:`~hyenamd.engine.committee.Committee` on the current state and computes, per system,

    σ_F = max_i sqrt( Σ_c var_k F_ic )          (eV/Å)

the largest per-atom standard deviation of the members' forces (population variance, MACE's
convention). Above ``max_force_std`` it either stops the run (``action="stop"``: the driver
raises :class:`~hyenamd.engine.guard.BlowUpError` naming step, system and σ_F, after closing
the reporters so every earlier frame stays written) or records the event in
:attr:`UncertaintyGuard.flags` and lets the run go on (``action="flag"``). The committee may
be the very potential the run integrates (its forward is the mean energy) or a separate
ensemble watching another model. Its cost is one committee evaluation (K forward + backward
passes, fresh neighbour lists) per check.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch
from torch import nn

from hyenamd.engine.guard import BlowUpGuard
from hyenamd.engine.state import MDState

__all__ = ["UncertaintyFlag", "UncertaintyGuard"]


@dataclass(frozen=True)
class UncertaintyFlag:
    """One check at which the committee disagreed: step, time (fs), system, σ_F (eV/Å), atom."""

    step: int
    time_fs: float
    system: int
    force_std: float
    atom: int


@dataclass(frozen=True)
class UncertaintyGuard(BlowUpGuard):
    """:class:`BlowUpGuard` plus a committee force-spread limit.

    committee: a :class:`~hyenamd.engine.committee.Committee` (same dtype/device as the state).
    max_force_std: limit on σ_F, eV/Å. action: ``"stop"`` (raise through the driver) or
    ``"flag"`` (append to :attr:`flags`, continue). The blow-up limits keep their defaults.
    """

    committee: nn.Module | None = None
    max_force_std: float = 0.5
    action: str = "stop"
    flags: list[UncertaintyFlag] = field(default_factory=list, compare=False, repr=False)
    #: what the checks saw: ``checks``, ``peak_force_std`` (eV/Å) and ``peak_step``, and
    #: ``stopped`` (the :class:`UncertaintyFlag` that stopped the run, or None)
    record: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.committee is None or not hasattr(self.committee, "statistics"):
            raise TypeError("UncertaintyGuard needs committee=Committee([...]) (hyenamd.engine.committee)")
        if not (self.max_force_std > 0 and not math.isnan(self.max_force_std)):
            raise ValueError(f"max_force_std must be positive, got {self.max_force_std}")
        if self.action not in ("stop", "flag"):
            raise ValueError(f"action must be 'stop' or 'flag', got {self.action!r}")
        self.record.update(checks=0, peak_force_std=None, peak_step=None, stopped=None)

    def force_std(self, state: MDState) -> torch.Tensor:
        """σ_i = sqrt(Σ_c var_k F_ic) per atom ``[N]`` (eV/Å) of the committee on ``state``."""
        st = self.committee.statistics(state.as_batch(), None)
        return st["forces_var"].sum(-1).sqrt()

    def check(self, state: MDState) -> tuple[int, str] | None:
        """The blow-up checks, then the committee spread; ``(system, cause)`` or None."""
        bad = super().check(state)
        if bad is not None:
            return bad
        sigma = self.force_std(state).detach()
        per_system = torch.full((state.n_systems,), -1.0, dtype=sigma.dtype, device=sigma.device)
        per_system = per_system.scatter_reduce(0, state.batch, sigma, reduce="amax")
        worst = per_system.cpu().tolist()
        rec = self.record
        rec["checks"] += 1
        if worst and (rec["peak_force_std"] is None or max(worst) > rec["peak_force_std"]):
            rec["peak_force_std"], rec["peak_step"] = max(worst), int(state.step)
        for k, value in enumerate(worst):
            if value <= self.max_force_std:
                continue
            lo, hi = int(state.ptr[k]), int(state.ptr[k + 1])
            atom = int(sigma[lo:hi].argmax())
            event = UncertaintyFlag(int(state.step), float(state.time_fs), k, value, atom)
            if self.action == "flag":
                self.flags.append(event)
                continue
            rec["stopped"] = event
            return k, (
                f"committee force spread {value:.4g} eV/Å on atom {atom} exceeds "
                f"max_force_std = {self.max_force_std:g} eV/Å"
            )
        return None

    def summary(self, max_flags: int = 100) -> dict:
        """JSON-ready account of the checks so far (what a rollout's result records).

        ``max_force_std``, ``action``, ``checks``, ``peak_force_std`` (eV/Å) and ``peak_step``,
        ``n_flags`` and the first ``max_flags`` flags, ``stopped`` (the stopping event or None);
        events as dicts of :class:`UncertaintyFlag`'s fields.
        """
        rec = self.record
        return {
            "max_force_std": float(self.max_force_std),
            "action": self.action,
            "checks": rec["checks"],
            "peak_force_std": rec["peak_force_std"],
            "peak_step": rec["peak_step"],
            "n_flags": len(self.flags),
            "flags": [dataclasses.asdict(f) for f in self.flags[:max_flags]],
            "stopped": None if rec["stopped"] is None else dataclasses.asdict(rec["stopped"]),
        }
