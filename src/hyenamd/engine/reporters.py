"""Reporters: the engine asks each one when it next needs data and what (OpenMM's pattern).

Protocol (duck-typed; :class:`Reporter` is a convenient base):

``attach(sim)``
    called in the main thread at the start of every :meth:`Simulation.run`; open files here.
``describe_next_report(sim) -> ReportRequest | None``
    steps until the next report (0: report the current state now) and the data wanted
    (``include`` ⊆ {"positions", "velocities", "forces"}; energies, temperatures, cells and
    the step/time always come along). None: no more reports.
``report(sim, snapshot)``
    receives a :class:`Snapshot`: host (numpy) copies taken on that step only. A reporter
    with ``background = True`` is called in the simulation's writer thread, in order, and
    must use only the snapshot (not ``sim``); the device never waits for its disk.
``flush()`` / ``close()``
    make written data durable / release files. A reporter with ``needs_flush = True`` (the
    checkpoint reporter) makes the simulation drain the writer thread and flush every
    reporter before it is called, so a checkpoint never runs ahead of the trajectory.

Resume. After a restart from a checkpoint at step ``s``, reporters that find their output
already written past ``s`` (the interrupted run got further than its last checkpoint) skip
those steps instead of duplicating them: a resumed run is bit-identical, so the frames
already there are exactly those it would write.
"""

from __future__ import annotations

import csv
import os
import pathlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from hyenamd.engine.simulation import Simulation

__all__ = [
    "CheckpointReporter",
    "ReportRequest",
    "Reporter",
    "Snapshot",
    "StateDataReporter",
    "TrajectoryReporter",
]

PER_ATOM = ("positions", "velocities", "forces")


@dataclass(frozen=True)
class ReportRequest:
    """``steps`` until the next report (0 = now) and the per-atom arrays it needs."""

    steps: int
    include: frozenset[str] = frozenset()


@dataclass
class Snapshot:
    """What reporters receive: host copies of one step (numpy; per-atom arrays only when asked).

    positions/velocities/forces ``[N, 3]`` (Å, Å/fs, eV/Å) or None; potential_energy,
    kinetic_energy ``[B]`` eV; temperature ``[B]`` K; cell ``[B, 3, 3]`` Å; has_cell ``[B]``;
    ptr ``[B + 1]``; wall_time: ``time.perf_counter()`` when it was taken.
    """

    step: int
    time_fs: float
    potential_energy: np.ndarray
    kinetic_energy: np.ndarray
    temperature: np.ndarray
    cell: np.ndarray
    has_cell: np.ndarray
    ptr: np.ndarray
    wall_time: float
    positions: np.ndarray | None = None
    velocities: np.ndarray | None = None
    forces: np.ndarray | None = None
    extra: dict = field(default_factory=dict)

    @property
    def n_systems(self) -> int:
        return int(self.ptr.shape[0] - 1)


class Reporter:
    """Base class: reports every ``interval`` steps (``report_initial``: also at step 0)."""

    include: frozenset[str] = frozenset()
    background = False
    needs_flush = False

    def __init__(self, interval: int, *, report_initial: bool = False) -> None:
        if int(interval) < 1:
            raise ValueError(f"interval must be >= 1 step, got {interval}")
        self.interval = int(interval)
        self.report_initial = bool(report_initial)
        self._last_step: int | None = None  # the last step reported

    def attach(self, sim: Simulation) -> None:
        """Called at the start of every run (main thread)."""

    def describe_next_report(self, sim: Simulation) -> ReportRequest | None:
        step = sim.state.step
        if self.report_initial and step == 0 and self._last_step is None:
            return ReportRequest(0, self.include)
        return ReportRequest(self.interval - step % self.interval, self.include)

    def check(self, sim: Simulation) -> None:
        """Validate everything ``attach`` will do, without touching any file (default: nothing).

        :class:`~hyenamd.engine.Simulation` calls ``check`` on every reporter before the first
        ``attach``, so a refused output leaves every other reporter's files untouched.
        """

    def mark(self, step: int) -> None:
        """Remember that ``step`` was reported (the simulation calls this in the main thread)."""
        self._last_step = step

    def report(self, sim: Simulation, snapshot: Snapshot) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def flush(self) -> None:
        """Make everything reported so far durable."""

    def close(self) -> None:
        """Release files; the reporter is not used afterwards."""


# ---------------------------------------------------------------------- state data
class StateDataReporter(Reporter):
    """CSV of energies and temperatures, and a tqdm progress bar with ns/day.

    file: a CSV path (or None for the progress bar only). Columns: ``step, time_fs, system,
    potential_energy_ev, kinetic_energy_ev, total_energy_ev, temperature_k, ns_per_day`` (one
    row per system and report; ns/day from the wall time since the previous report).
    An existing file is appended to when the run resumes (step > 0); a fresh run refuses an
    existing file unless ``overwrite=True`` (:class:`~hyenamd.errors.OutputExistsError`).
    """

    COLUMNS = (
        "step",
        "time_fs",
        "system",
        "potential_energy_ev",
        "kinetic_energy_ev",
        "total_energy_ev",
        "temperature_k",
        "ns_per_day",
    )

    def __init__(
        self,
        file: str | os.PathLike | None,
        interval: int,
        *,
        progress: bool = True,
        report_initial: bool = True,
        overwrite: bool = False,
    ) -> None:
        super().__init__(interval, report_initial=report_initial)
        self.path = None if file is None else pathlib.Path(file)
        self.progress = progress
        self.overwrite = bool(overwrite)
        self._fh = None
        self._writer = None
        self._bar = None
        self._prev: tuple[float, float] | None = None
        self._skip_until = -1
        self.last_ns_per_day: float | None = None

    def check(self, sim: Simulation) -> None:
        if self.path is None or self._fh is not None:
            return
        check_output_file(self.path, "state-data CSV", resume=sim.state.step > 0, overwrite=self.overwrite)

    def attach(self, sim: Simulation) -> None:
        self.check(sim)
        if self.path is not None and self._fh is None:
            step = sim.state.step
            if step > 0 and self.path.exists():
                steps = []
                with open(self.path, newline="") as f:
                    steps = [int(r["step"]) for r in csv.DictReader(f)]
                self._skip_until = max(steps, default=-1)
                self._fh = open(self.path, "a", newline="")
                self._writer = csv.writer(self._fh)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fh = open(self.path, "w", newline="")
                self._writer = csv.writer(self._fh)
                self._writer.writerow(self.COLUMNS)
        if self.progress:
            from hyenamd.progress import progress_bar

            total = sim.target_step - sim.state.step
            if self._bar is None:
                self._bar = progress_bar(total=total, unit="step", desc="md", dynamic_ncols=True)
            else:
                self._bar.reset(total=total)
            self._bar_step = sim.state.step
        self._prev = None

    def report(self, sim: Simulation, snap: Snapshot) -> None:
        nsd = float("nan")
        if self._prev is not None:
            dt_wall = snap.wall_time - self._prev[0]
            if dt_wall > 0:
                nsd = (snap.time_fs - self._prev[1]) * 1e-6 / dt_wall * 86400.0
        self._prev = (snap.wall_time, snap.time_fs)
        self.last_ns_per_day = None if np.isnan(nsd) else nsd
        if self._writer is not None and snap.step > self._skip_until:
            for k in range(snap.n_systems):
                pe, ke = float(snap.potential_energy[k]), float(snap.kinetic_energy[k])
                self._writer.writerow(
                    [snap.step, repr(snap.time_fs), k, repr(pe), repr(ke), repr(pe + ke),
                     repr(float(snap.temperature[k])), f"{nsd:.6g}"]
                )  # fmt: skip
            self._fh.flush()
        if self._bar is not None:
            self._bar.update(snap.step - self._bar_step)
            self._bar_step = snap.step
            self._bar.set_postfix(
                T=f"{float(snap.temperature.mean()):.1f}K",
                E=f"{float((snap.potential_energy + snap.kinetic_energy).sum()):.6g}eV",
                ns_day=f"{nsd:.3g}",
                refresh=False,
            )

    def flush(self) -> None:
        if self._fh is not None:
            self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = self._writer = None
        if self._bar is not None:
            self._bar.close()
            self._bar = None


# ---------------------------------------------------------------------- trajectory
class TrajectoryReporter(Reporter):
    """Frames to a hyenamd store (``hyenamd.io.open_store``: ``.h5`` H5MD or ``.zarr``), in the background.

    path: the store; for a batch of several systems it must contain ``{system}`` (one store
    per system, e.g. ``"traj_{system}.h5"``). velocities/forces: store them too.
    Per frame the observables ``potential_energy`` (eV), ``kinetic_energy`` (eV) and
    ``temperature`` (K) are written, and the cell when the system has one.
    A fresh run (step 0) creates the store (``overwrite`` to replace an existing one); a
    resumed run appends after the last committed frame and skips steps already there.
    """

    background = True
    OBSERVABLES: ClassVar[dict[str, str]] = {
        "potential_energy": "eV",
        "kinetic_energy": "eV",
        "temperature": "K",
    }

    def __init__(
        self,
        path: str | os.PathLike,
        interval: int,
        *,
        velocities: bool = True,
        forces: bool = True,
        report_initial: bool = True,
        overwrite: bool = False,
        **store_options,
    ) -> None:
        super().__init__(interval, report_initial=report_initial)
        self.path = str(path)
        self.velocities, self.forces = bool(velocities), bool(forces)
        self.include = frozenset(
            ["positions"] + (["velocities"] if velocities else []) + (["forces"] if forces else [])
        )
        self.overwrite = overwrite
        self.store_options = store_options
        self.stores: list = []
        self._skip: list[int] = []

    def paths(self, n_systems: int) -> list[str]:
        if n_systems == 1:
            return [self.path.format(system=0) if "{system}" in self.path else self.path]
        if "{system}" not in self.path:
            raise ValueError(
                f"a batch of {n_systems} systems needs one store each: put '{{system}}' in the path "
                f"(got {self.path!r})"
            )
        return [self.path.format(system=k) for k in range(n_systems)]

    def check(self, sim: Simulation) -> None:
        if self.stores:
            return
        for p in self.paths(sim.state.n_systems):
            check_output_file(p, "trajectory store", resume=sim.state.step > 0, overwrite=self.overwrite,
                              directory_ok=str(p).endswith(".zarr"))  # fmt: skip

    def attach(self, sim: Simulation) -> None:
        if self.stores:
            return
        from hyenamd.io import open_store

        self.check(sim)

        state = sim.state
        fields = tuple(f for f, on in (("velocity", self.velocities), ("force", self.forces)) if on)
        for k, p in enumerate(self.paths(state.n_systems)):
            system = state.system(k)
            resume = state.step > 0 and pathlib.Path(p).exists()
            mode = "a" if resume else "w"
            opts = dict(self.store_options)
            if mode == "w":
                opts["overwrite"] = self.overwrite
            store = open_store(
                p, mode, system=system, fields=fields, observables=tuple(self.OBSERVABLES),
                units=self.OBSERVABLES, **opts,
            )  # fmt: skip
            self.stores.append(store)
            steps = store.steps if resume else np.zeros(0, np.int64)
            self._skip.append(int(steps.max()) if len(steps) else -1)

    def report(self, sim: Simulation, snap: Snapshot) -> None:
        for k, store in enumerate(self.stores):
            if snap.step <= self._skip[k]:
                continue
            a, b = int(snap.ptr[k]), int(snap.ptr[k + 1])
            store.append(
                snap.positions[a:b],
                step=snap.step,
                time=snap.time_fs,
                velocities=snap.velocities[a:b] if self.velocities else None,
                forces=snap.forces[a:b] if self.forces else None,
                cell=snap.cell[k] if bool(snap.has_cell[k]) else None,
                potential_energy=float(snap.potential_energy[k]),
                kinetic_energy=float(snap.kinetic_energy[k]),
                temperature=float(snap.temperature[k]),
            )

    def flush(self) -> None:
        for s in self.stores:
            s.flush()

    def close(self) -> None:
        for s in self.stores:
            s.close()
        self.stores = []


# ---------------------------------------------------------------------- checkpoints
class CheckpointReporter(Reporter):
    """Full-state checkpoint every ``interval`` steps to ``path`` (atomic replace; see :mod:`.checkpoint`).

    ``keep=True`` also keeps a copy per checkpoint step (``<stem>.<step>.safetensors``).
    """

    needs_flush = True

    def __init__(
        self, path: str | os.PathLike, interval: int, *, keep: bool = False, overwrite: bool = True
    ) -> None:
        super().__init__(interval, report_initial=False)
        self.path = pathlib.Path(path)
        self.keep = keep
        self.overwrite = bool(overwrite)
        self.written: list[pathlib.Path] = []
        self.seconds = 0.0

    def check(self, sim: Simulation) -> None:
        # a resumed run replaces its own checkpoint; a fresh one only when asked (overwrite)
        check_output_file(self.path, "checkpoint", resume=sim.state.step > 0, overwrite=self.overwrite)

    def report(self, sim: Simulation, snap: Snapshot) -> None:
        t0 = time.perf_counter()
        sim.save_checkpoint(self.path)
        if self.keep:
            copy = self.path.with_name(f"{self.path.stem}.{snap.step:09d}{self.path.suffix}")
            sim.save_checkpoint(copy)
            self.written.append(copy)
        self.seconds += time.perf_counter() - t0


def check_output_file(
    path: str | os.PathLike, what: str, *, resume: bool, overwrite: bool, directory_ok: bool = False
) -> None:
    """Refuse an output ``path`` that a fresh run would replace, or that cannot be written.

    resume: the run continues (step > 0), so an existing file is appended to, not replaced.
    Raises :class:`~hyenamd.errors.OutputExistsError` for an existing file on a fresh run
    without ``overwrite``, :class:`~hyenamd.errors.HyenaError` for a directory where a file is
    expected or a parent directory that cannot be written. Touches nothing on disk.
    """
    from hyenamd.errors import HyenaError, OutputExistsError

    p = pathlib.Path(path)
    if p.is_dir() and not directory_ok:
        raise HyenaError(f"{what} {p} is a directory; give a file path")
    if p.exists() and not resume and not overwrite:
        raise OutputExistsError(
            f"{what} {p} already exists and this is a fresh run (step 0): it is not replaced; "
            "remove it, choose another path, or set reporters.overwrite: true"
        )
    parent = p.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise HyenaError(f"cannot create {what} {p}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise HyenaError(f"cannot write {what} {p}: permission denied in {parent}")
