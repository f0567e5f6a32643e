"""The simulation driver: steps on the device in chunks, reporters pull data only when due.

::

    sim = Simulation(LangevinBAOAB(model, 1.0, 300.0), system,
                     reporters=[StateDataReporter("md.csv", 100),
                                TrajectoryReporter("traj.h5", 100),
                                CheckpointReporter("md.ckpt.safetensors", 10_000)])
    sim.run(1_000_000)
    # after a crash:
    sim = Simulation.from_checkpoint("md.ckpt.safetensors", LangevinBAOAB(model, 1.0, 300.0), reporters=[...])
    sim.run_to(1_000_000)          # bit-identical to the uninterrupted run

Loop. Each reporter says how many steps until it next needs data
(``describe_next_report``); the driver runs ``min(those, steps to the next guard check,
steps left)`` integrator steps with no host transfer (the Verlet list's skin test is the only
sync), then on a report step copies the union of the requested arrays to the host once, runs
the :class:`~hyenamd.engine.guard.BlowUpGuard` first, and hands a :class:`Snapshot` to each
due reporter. Background reporters (the trajectory writer) run in one writer thread with a
bounded queue (``max_pending`` snapshots), so the device only waits for the disk when the
disk falls that far behind. Errors raised in the writer thread surface in the main thread at
the next report or at :meth:`flush`/:meth:`close`.

Order refresh. A surrogate's sequence order is kept along the trajectory (smooth energy);
``order_refresh_steps=M`` recomputes it from the current positions every M steps
(:meth:`Integrator.refresh_order`) after the reporters of that step ran. Each refresh is
recorded in :attr:`Simulation.order_refreshes` (``{"step", "time_fs", "energy_jump_ev"}``,
one jump per system: E with the new order minus E with the old one at the same positions)
and logged on the ``hyenamd.engine`` logger.

Timings (``profile=True``, synchronising CUDA): seconds in the integrator (of which
neighbour list and model, from the :class:`~hyenamd.engine.evaluator.ForceEvaluator`),
in reporting (host copies, foreground reporters, queueing) and in the guard.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Sequence

import torch

from hyenamd.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from hyenamd.engine.guard import BlowUpError, BlowUpGuard
from hyenamd.engine.reporters import PER_ATOM, Snapshot
from hyenamd.engine.state import MDState
from hyenamd.system import Batch, System

__all__ = ["Simulation"]

DEFAULT_GUARD = BlowUpGuard()
log = logging.getLogger("hyenamd.engine")


class _Writer:
    """One background thread running background reporters in submission order."""

    def __init__(self, max_pending: int) -> None:
        self.q: queue.Queue = queue.Queue(maxsize=max_pending)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._loop, name="hyenamd-writer", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while True:
            item = self.q.get()
            try:
                if item is None:
                    return
                reporter, sim, snap = item
                if self.error is None:
                    reporter.report(sim, snap)
            except BaseException as e:  # surfaced in the main thread
                self.error = e
            finally:
                self.q.task_done()

    def raise_error(self) -> None:
        if self.error is not None:
            err, self.error = self.error, None
            raise RuntimeError(f"a background reporter failed: {err!r}") from err

    def submit(self, reporter, sim, snap) -> None:
        self.raise_error()
        self.q.put((reporter, sim, snap))

    def drain(self) -> None:
        self.q.join()
        self.raise_error()

    def stop(self) -> None:
        self.q.put(None)
        self.thread.join()


class Simulation:
    """Drive an integrator with reporters, a blow-up guard and checkpoints.

    integrator: a :class:`~hyenamd.engine.integrators.Integrator` (or the learned propagator).
    system: a :class:`~hyenamd.System` / :class:`~hyenamd.Batch` (initialised with
    ``integrator.init(system, temperature_k=, seed=)``) or an :class:`MDState`.
    reporters: objects following the protocol of :mod:`hyenamd.engine.reporters`.
    guard: a :class:`BlowUpGuard` (None disables it). max_pending: writer-queue bound.
    order_refresh_steps: M, recompute the surrogate's sequence order every M steps (None: keep
    it for the whole run); the energy jumps are in :attr:`order_refreshes`.
    """

    def __init__(
        self,
        integrator,
        system: System | Batch | MDState,
        reporters: Sequence = (),
        *,
        guard: BlowUpGuard | None = DEFAULT_GUARD,
        temperature_k: float | Sequence[float] | None = None,
        seed: int | None = None,
        max_pending: int = 4,
        profile: bool = False,
        order_refresh_steps: int | None = None,
    ) -> None:
        if order_refresh_steps is not None and int(order_refresh_steps) < 1:
            raise ValueError(f"order_refresh_steps must be >= 1 or None, got {order_refresh_steps}")
        if order_refresh_steps is not None and not hasattr(integrator, "refresh_order"):
            raise ValueError(f"{type(integrator).__name__} cannot refresh a sequence order")
        self.order_refresh_steps = None if order_refresh_steps is None else int(order_refresh_steps)
        self.order_refreshes: list[dict] = []
        self.integrator = integrator
        if isinstance(system, MDState):
            self.state = system
        else:
            kw = {} if seed is None else {"seed": seed}
            self.state = integrator.init(system, temperature_k=temperature_k, **kw)
        self.reporters = list(reporters)
        self.guard = guard
        self.max_pending = int(max_pending)
        self.profile = profile
        evaluator = getattr(integrator, "evaluator", None)
        if evaluator is not None and profile:
            evaluator.profile = True
        self.timings = {"integrator": 0.0, "reporting": 0.0, "guard": 0.0, "total": 0.0}
        self.target_step = self.state.step
        self.last_good_step: int | None = None
        self._writer: _Writer | None = None
        self._closed = False

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        integrator,
        reporters: Sequence = (),
        *,
        device: str | torch.device | None = None,
        strict: bool = True,
        **kwargs,
    ) -> Simulation:
        """Resume from an engine checkpoint. ``strict``: the integrator's settings must match."""
        state, meta = load_checkpoint(path, device=device)
        saved = meta.get("integrator")
        if strict and saved is not None and hasattr(integrator, "describe"):
            now = integrator.describe()
            diff = {
                k: (saved.get(k), now.get(k)) for k in set(saved) | set(now) if saved.get(k) != now.get(k)
            }
            # JSON turns tuples into lists: compare those loosely
            diff = {
                k: v for k, v in diff.items() if not (isinstance(v[0], list) and list(v[1] or []) == v[0])
            }
            if diff:
                raise CheckpointError(
                    f"{path} was written by an integrator with other settings (saved, now): {diff}; "
                    "pass strict=False to resume anyway (the trajectory will then differ)"
                )
        return cls(integrator, state, reporters, **kwargs)

    # ------------------------------------------------------------------ running
    @property
    def step(self) -> int:
        return self.state.step

    def run(self, n_steps: int) -> MDState:
        """Advance ``n_steps`` steps; returns the final state (also ``sim.state``)."""
        if int(n_steps) < 0:
            raise ValueError(f"n_steps must be >= 0, got {n_steps}")
        return self.run_to(self.state.step + int(n_steps))

    def run_to(self, step: int) -> MDState:
        """Advance until ``state.step == step`` (a no-op when already there)."""
        if self._closed:
            raise RuntimeError("this Simulation was closed")
        self.target_step = int(step)
        t_start = time.perf_counter()
        for r in self.reporters:  # every check before the first attach opens a file
            check = getattr(r, "check", None)
            if check is not None:
                check(self)
        for r in self.reporters:
            attach = getattr(r, "attach", None)
            if attach is not None:
                attach(self)
        try:
            self._loop()
        finally:
            self.timings["total"] += time.perf_counter() - t_start
        return self.state

    def _loop(self) -> None:
        ce = self.guard.check_every if self.guard is not None else 0
        while True:
            reqs = [r.describe_next_report(self) for r in self.reporters]
            now = [r for r, q in zip(self.reporters, reqs) if q is not None and q.steps == 0]
            if now:
                last = {id(r): getattr(r, "_last_step", None) for r in now}
                again = [type(r).__name__ for r in now if last[id(r)] == self.state.step]
                if again:
                    raise RuntimeError(f"reporters {again} asked again for step {self.state.step} (steps=0)")
                self._check()
                self._report(now, reqs)
                continue
            left = self.target_step - self.state.step
            if left <= 0:
                return
            n = left
            for q in reqs:
                if q is not None:
                    n = min(n, int(q.steps))
            if ce:
                n = min(n, ce - self.state.step % ce)
            m = self.order_refresh_steps
            if m:
                n = min(n, m - self.state.step % m)
            t0 = time.perf_counter()
            step = self.integrator.step
            state = self.state
            for _ in range(n):
                state = step(state)
            self.state = state
            if self.profile and state.device.type == "cuda":
                torch.cuda.synchronize(state.device)
            self.timings["integrator"] += time.perf_counter() - t0
            due = [r for r, q in zip(self.reporters, reqs) if q is not None and int(q.steps) == n]
            if due or (ce and self.state.step % ce == 0):
                self._check()
            if due:
                self._report(due, reqs)
            if m and self.state.step % m == 0:
                self._refresh_order()

    def _refresh_order(self) -> None:
        """Recompute the sequence order at the current positions; record and log the energy jump."""
        self.state, jump = self.integrator.refresh_order(self.state)
        rec = {
            "step": self.state.step,
            "time_fs": self.state.time_fs,
            "energy_jump_ev": jump.detach().cpu().double().tolist(),
        }
        self.order_refreshes.append(rec)
        log.info("order refreshed at step %d: energy jump %s eV", rec["step"], rec["energy_jump_ev"])

    def _check(self) -> None:
        if self.guard is None:
            return
        t0 = time.perf_counter()
        bad = self.guard.check(self.state)
        self.timings["guard"] += time.perf_counter() - t0
        if bad is None:
            self.last_good_step = self.state.step
            return
        system, cause = bad
        err = BlowUpError(self.state.step, self.state.time_fs, system, cause, self.last_good_step)
        try:
            self.close()
        except Exception as e:  # keep the blow-up as the error; mention the other one
            err.add_note(f"while closing the reporters after the blow-up: {e!r}")
        raise err

    def snapshot(self, include: frozenset[str] | set[str] = frozenset()) -> Snapshot:
        """Host copies of the current state (per-atom arrays only for the names in ``include``)."""
        st = self.state
        unknown = set(include) - set(PER_ATOM)
        if unknown:
            raise ValueError(f"unknown report fields {sorted(unknown)}; choose from {PER_ATOM}")
        ke = st.kinetic_energy()
        small = torch.cat([st.energy, ke, st.dof]).detach().cpu().numpy()
        b = st.n_systems
        pe, ke_np, dof = small[:b], small[b : 2 * b], small[2 * b :]
        from hyenamd.units import BOLTZMANN_EV_PER_K

        snap = Snapshot(
            step=st.step,
            time_fs=st.time_fs,
            potential_energy=pe,
            kinetic_energy=ke_np,
            temperature=2.0 * ke_np / (dof * BOLTZMANN_EV_PER_K),
            cell=st.cell.detach().cpu().numpy().copy(),
            has_cell=st.has_cell.cpu().numpy().copy(),
            ptr=st.ptr.cpu().numpy().copy(),
            wall_time=time.perf_counter(),
        )
        for name in PER_ATOM:
            if name in include:
                setattr(snap, name, getattr(st, name).detach().to("cpu").numpy().copy())
        return snap

    def _report(self, due: list, reqs: list) -> None:
        t0 = time.perf_counter()
        include: set[str] = set()
        for r, q in zip(self.reporters, reqs):
            if r in due:
                include |= set(q.include)
        snap = self.snapshot(include)
        for r in due:
            if getattr(r, "background", False):
                if self._writer is None:
                    self._writer = _Writer(self.max_pending)
                self._writer.submit(r, self, snap)
            else:
                if getattr(r, "needs_flush", False):
                    self.flush()
                r.report(self, snap)
            mark = getattr(r, "mark", None)
            if mark is not None:
                mark(snap.step)
        self.timings["reporting"] += time.perf_counter() - t0

    # ------------------------------------------------------------------ durability
    def save_checkpoint(self, path: str | os.PathLike, **extra) -> None:
        """Write the full state (and the integrator's settings) to ``path``; see :mod:`.checkpoint`."""
        save_checkpoint(path, self.state, integrator=self.integrator, extra=extra or None)

    def flush(self) -> None:
        """Wait for the writer thread, then flush every reporter."""
        if self._writer is not None:
            self._writer.drain()
        for r in self.reporters:
            f = getattr(r, "flush", None)
            if f is not None:
                f()

    def close(self) -> None:
        """Flush and close every reporter and stop the writer thread (idempotent)."""
        if self._closed:
            return
        self._closed = True
        errors = []
        try:
            if self._writer is not None:
                self._writer.drain()
        except Exception as e:
            errors.append(e)
        finally:
            if self._writer is not None:
                self._writer.stop()
                self._writer = None
        for r in self.reporters:
            try:
                for name in ("flush", "close"):
                    f = getattr(r, name, None)
                    if f is not None:
                        f()
            except Exception as e:
                errors.append(e)
        if errors:
            raise errors[0]

    def __enter__(self) -> Simulation:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ timings
    def timing_summary(self) -> dict[str, float]:
        """Seconds per category; with ``profile=True`` the integrator time is split further."""
        out = dict(self.timings)
        ev = getattr(self.integrator, "evaluator", None)
        if ev is not None and self.profile:
            out["neighbors"] = ev.timings["neighbors"]
            out["model"] = ev.timings["model"]
            out["integrator_only"] = max(0.0, out["integrator"] - out["neighbors"] - out["model"])
        return out
