"""What one rollout is (:class:`RolloutSpec`) and how it ended (:class:`RolloutResult`).

Both are frozen dataclasses of JSON values only, so they travel through Ray, the manifest and
YAML configs unchanged (``to_json``/``from_json`` round-trip exactly). A spec names:

* ``initial``: a frame store (``.h5``/``.zarr``) and ``frame`` (an index; negative counts from
  the end) holding the initial system; :func:`write_initial_store` writes one for a
  :class:`~hyenamd.System`;
* ``model``: ``{"kind": "checkpoint", "path": "model.safetensors"}`` (a G-Hyena checkpoint,
  loaded with :func:`hyenamd.surrogate.load_model`, never unpickled) or a named classical
  potential of :mod:`hyenamd.engine.potentials` with its parameters:
  ``{"kind": "lennard_jones", "sigma": 3.405, ...}``, ``{"kind": "zero"}`` (names, never
  import paths), or ``{"kind": "committee"}``: the mean of the spec's ``committee``; a
  checkpoint model may add ``"compile": true`` (or a ``torch.compile`` backend name, e.g.
  ``"aot_eager"``): the opt-in compiled small-system path
  (:mod:`hyenamd.engine.compile_switch`; ``false``, the default, is dropped from the spec);
* ``integrator``: ``{"kind": "velocity_verlet" | "langevin_baoab", "dt_fs": ..., ...}`` with
  the keyword arguments of :class:`~hyenamd.engine.VelocityVerlet` /
  :class:`~hyenamd.engine.LangevinBAOAB`;
* ``steps`` (total MD steps), ``report_interval`` (steps per trajectory frame; frame 0 is the
  initial state), ``checkpoint_interval`` (steps per engine checkpoint);
* ``output``: the trajectory store this rollout owns; its engine checkpoint is
  ``<output>.ckpt.safetensors`` and its spec sidecar ``<output>.spec.json``;
* ``seed`` and ``temperature_k`` (initial velocities when the frame has none), ``dtype``
  (``"float32"``/``"float64"`` or a torch dtype; stored as its name), ``device``, ``resources``
  (Ray: ``{"num_cpus": 1, "num_gpus": 0.25, "resources": {...}}``), ``guard``
  (:class:`~hyenamd.engine.guard.BlowUpGuard` limits: ``max_temperature_k``, ``max_force``,
  ``check_every``);
* ``committee``: two or more G-Hyena checkpoints (``[a.safetensors, b.safetensors, ...]``) that
  watch the run: the worker builds an :class:`~hyenamd.engine.uncertainty.UncertaintyGuard`
  from them and the ``guard`` dict, which may then also hold ``max_force_std`` (eV/Å) and
  ``action`` (``"stop"`` | ``"flag"``). The members must share species and ordering rule;
  :func:`hyenamd.cluster.worker.check_committees` loads them on the driver before any work. They are read from the
  (shared) file system by each worker, like ``initial``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from dataclasses import dataclass, field
from typing import Any

from hyenamd.errors import HyenaError

__all__ = [
    "INTEGRATOR_KINDS",
    "MODEL_KINDS",
    "STATUSES",
    "RolloutResult",
    "RolloutSpec",
    "SpecError",
    "write_initial_store",
]

MODEL_KINDS = ("checkpoint", "lennard_jones", "zero", "committee")
INTEGRATOR_KINDS = ("velocity_verlet", "langevin_baoab")
STATUSES = ("pending", "running", "completed", "failed")
STOP_REASONS = (None, "uncertainty", "blow_up", "error")
_DTYPES = ("float32", "float64")
#: the keys of a checkpoint model
CHECKPOINT_KEYS = ("kind", "path", "compile")
#: guard keys every rollout takes (BlowUpGuard) and those a committee adds (UncertaintyGuard)
GUARD_KEYS = ("max_temperature_k", "max_force", "check_every")
COMMITTEE_GUARD_KEYS = ("max_force_std", "action")


class SpecError(HyenaError, ValueError):
    """A rollout spec is malformed (raised before any work)."""


def _json_roundtrip(value: Any, what: str) -> Any:
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as e:
        raise SpecError(f"{what} must hold JSON values only: {e}") from e


@dataclass(frozen=True)
class RolloutSpec:
    """One rollout: initial frame, model, integrator, lengths, output (see the module docstring)."""

    name: str
    initial: str
    model: dict
    integrator: dict
    steps: int
    output: str
    frame: int = 0
    report_interval: int = 10
    checkpoint_interval: int = 100
    seed: int = 0
    temperature_k: float | None = None
    dtype: str = "float64"
    device: str = "cpu"
    resources: dict = field(default_factory=dict)
    guard: dict | None = None
    committee: list[str] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or "/" in self.name:
            raise SpecError(f"name must be a non-empty string without '/', got {self.name!r}")
        for key in ("steps", "report_interval", "checkpoint_interval", "frame", "seed"):
            if not isinstance(getattr(self, key), int) or isinstance(getattr(self, key), bool):
                raise SpecError(f"{self.name}: {key} must be an int, got {getattr(self, key)!r}")
        if self.steps < 0:
            raise SpecError(f"{self.name}: steps must be >= 0, got {self.steps}")
        if self.report_interval < 1 or self.checkpoint_interval < 1:
            raise SpecError(
                f"{self.name}: report_interval and checkpoint_interval must be >= 1 step, "
                f"got {self.report_interval}, {self.checkpoint_interval}"
            )
        self._normalise_dtype()
        if not isinstance(self.model, dict) or self.model.get("kind") not in MODEL_KINDS:
            raise SpecError(
                f"{self.name}: model must be a dict with 'kind' in {MODEL_KINDS}, got {self.model!r}"
            )
        if self.model["kind"] == "checkpoint" and not isinstance(self.model.get("path"), str):
            raise SpecError(f"{self.name}: a checkpoint model needs 'path' (a .safetensors file)")
        self._check_compile()
        if not isinstance(self.integrator, dict) or self.integrator.get("kind") not in INTEGRATOR_KINDS:
            raise SpecError(
                f"{self.name}: integrator must be a dict with 'kind' in {INTEGRATOR_KINDS}, got {self.integrator!r}"
            )
        if "dt_fs" not in self.integrator:
            raise SpecError(f"{self.name}: integrator needs 'dt_fs' (fs)")
        suffix = pathlib.Path(self.output).suffix
        if suffix not in (".h5", ".h5md", ".hdf5", ".zarr"):
            raise SpecError(f"{self.name}: output must be a .h5/.h5md/.hdf5/.zarr store, got {self.output!r}")
        self._check_committee_fields()
        for key in ("model", "integrator", "resources", "guard", "committee"):
            _json_roundtrip(getattr(self, key), f"{self.name}: {key}")

    def _normalise_dtype(self) -> None:
        """``dtype`` as its canonical name: ``"float32"``/``"float64"`` (also from torch dtypes)."""
        from hyenamd.dtypes import dtype_name

        try:
            name = dtype_name(self.dtype) if self.dtype is not None else None
        except ValueError as e:
            raise SpecError(f"{self.name}: {e}") from e
        if name not in _DTYPES:
            raise SpecError(
                f"{self.name}: dtype must be one of {_DTYPES} (or a torch dtype), got {self.dtype!r}"
            )
        object.__setattr__(self, "dtype", name)

    def _check_compile(self) -> None:
        """A checkpoint model's keys and its ``compile`` value (checked, no compiling); an
        explicit ``compile: false`` is dropped, so the spec equals one that never named it."""
        model = self.model
        if "compile" in model and model["kind"] != "checkpoint":
            raise SpecError(
                f"{self.name}: 'compile' applies to a G-Hyena checkpoint model (kind 'checkpoint'), "
                f"not to kind {model['kind']!r}"
            )
        if model["kind"] != "checkpoint":
            return
        unknown = sorted(set(model) - set(CHECKPOINT_KEYS))
        if unknown:
            raise SpecError(
                f"{self.name}: unknown checkpoint model keys {unknown}; valid keys: {list(CHECKPOINT_KEYS)}"
            )
        if "compile" not in model:
            return
        from hyenamd.engine.compile_switch import compile_backend

        if callable(model["compile"]):
            raise SpecError(f"{self.name}: model compile must be true, false or a backend name (JSON)")
        try:
            on = compile_backend(model["compile"], what="model compile") is not None
        except (TypeError, ValueError) as e:
            raise SpecError(f"{self.name}: {e}") from e
        if not on:
            object.__setattr__(self, "model", {k: v for k, v in model.items() if k != "compile"})

    def _check_committee_fields(self) -> None:
        """``committee`` (a list of >= 2 paths) and the ``guard`` keys it allows (no file access)."""
        if self.committee is not None:
            members = self.committee
            if isinstance(members, (str, bytes)) or not isinstance(members, (list, tuple)):
                raise SpecError(f"{self.name}: committee must be a list of checkpoint paths, got {members!r}")
            if len(members) < 2 or not all(isinstance(p, str) and p for p in members):
                raise SpecError(
                    f"{self.name}: committee needs two or more checkpoint paths (strings), got {members!r}"
                )
            if len(set(members)) != len(members):
                raise SpecError(f"{self.name}: committee lists a checkpoint twice: {members!r}")
            object.__setattr__(self, "committee", list(members))
        if self.model["kind"] == "committee" and self.committee is None:
            raise SpecError(
                f"{self.name}: model kind 'committee' integrates the spec's committee; give committee=[...]"
            )
        if self.model["kind"] == "committee" and len(self.model) > 1:
            raise SpecError(
                f"{self.name}: model kind 'committee' takes no parameters, got {sorted(self.model)}"
            )
        if self.guard is None:
            return
        if not isinstance(self.guard, dict):
            raise SpecError(f"{self.name}: guard must be a dict of limits, got {self.guard!r}")
        allowed = GUARD_KEYS + (COMMITTEE_GUARD_KEYS if self.committee is not None else ())
        unknown = sorted(set(self.guard) - set(allowed))
        if unknown:
            extra = (
                f"; {list(COMMITTEE_GUARD_KEYS)} need committee=[...] (checkpoints)"
                if set(unknown) & set(COMMITTEE_GUARD_KEYS) and self.committee is None
                else ""
            )
            raise SpecError(f"{self.name}: unknown guard keys {unknown}; valid keys: {list(allowed)}{extra}")
        from hyenamd.engine.guard import BlowUpGuard

        try:
            BlowUpGuard(**{k: v for k, v in self.guard.items() if k in GUARD_KEYS})
        except (TypeError, ValueError) as e:
            raise SpecError(f"{self.name}: guard: {e}") from e
        std = self.guard.get("max_force_std", 1.0)
        if isinstance(std, bool) or not isinstance(std, (int, float)) or not std > 0:
            raise SpecError(f"{self.name}: guard max_force_std must be a positive number (eV/Å), got {std!r}")
        if self.guard.get("action", "stop") not in ("stop", "flag"):
            raise SpecError(
                f"{self.name}: guard action must be 'stop' or 'flag', got {self.guard['action']!r}"
            )

    # ------------------------------------------------------------------ derived paths
    @property
    def checkpoint_path(self) -> str:
        """The engine checkpoint of this rollout (``<output>.ckpt.safetensors``)."""
        return self.output + ".ckpt.safetensors"

    @property
    def sidecar_path(self) -> str:
        """``<output>.spec.json``: the spec that owns ``output`` (a re-run must match it)."""
        return self.output + ".spec.json"

    @property
    def lock_path(self) -> str:
        """``<output>.worker.lock``: held (flock) by the one process running this rollout."""
        return self.output + ".worker.lock"

    @property
    def n_frames(self) -> int:
        """Frames of a finished rollout: the initial one and one per ``report_interval`` steps."""
        return 1 + self.steps // self.report_interval

    def absolute(self, base: str | os.PathLike | None = None) -> RolloutSpec:
        """This spec with ``initial``, ``output``, a checkpoint model's ``path`` and the
        ``committee`` paths made absolute against ``base`` (default: the current directory)."""
        root = os.fspath(base) if base is not None else os.getcwd()

        def ab(p: str) -> str:
            return os.path.normpath(os.path.join(root, p))

        model = dict(self.model)
        if model["kind"] == "checkpoint":
            model["path"] = ab(model["path"])
        committee = None if self.committee is None else [ab(p) for p in self.committee]
        return dataclasses.replace(
            self, initial=ab(self.initial), output=ab(self.output), model=model, committee=committee
        )

    def model_key(self) -> str:
        """Specs with equal keys share one model (one ``ray.put`` of its weights)."""
        return json.dumps(self.model, sort_keys=True)

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if (
            d["committee"] is None
        ):  # specs without one read exactly as before it existed (sidecars, manifests)
            del d["committee"]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> RolloutSpec:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise SpecError(f"unknown rollout spec keys {unknown}; valid keys: {sorted(names)}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> RolloutSpec:
        return cls.from_dict(json.loads(text))


@dataclass(frozen=True)
class RolloutResult:
    """How a rollout ended.

    status: ``"completed"`` or ``"failed"`` (``"pending"``/``"running"`` in a manifest only).
    step: the last MD step reached; frames: frames in the output store; error: the error's
    text for a failed rollout (a blow-up names step, system and cause); resumed_from: the
    checkpoint step this attempt started from (0: a fresh start); wall_s: seconds of this
    attempt; node_id / pid: where it ran (Ray node id, or ``"local"``).
    stop_reason: why a rollout ended before ``steps``: ``"uncertainty"`` (the committee's
    force spread exceeded ``max_force_std``), ``"blow_up"`` (NaN, temperature or force limit),
    ``"error"`` (anything else); None when it completed. uncertainty: for a spec with a
    committee, :meth:`hyenamd.engine.uncertainty.UncertaintyGuard.summary` of this attempt
    (checks, peak σ_F and its step, flags, the stop); ``{}`` otherwise.
    compile: the model's ``compile`` setting (False: off); compiled_calls / eager_calls: the
    model evaluations of this attempt that ran compiled / eagerly; compile_fallback: why the
    eager ones did (e.g. more atoms than the compiled path takes), None when every call ran
    compiled or compile is off (see :class:`hyenamd.engine.compile_switch.FallbackWatch`).
    """

    name: str
    status: str
    output: str
    step: int = 0
    frames: int = 0
    error: str | None = None
    error_type: str | None = None
    resumed_from: int = 0
    wall_s: float = 0.0
    node_id: str = "local"
    pid: int = 0
    timings: dict = field(default_factory=dict)
    stop_reason: str | None = None
    uncertainty: dict = field(default_factory=dict)
    compile: bool | str = False
    compiled_calls: int = 0
    eager_calls: int = 0
    compile_fallback: str | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise SpecError(f"status must be one of {STATUSES}, got {self.status!r}")
        if self.stop_reason not in STOP_REASONS:
            raise SpecError(f"stop_reason must be one of {STOP_REASONS}, got {self.stop_reason!r}")

    @property
    def ok(self) -> bool:
        return self.status == "completed"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> RolloutResult:
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> RolloutResult:
        return cls.from_dict(json.loads(text))


def write_initial_store(system, path: str | os.PathLike, *, overwrite: bool = False) -> str:
    """Write ``system`` (a :class:`~hyenamd.System`, velocities kept) as frame 0 of a new store."""
    from hyenamd.io import open_store

    fields = ("velocity",) if system.velocities is not None else ()
    pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open_store(path, "w", system=system, fields=fields, overwrite=overwrite) as st:
        st.append(
            system.positions.detach().cpu().numpy(),
            step=0,
            time=0.0,
            velocities=None if system.velocities is None else system.velocities.detach().cpu().numpy(),
            cell=None if system.cell is None else system.cell.detach().cpu().numpy(),
        )
    return str(path)
