"""The blow-up guard: stop a run at the first NaN, runaway temperature or huge force.

:class:`BlowUpGuard` is checked by :class:`~hyenamd.engine.Simulation` every ``check_every``
steps and on every step at which a reporter takes data, *before* the reporters see it, so no
broken frame is ever written. The check is a handful of reductions on the device and one
small host copy. When it fires, the simulation drains its writer thread, closes its reporters
(every earlier frame stays written and readable) and raises :class:`BlowUpError` naming the
step, the system and the cause.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from hyenamd.engine.state import MDState
from hyenamd.errors import HyenaError

__all__ = ["BlowUpError", "BlowUpGuard"]


class BlowUpError(HyenaError, RuntimeError):
    """A simulation blew up. Attributes: ``step``, ``time_fs``, ``system``, ``cause``."""

    def __init__(
        self, step: int, time_fs: float, system: int, cause: str, last_good_step: int | None
    ) -> None:
        self.step, self.time_fs, self.system, self.cause = step, time_fs, system, cause
        self.last_good_step = last_good_step
        good = (
            ""
            if last_good_step is None
            else f"; the last state that passed the check is step {last_good_step}"
        )
        super().__init__(
            f"simulation blew up at step {step} (t = {time_fs:g} fs), system {system}: {cause}{good}"
        )


@dataclass(frozen=True)
class BlowUpGuard:
    """Limits that stop a run (None disables a limit).

    max_temperature_k: instantaneous temperature of any system, K.
    max_force: largest per-atom force norm, eV/Å.
    check_every: check every this many steps (and on every report step); 0: report steps only.
    """

    max_temperature_k: float | None = 1.0e4
    max_force: float | None = 100.0
    check_every: int = 10

    def __post_init__(self) -> None:
        if self.check_every < 0:
            raise ValueError(f"check_every must be >= 0, got {self.check_every}")
        for name in ("max_temperature_k", "max_force"):
            v = getattr(self, name)
            if v is not None and not (v > 0 and not math.isnan(v)):
                raise ValueError(f"{name} must be positive or None, got {v}")

    def check(self, state: MDState) -> tuple[int, str] | None:
        """``(system, cause)`` of the first problem found in ``state``, or None when it is fine."""
        finite = torch.stack(
            [
                torch.isfinite(state.forces).all(),
                torch.isfinite(state.energy).all(),
                torch.isfinite(state.velocities).all(),
                torch.isfinite(state.positions).all(),
            ]
        )
        temps = state.temperature()
        fnorm = state.forces.norm(dim=-1)
        fmax = fnorm.max() if fnorm.numel() else fnorm.new_zeros(())
        summary = torch.cat([finite.to(temps.dtype), temps.max().reshape(1), fmax.reshape(1)]).cpu()
        ok = summary[:4].bool().tolist()
        names = ("forces", "potential energy", "velocities", "positions")  # causes before effects
        for good, name in zip(ok, names):
            if not good:
                return self._locate_nan(state, name)
        t_max, f_max = float(summary[4]), float(summary[5])
        if self.max_temperature_k is not None and t_max > self.max_temperature_k:
            k = int(temps.argmax())
            return k, f"temperature {t_max:.6g} K exceeds max_temperature_k = {self.max_temperature_k:g} K"
        if self.max_force is not None and f_max > self.max_force:
            atom = int(fnorm.argmax())
            k = int(state.batch[atom])
            return k, (
                f"force {f_max:.6g} eV/Å on atom {atom - int(state.ptr[k])} exceeds max_force = {self.max_force:g} eV/Å"
            )
        return None

    @staticmethod
    def _locate_nan(state: MDState, name: str) -> tuple[int, str]:
        attr = {"positions": "positions", "velocities": "velocities", "forces": "forces"}.get(name)
        if attr is None:
            bad = (~torch.isfinite(state.energy)).nonzero()
            k = int(bad[0, 0])
            return k, f"the potential energy is {float(state.energy[k])}"
        t = getattr(state, attr)
        bad_atoms = (~torch.isfinite(t)).any(-1).nonzero()[:, 0]
        atom = int(bad_atoms[0])
        k = int(state.batch[atom])
        return k, (
            f"{name} are not finite (NaN or inf) for {bad_atoms.numel()} atoms, "
            f"first atom {atom - int(state.ptr[k])}"
        )
