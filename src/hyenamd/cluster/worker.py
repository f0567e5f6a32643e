"""The rollout worker: runs one :class:`~hyenamd.cluster.spec.RolloutSpec` on one device, no Ray.

::

    result = RolloutWorker().run(spec)            # a RolloutResult; resumes if spec.output exists

What it does, in order:

1. validates the spec and takes ``<output>.worker.lock`` (``flock``; waits up to
   ``lock_timeout_s`` for a dying previous owner, e.g. an actor on a node being removed, whose
   lock the kernel releases when its process ends) so one rollout never has two writers;
2. refuses an ``output`` that another spec owns (``<output>.spec.json`` differs) or that it does
   not own at all (a store with no sidecar): never overwrites data it did not write;
3. builds the model (checkpoint weights from a file or from bytes handed over by the Ray
   layer; a named classical potential; the mean of the spec's committee), the integrator and
   the guard (a :class:`~hyenamd.engine.uncertainty.UncertaintyGuard` on the spec's committee
   when it names one, else a :class:`~hyenamd.engine.guard.BlowUpGuard`);
4. resumes from ``<output>.ckpt.safetensors`` when it exists (bit-identical: the engine
   checkpoint holds the whole state and RNG; the trajectory reporter skips frames the
   interrupted attempt had written past the checkpoint, and the store drops a torn tail
   frame), else starts from the initial frame (replacing a partial store of its own that
   never reached a checkpoint);
5. runs to ``spec.steps`` with a trajectory reporter (positions, velocities, forces and
   energies every ``report_interval`` steps, frame 0 = initial state) and a checkpoint
   reporter (every ``checkpoint_interval`` steps, plus one at the end);
6. a :class:`~hyenamd.engine.BlowUpError` (or any other exception raised by the simulation)
   ends the rollout as ``"failed"`` with the error text; the frames before it stay written.
   The result's ``stop_reason`` says why (``"uncertainty"``: the committee disagreed;
   ``"blow_up"``; ``"error"``) and ``uncertainty`` holds the guard's summary (checks, peak
   force spread, flags) when a committee watched the run.
7. with ``model.compile``, calls that ran eagerly instead (e.g. a system above the compiled
   path's ``MAX_TOKENS`` atoms) are warned once per reason (``RuntimeWarning``: after the
   initial force evaluation of a fresh start, else at the end of the attempt) and recorded
   in the result (``compile``, ``compiled_calls``, ``eager_calls``, ``compile_fallback``).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import pathlib
import tempfile
import time
from typing import Any

import torch

from hyenamd.cluster.spec import RolloutResult, RolloutSpec, SpecError

__all__ = [
    "RolloutWorker",
    "build_committee",
    "build_integrator",
    "build_model",
    "check_committees",
    "load_initial_system",
]

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def build_committee(paths: list[str], *, dtype: torch.dtype, device: str):
    """The :class:`~hyenamd.engine.committee.Committee` of the checkpoints at ``paths``.

    SpecError (naming the files) for a missing or unreadable checkpoint, or members that
    differ in their species or sequence-ordering rule (a committee watches one system, so its
    members must read it the same way).
    """
    from hyenamd.engine.committee import Committee
    from hyenamd.surrogate import load_model
    from hyenamd.surrogate.ordering import model_ordering

    members = []
    for p in paths:
        if not pathlib.Path(p).is_file():
            raise SpecError(f"committee checkpoint {p} does not exist")
        try:
            members.append(load_model(p, device=device, dtype=dtype))
        except Exception as e:  # CheckpointError, a config this hyenamd cannot build, ...
            raise SpecError(f"committee checkpoint {p}: {e}") from e
    species = [tuple(m.cfg.species) for m in members]
    if len(set(species)) > 1:
        table = ", ".join(f"{p}: {list(s)}" for p, s in zip(paths, species))
        raise SpecError(f"committee members know different species ({table}); they must agree")
    rules = [model_ordering(m) for m in members]
    if len(set(rules)) > 1:
        table = ", ".join(f"{p}: {r}" for p, r in zip(paths, rules))
        raise SpecError(f"committee members order atoms by different rules ({table}); they must agree")
    return Committee(members)


def check_committees(specs) -> None:
    """Load every distinct committee of ``specs`` once on the CPU (see :func:`build_committee`).

    The driver calls it before any work, so a missing file or mismatched members fail at once
    with the spec's name rather than in every worker.
    """
    seen: set[tuple[str, ...]] = set()
    for spec in specs:
        if spec.committee is None or tuple(spec.committee) in seen:
            continue
        try:
            build_committee(spec.committee, dtype=_DTYPES[spec.dtype], device="cpu")
        except SpecError as e:
            raise SpecError(f"{spec.name}: {e}") from e
        seen.add(tuple(spec.committee))


# ---------------------------------------------------------------------- builders
def build_model(
    model: dict, *, dtype: torch.dtype, device: str, weights: bytes | None = None
) -> torch.nn.Module:
    """The potential named by a spec's ``model`` dict.

    ``checkpoint``: :func:`hyenamd.surrogate.load_model` of ``model["path"]``, or of ``weights``
    (the bytes of that ``.safetensors`` file, as the Ray layer ships them) when given; with
    ``model["compile"]`` wrapped in :class:`~hyenamd.surrogate.compiled.CompiledGHyena`
    (:func:`hyenamd.engine.compile_switch.compiled_potential`; it compiles on its first call).
    ``lennard_jones``: :class:`~hyenamd.engine.potentials.LennardJones` with the other keys as
    keyword arguments; ``zero``: :class:`~hyenamd.engine.potentials.ZeroPotential`.
    """
    kind = model.get("kind")
    params = {k: v for k, v in model.items() if k != "kind"}
    if kind == "committee":
        raise SpecError(
            "model kind 'committee' is the spec's committee: build it with build_committee(paths)"
        )
    if kind == "checkpoint":
        from hyenamd.engine.compile_switch import compile_backend, compiled_potential
        from hyenamd.surrogate import load_model

        compile = params.get("compile", False)
        try:
            compile_backend(compile, what="model compile")  # before the file is read
        except (TypeError, ValueError) as e:
            raise SpecError(str(e)) from e
        if weights is None:
            model = load_model(params["path"], device=device, dtype=dtype)
        else:
            with tempfile.TemporaryDirectory(prefix="hyenamd-model-") as tmp:
                path = pathlib.Path(tmp) / "model.safetensors"
                path.write_bytes(weights)
                model = load_model(path, device=device, dtype=dtype)
        return compiled_potential(model, compile, what="model compile")  # a checkpoint is a G-Hyena
    from hyenamd.engine.potentials import LennardJones, ZeroPotential

    if kind == "lennard_jones":
        try:
            pot = LennardJones(**params)
        except TypeError as e:
            raise SpecError(f"lennard_jones model parameters {sorted(params)}: {e}") from e
        return pot.to(device=device, dtype=dtype)
    if kind == "zero":
        if params:
            raise SpecError(f"the zero potential takes no parameters, got {sorted(params)}")
        return ZeroPotential()
    raise SpecError(f"unknown model kind {kind!r}")


def build_integrator(integrator: dict, potential: torch.nn.Module):
    """A :class:`~hyenamd.engine.VelocityVerlet` or :class:`~hyenamd.engine.LangevinBAOAB` from a spec dict."""
    from hyenamd.engine.integrators import LangevinBAOAB, VelocityVerlet

    kind = integrator.get("kind")
    params = {k: v for k, v in integrator.items() if k != "kind"}
    cls = {"velocity_verlet": VelocityVerlet, "langevin_baoab": LangevinBAOAB}.get(kind)
    if cls is None:
        raise SpecError(f"unknown integrator kind {kind!r}")
    try:
        return cls(potential, **params)
    except TypeError as e:
        raise SpecError(f"{kind} parameters {sorted(params)}: {e}") from e


def load_initial_system(spec: RolloutSpec):
    """Frame ``spec.frame`` of ``spec.initial`` as a :class:`~hyenamd.System` on the spec's device/dtype."""
    from hyenamd.io import open_store

    if not pathlib.Path(spec.initial).exists():
        raise SpecError(f"{spec.name}: initial store {spec.initial} does not exist")
    with open_store(spec.initial, "r") as st:
        system = st[spec.frame]
    return system.to(spec.device, _DTYPES[spec.dtype])


# ---------------------------------------------------------------------- the lock
class _Lock:
    """An exclusive ``flock`` on ``path``, waited for up to ``timeout_s`` seconds."""

    def __init__(self, path: str, timeout_s: float) -> None:
        self.path, self.timeout_s, self.fd = path, timeout_s, None

    def __enter__(self) -> _Lock:
        pathlib.Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() > deadline:
                    os.close(fd)
                    raise RuntimeError(
                        f"{self.path} is held by another process running this rollout "
                        f"(waited {self.timeout_s:g} s)"
                    ) from e
                time.sleep(0.1)
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing releases the flock; the file stays (harmless)
            self.fd = None


def _atomic_write(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _owned(spec: RolloutSpec) -> dict:
    """The parts of a spec that fix its trajectory (resources and name may change between runs,
    and ``steps`` may grow: a longer run continues the same trajectory from its checkpoint)."""
    d = spec.to_dict()
    for key in ("resources", "name", "steps"):
        d.pop(key)
    return d


# ---------------------------------------------------------------------- the worker
class RolloutWorker:
    """Runs rollouts one at a time in this process (see the module docstring).

    lock_timeout_s: how long to wait for ``<output>.worker.lock``. node_id: recorded in results
    (the Ray layer passes the node id). Models are cached per (model, dtype, device), so an
    actor that runs many rollouts of one model loads it once.
    """

    def __init__(self, *, lock_timeout_s: float = 60.0, node_id: str = "local") -> None:
        self.lock_timeout_s = float(lock_timeout_s)
        self.node_id = node_id
        self._models: dict[tuple, torch.nn.Module] = {}

    def model(self, spec: RolloutSpec, weights: bytes | None = None) -> torch.nn.Module:
        if spec.model["kind"] == "committee":
            return self.committee(spec)
        key = (spec.model_key(), spec.dtype, spec.device)
        if key not in self._models:
            self._models[key] = build_model(
                spec.model, dtype=_DTYPES[spec.dtype], device=spec.device, weights=weights
            )
        return self._models[key]

    def committee(self, spec: RolloutSpec) -> torch.nn.Module:
        """The spec's :class:`~hyenamd.engine.committee.Committee` (cached like the models)."""
        key = ("committee", tuple(spec.committee), spec.dtype, spec.device)
        if key not in self._models:
            self._models[key] = build_committee(spec.committee, dtype=_DTYPES[spec.dtype], device=spec.device)
        return self._models[key]

    def guard(self, spec: RolloutSpec):
        """A fresh guard for one run: :class:`UncertaintyGuard` with a committee, else :class:`BlowUpGuard`."""
        from hyenamd.engine.guard import BlowUpGuard
        from hyenamd.engine.uncertainty import UncertaintyGuard

        limits = dict(spec.guard or {})
        if spec.committee is None:
            return BlowUpGuard(**limits)
        return UncertaintyGuard(committee=self.committee(spec), **limits)

    def run(self, spec: RolloutSpec | dict, weights: bytes | None = None) -> RolloutResult:
        """Run (or resume, or just report) ``spec``; returns its :class:`RolloutResult`."""
        if isinstance(spec, dict):
            spec = RolloutSpec.from_dict(spec)
        t0 = time.perf_counter()
        out = pathlib.Path(spec.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        with _Lock(spec.lock_path, self.lock_timeout_s):
            from hyenamd.engine.compile_switch import FallbackWatch

            potential = self.model(spec, weights)  # bad model/committee files: refused before
            integrator = build_integrator(spec.integrator, potential)
            guard = self.guard(spec)  # the output or its sidecar is touched
            self._check_owner(spec)
            fallbacks = FallbackWatch(potential)  # a compiled model's eager calls: warned, recorded
            sim, resumed = self._simulation(spec, integrator, guard)
            fallbacks.check()  # a fresh start evaluated the initial forces
            status, error, error_type, stop_reason = "completed", None, None, None
            try:
                sim.run_to(spec.steps)
                sim.flush()
                if sim.step % spec.checkpoint_interval:
                    sim.save_checkpoint(spec.checkpoint_path)
                sim.close()
            except Exception as e:  # the application's error: reported, never retried by Ray
                status, error, error_type = "failed", str(e), type(e).__name__
                stop_reason = _stop_reason(e, guard)
                try:
                    sim.close()
                except Exception as e2:  # the first error stays the reported one
                    error += f" (while closing: {e2!r})"
            fallbacks.check()
            step = int(sim.step)
            frames = self._frames(spec)
        return RolloutResult(
            name=spec.name,
            status=status,
            output=spec.output,
            step=step,
            frames=frames,
            error=error,
            error_type=error_type,
            resumed_from=resumed,
            wall_s=time.perf_counter() - t0,
            node_id=self.node_id,
            pid=os.getpid(),
            timings={k: round(v, 6) for k, v in sim.timing_summary().items()},
            stop_reason=stop_reason,
            uncertainty=guard.summary() if hasattr(guard, "summary") else {},
            compile=spec.model.get("compile", False),
            **fallbacks.summary(),
        )

    # ------------------------------------------------------------------ helpers
    def _check_owner(self, spec: RolloutSpec) -> None:
        side = pathlib.Path(spec.sidecar_path)
        if side.exists():
            saved = json.loads(side.read_text())
            if saved != _owned(spec):
                diff = sorted(
                    k for k in set(saved) | set(_owned(spec)) if saved.get(k) != _owned(spec).get(k)
                )
                raise SpecError(
                    f"{spec.name}: {spec.output} belongs to a rollout with other settings ({diff} differ, "
                    f"see {side}); choose another output or delete it"
                )
        elif pathlib.Path(spec.output).exists():
            raise SpecError(
                f"{spec.name}: {spec.output} exists but was not written by a rollout ({side} is missing); "
                "refusing to overwrite it"
            )
        else:
            _atomic_write(str(side), json.dumps(_owned(spec), sort_keys=True))

    def _simulation(self, spec: RolloutSpec, integrator: Any, guard: Any):
        from hyenamd.engine.reporters import CheckpointReporter, TrajectoryReporter
        from hyenamd.engine.simulation import Simulation

        reporters = [
            TrajectoryReporter(spec.output, spec.report_interval, overwrite=True),
            CheckpointReporter(spec.checkpoint_path, spec.checkpoint_interval),
        ]
        ckpt = pathlib.Path(spec.checkpoint_path)
        if ckpt.exists() and pathlib.Path(spec.output).exists():
            sim = Simulation.from_checkpoint(ckpt, integrator, reporters, device=spec.device, guard=guard)
            if sim.step > spec.steps:
                raise SpecError(
                    f"{spec.name}: {ckpt} is at step {sim.step}, past steps = {spec.steps}; "
                    "a rollout can be extended, not shortened"
                )
            return sim, int(sim.step)
        ckpt.unlink(missing_ok=True)  # a checkpoint without its trajectory is useless
        system = load_initial_system(spec)
        sim = Simulation(
            integrator, system, reporters, guard=guard, temperature_k=spec.temperature_k, seed=spec.seed
        )
        return sim, 0

    @staticmethod
    def _frames(spec: RolloutSpec) -> int:
        from hyenamd.io import open_store

        if not pathlib.Path(spec.output).exists():
            return 0
        with open_store(spec.output, "r") as st:
            return len(st)


def _stop_reason(error: Exception, guard: Any) -> str:
    """``"uncertainty"`` when the committee guard stopped the run, ``"blow_up"`` for the other
    guard limits, ``"error"`` for anything else."""
    from hyenamd.engine.guard import BlowUpError

    if not isinstance(error, BlowUpError):
        return "error"
    stopped = getattr(guard, "record", {}).get("stopped")
    return "uncertainty" if stopped is not None and stopped.step == error.step else "blow_up"
