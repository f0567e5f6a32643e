"""The Ray layer: :func:`run_rollouts` schedules :class:`RolloutWorker` s as Ray actors.

::

    results = run_rollouts(specs)                              # a fresh local Ray instance
    results = run_rollouts(specs, address="auto", num_gpus=0.25, manifest="runs/manifest.json")

* ``address=None`` starts a fresh local Ray instance (``ray.init(address="local")``; never a
  cluster that happens to run here), or uses the one this process already has, or joins the
  cluster in ``RAY_ADDRESS`` (set by ``ray job submit``); ``"auto"`` or ``"ray://host:10001"``
  joins a cluster (``ray start --head`` / ``ray start --address``). The manifest records which
  (``ray.mode``) and the GCS address actually connected to.
* Paths are made absolute on the driver before specs leave it; a request no node can satisfy
  (``num_gpus`` without GPUs) is refused at once (:class:`ResourceError`).
* Each distinct checkpoint model is read once and its ``.safetensors`` bytes put into the
  object store once (``ray.put``); actors fetch them only when they have not built that model
  yet, and rebuild it with :func:`hyenamd.surrogate.load_model` (no pickled code).
* Actors: each holds one :class:`~hyenamd.cluster.worker.RolloutWorker` and runs one rollout
  at a time with ``num_cpus``/``num_gpus``/custom ``resources`` from the spec (``num_gpus``
  may be fractional: 0.25 packs four actors on one GPU). ``max_in_flight`` bounds the
  rollouts submitted at once (default: as many actors as the cluster's free resources hold);
  the driver waits with ``ray.wait`` and shows a tqdm bar.
* Faults. An actor or node that dies (``RayActorError``, ``NodeDiedError``,
  ``WorkerCrashedError``, ``ObjectLostError``) is replaced by a new actor, which Ray places on
  a live node, and its rollout is resubmitted; the worker resumes from the rollout's last
  engine checkpoint, so the trajectory is bit-identical to an undisturbed run. After
  ``max_retries`` such failures of one rollout it is reported ``failed``. An error raised by
  the rollout itself (a blow-up, a bad spec) ends it as ``failed`` at once: it would only
  happen again.
* The manifest (:mod:`~hyenamd.cluster.manifest`) is rewritten atomically whenever a rollout
  starts, is retried or finishes; a re-run with the same manifest skips finished rollouts.

Why no batching of several rollouts into one :class:`~hyenamd.Batch` per actor: the engine
integrates a batch as one state, so its Langevin noise is drawn as one block, its Verlet list
is rebuilt for all systems together and its checkpoint and blow-up guard cover them all: a
batched rollout would no longer be bit-identical to the same spec run alone, and one blow-up
or node loss would fail or rewind all of its neighbours. Fractional GPUs (several actors per
GPU) pack small systems instead; see ``docs/cluster.md``.
"""

from __future__ import annotations

import collections
import json
import os
import pathlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import ray
import ray.exceptions as rex

from hyenamd.cluster.manifest import Manifest
from hyenamd.cluster.spec import RolloutResult, RolloutSpec

__all__ = [
    "SYSTEM_ERRORS",
    "ResourceError",
    "RolloutActor",
    "check_resources",
    "cluster_info",
    "ensure_ray",
    "run_rollouts",
]

#: Errors that mean the process or node died, not the rollout: these are retried.
SYSTEM_ERRORS = (
    rex.RayActorError,
    rex.NodeDiedError,
    rex.WorkerCrashedError,
    rex.ObjectLostError,
    rex.LocalRayletDiedError,
)


class RolloutActor:
    """The body of the Ray actor: a :class:`RolloutWorker` plus where it runs."""

    def __init__(self, lock_timeout_s: float = 60.0) -> None:
        from hyenamd.cluster.worker import RolloutWorker

        self.node_id = ray.get_runtime_context().get_node_id()
        self.worker = RolloutWorker(lock_timeout_s=lock_timeout_s, node_id=self.node_id)

    def where(self) -> tuple[str, int]:
        return self.node_id, os.getpid()

    def run(self, spec: dict, weights_ref: list) -> dict:
        """Run one spec; ``weights_ref``: ``[ObjectRef of the checkpoint's bytes]`` or ``[]``."""
        spec_obj = RolloutSpec.from_dict(spec)
        key = (spec_obj.model_key(), spec_obj.dtype, spec_obj.device)
        weights = ray.get(weights_ref[0]) if weights_ref and key not in self.worker._models else None
        return self.worker.run(spec_obj, weights=weights).to_dict()


_ACTOR_CLASS = None


def _actor_class():
    global _ACTOR_CLASS
    if _ACTOR_CLASS is None:
        _ACTOR_CLASS = ray.remote(RolloutActor)
    return _ACTOR_CLASS


#: how this process reached Ray (set by :func:`ensure_ray`): mode and what was asked for
_SESSION: dict[str, Any] = {}


def ensure_ray(address: str | None = None, **init_kwargs) -> bool:
    """Connect to Ray; returns True when this call started the connection.

    ``address=None`` starts a fresh local Ray instance (``ray.init(address="local")``): it never
    joins a cluster that happens to run on this machine, so "embedded" always means "this
    process's own Ray". The exception is ``RAY_ADDRESS`` in the environment (``ray job submit``
    sets it for the job's driver; users may export it): then that cluster is joined. An explicit
    ``address`` (``"auto"``, ``"host:6379"``, ``"ray://host:10001"``) joins that cluster.
    """
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    kwargs: dict[str, Any] = dict(init_kwargs)
    env = os.environ.get("RAY_ADDRESS")
    if address is None and not env:
        kwargs.setdefault("include_dashboard", False)
        ray.init(address="local", **kwargs)
        mode, requested = "embedded", None
    else:  # joining a cluster (an explicit address, or RAY_ADDRESS as set inside `ray job submit`)
        for key in ("num_cpus", "num_gpus", "include_dashboard", "resources"):
            kwargs.pop(key, None)
        ray.init(address=address or env, **kwargs)
        mode, requested = "joined", address or f"RAY_ADDRESS={env}"
    _SESSION.clear()
    _SESSION.update(mode=mode, requested=requested, gcs_address=_gcs_address())
    return True


def _gcs_address() -> str | None:
    try:
        return ray.get_runtime_context().gcs_address
    except Exception:  # pragma: no cover - depends on the Ray version
        return None


def cluster_info() -> dict:
    """What the manifest records about the Ray session: ``mode`` (``"embedded"``: a fresh local
    instance of this process; ``"joined"``: a cluster reached by address; ``"existing"``: Ray
    was initialised by the caller), ``address`` (the GCS address actually connected to),
    ``requested`` (the address asked for), ``nodes`` (alive) and the cluster's resources."""
    gcs = _gcs_address()
    mine = _SESSION.get("gcs_address") == gcs and gcs is not None
    nodes = [n for n in ray.nodes() if n["Alive"]]
    return {
        "mode": _SESSION["mode"] if mine else "existing",
        "address": gcs,
        "requested": _SESSION.get("requested") if mine else None,
        "nodes": len(nodes),
        "resources": {k: v for k, v in sorted(ray.cluster_resources().items()) if not k.startswith("node:")},
    }


class ResourceError(ValueError):
    """A rollout asks for resources that no node of the Ray cluster has."""


def check_resources(options: dict[str, dict]) -> None:
    """Refuse, before any work, a rollout whose request no alive node can satisfy (e.g.
    ``num_gpus`` on a cluster without GPUs: Ray would keep the actor pending forever).

    Clusters that autoscale add nodes only for pending work; for them, start the nodes first
    (:func:`wait_for_resources`) or submit with a request some node already satisfies.
    """
    nodes = [n["Resources"] for n in ray.nodes() if n["Alive"]]
    for name, opts in options.items():
        need = {"CPU": opts["num_cpus"], "GPU": opts.get("num_gpus", 0.0), **opts.get("resources", {})}
        need = {k: float(v) for k, v in need.items() if v}
        if not any(all(node.get(k, 0.0) >= v for k, v in need.items()) for node in nodes):
            offer = "; ".join(
                ", ".join(f"{k} {v:g}" for k, v in sorted(node.items()) if not k.startswith(("node:", "memory",
                          "object_store_memory", "accelerator_type")))
                for node in nodes
            )  # fmt: skip
            asked = ", ".join(f"{k} {v:g}" for k, v in need.items())
            raise ResourceError(
                f"rollout {name} asks for {asked} but no node of the Ray cluster ({_gcs_address()}) has "
                f"that much (nodes offer: {offer or 'nothing'}); lower the request (--num-gpus, "
                "resources) or add a node that has it"
            )


def _actor_options(spec: RolloutSpec, num_gpus: float | None) -> dict:
    res = dict(spec.resources)
    opts: dict[str, Any] = {"num_cpus": float(res.pop("num_cpus", 1))}
    gpus = res.pop("num_gpus", num_gpus)
    if gpus:
        opts["num_gpus"] = float(gpus)
    custom = res.pop("resources", None)
    if custom:
        opts["resources"] = dict(custom)
    if res:
        raise ValueError(f"{spec.name}: unknown resources {sorted(res)} (num_cpus, num_gpus, resources)")
    return opts


def _default_in_flight(options: list[dict]) -> int:
    """How many actors of the largest request fit in the cluster's resources now."""
    total = ray.cluster_resources()
    fits = []
    for opts in options:
        need = {"CPU": opts["num_cpus"], "GPU": opts.get("num_gpus", 0.0), **opts.get("resources", {})}
        fits.append(
            min(int(total.get(k, 0.0) // v) for k, v in need.items() if v > 0) if any(need.values()) else 1
        )
    return max(1, min(fits, default=1))


def _model_refs(specs: Sequence[RolloutSpec]) -> dict[str, Any]:
    """One ``ray.put`` of each distinct checkpoint's bytes."""
    refs: dict[str, Any] = {}
    for s in specs:
        key = s.model_key()
        if s.model["kind"] == "checkpoint" and key not in refs:
            path = pathlib.Path(s.model["path"])
            if not path.exists():
                raise FileNotFoundError(f"{s.name}: model checkpoint {path} does not exist")
            refs[key] = ray.put(path.read_bytes())
    return refs


def run_rollouts(
    specs: Sequence[RolloutSpec | dict],
    address: str | None = None,
    *,
    num_gpus: float | None = None,
    max_in_flight: int | None = None,
    manifest: str | os.PathLike | None = None,
    max_retries: int = 3,
    retry_failed: bool = False,
    lock_timeout_s: float = 60.0,
    progress: bool = True,
    on_result: Callable[[RolloutResult], None] | None = None,
    shutdown: bool | None = None,
    ray_init: dict | None = None,
) -> list[RolloutResult]:
    """Run ``specs`` as Ray actors; returns one :class:`RolloutResult` per spec, in order.

    address: None (a fresh local Ray instance, or the cluster in ``RAY_ADDRESS``; see
    :func:`ensure_ray`), ``"auto"`` or ``"ray://..."``. Relative paths of the specs and the
    manifest are made absolute here, against the driver's working directory. num_gpus: GPUs per rollout
    actor when a spec's ``resources`` does not say (fractions allowed). max_in_flight: rollouts
    submitted at once. manifest: JSON path (see :mod:`~hyenamd.cluster.manifest`); a re-run
    skips what it marks finished. max_retries: resubmissions after actor/node deaths per
    rollout. retry_failed: run ``failed`` rollouts of the manifest again. on_result: called in
    the driver with each finished result. shutdown: stop Ray at the end (default: only an
    instance this call started). ray_init: extra ``ray.init`` keyword arguments.
    """
    given = [RolloutSpec.from_dict(s) if isinstance(s, dict) else s for s in specs]
    check_output_paths([s.output for s in given] + ([os.fspath(manifest)] if manifest else []))
    # absolute on the driver: workers run in other directories (`ray start` cwd, job copies)
    specs = [s.absolute() for s in given]
    if manifest is not None:
        manifest = os.path.abspath(manifest)
    options = {s.name: _actor_options(s, num_gpus) for s in specs}  # validates before any work
    from hyenamd.cluster.worker import check_committees

    check_committees(specs)  # committee checkpoints: present, readable, members agree
    book = Manifest(manifest)
    to_run, skipped = book.plan(specs, retry_failed=retry_failed)
    started = ensure_ray(address, **(ray_init or {}))
    try:
        check_resources(options)
    except ResourceError:
        if started:
            ray.shutdown()
        raise
    book.doc["ray"] = cluster_info()
    book.write()
    pool: _ActorPool | None = None
    in_flight: dict[Any, tuple[RolloutSpec, Any, str]] = {}
    results: dict[str, RolloutResult] = {}
    bar = None
    try:
        refs = _model_refs(to_run)
        limit = int(max_in_flight) if max_in_flight else _default_in_flight(list(options.values()) or [{}])
        pool = _ActorPool(limit, lock_timeout_s)
        queue = collections.deque(to_run)
        if progress:
            from hyenamd.progress import progress_bar

            bar = progress_bar(
                total=len(specs), initial=len(skipped), unit="rollout", desc="rollouts", dynamic_ncols=True
            )
        while queue or in_flight:
            # work goes to ready actors only: an actor Ray cannot place (its node died, the
            # cluster shrank) never holds a rollout hostage while another actor is free
            for spec in list(queue):
                if len(in_flight) >= limit:
                    break
                got = pool.take(options[spec.name])
                if got is None:
                    continue
                queue.remove(spec)
                actor, node = got
                weights = [refs[spec.model_key()]] if spec.model_key() in refs else []
                in_flight[actor.run.remote(spec.to_dict(), weights)] = (spec, actor, node)
                book.started(spec.name, node)
                book.write()
            waiting = list(queue)[: max(0, limit - len(in_flight))]
            pool.start_for([options[s.name] for s in waiting])
            watch = list(in_flight) + pool.starting_refs()
            if not watch:  # nothing placed yet and nothing to start: the cluster has no room
                time.sleep(0.2)
                continue
            done, _ = ray.wait(watch, num_returns=1, timeout=1.0)
            for ref in done:
                if ref not in in_flight:
                    pool.ready(ref)
                    continue
                spec, actor, node = in_flight.pop(ref)
                try:
                    result = RolloutResult.from_dict(ray.get(ref))
                    pool.give_back(options[spec.name], actor, node)
                except SYSTEM_ERRORS as e:
                    pool.lost(actor)
                    msg = f"{type(e).__name__} on node {node}: {str(e).splitlines()[0] if str(e) else ''}"
                    if book.entry(spec.name)["retries"] < max_retries:
                        book.retried(spec.name, msg, node)
                        book.write()
                        queue.appendleft(spec)
                        continue
                    result = RolloutResult(
                        name=spec.name, status="failed", output=spec.output, node_id=node,
                        error=f"gave up after {max_retries} retries; last: {msg}", error_type=type(e).__name__,
                        stop_reason="error", compile=spec.model.get("compile", False),
                    )  # fmt: skip
                except rex.RayTaskError as e:  # the rollout itself raised (bad spec, unreadable store)
                    pool.give_back(options[spec.name], actor, node)
                    cause = e.cause if getattr(e, "cause", None) is not None else e
                    result = RolloutResult(
                        name=spec.name, status="failed", output=spec.output, node_id=node,
                        error=str(cause), error_type=type(cause).__name__, stop_reason="error",
                        compile=spec.model.get("compile", False),
                    )  # fmt: skip
                results[spec.name] = result
                book.finished(result)
                book.write()
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(failed=sum(not r.ok for r in results.values()), refresh=False)
                if on_result is not None:
                    on_result(result)
    finally:
        for _spec, actor, _node in in_flight.values():
            _kill(actor)
        if pool is not None:
            pool.close()
        book.write()
        if bar is not None:
            bar.close()
        if shutdown or (shutdown is None and started):
            ray.shutdown()
    return [results.get(s.name) or book.result(s.name) for s in specs]


class _ActorPool:
    """Rollout actors by their resource options: starting (not placed yet), ready (idle), busy.

    At most ``limit`` actors exist (busy + ready + starting). An actor is ready once its
    ``where()`` call returned, i.e. Ray placed and constructed it.
    """

    def __init__(self, limit: int, lock_timeout_s: float) -> None:
        self.limit, self.lock_timeout_s = limit, lock_timeout_s
        self.idle: dict[str, list] = collections.defaultdict(list)
        self.starting: dict[Any, tuple[str, Any]] = {}
        self.alive = 0

    @staticmethod
    def _key(opts: dict) -> str:
        return json.dumps(opts, sort_keys=True)

    def take(self, opts: dict):
        pool = self.idle[self._key(opts)]
        return pool.pop() if pool else None

    def give_back(self, opts: dict, actor, node: str) -> None:
        self.idle[self._key(opts)].append((actor, node))

    def start_for(self, waiting: list[dict]) -> None:
        """Start actors for rollouts that wait (one per rollout, minus those already starting)."""
        need = collections.Counter(self._key(o) for o in waiting)
        have = collections.Counter(k for k, _ in self.starting.values())
        for key, n in need.items():
            opts = json.loads(key)
            for _ in range(n - have[key]):
                if self.alive >= self.limit and not self._evict_idle(other_than=key):
                    return
                actor = _actor_class().options(max_restarts=0, **opts).remote(self.lock_timeout_s)
                self.starting[actor.where.remote()] = (key, actor)
                self.alive += 1

    def _evict_idle(self, other_than: str) -> bool:
        """Free the slot of an idle actor with other resources (specs of mixed resources)."""
        for key, idle in self.idle.items():
            if key != other_than and idle:
                actor, _node = idle.pop()
                self.lost(actor)
                return True
        return False

    def starting_refs(self) -> list:
        return list(self.starting)

    def ready(self, where_ref) -> None:
        key, actor = self.starting.pop(where_ref)
        try:
            node = ray.get(where_ref)[0]
        except SYSTEM_ERRORS:  # died while starting
            self.lost(actor)
            return
        self.idle[key].append((actor, node))

    def lost(self, actor) -> None:
        _kill(actor)
        self.alive -= 1

    def close(self) -> None:
        for pool in self.idle.values():
            for actor, _node in pool:
                _kill(actor)
        for _key, actor in self.starting.values():
            _kill(actor)
        self.idle.clear()
        self.starting.clear()


def _kill(actor) -> None:
    try:
        ray.kill(actor, no_restart=True)
    except Exception:  # already gone
        pass


def job_working_dir() -> str | None:
    """The working directory when it is Ray's temporary copy made for ``ray job submit
    --working-dir`` (``.../runtime_resources/working_dir_files/...``), else None."""
    cwd = os.getcwd()
    return cwd if "runtime_resources" in cwd and "working_dir_files" in cwd else None


def check_output_paths(paths: Sequence[str]) -> None:
    """Refuse relative output paths in a ``ray job submit --working-dir`` job: they would land in
    Ray's temporary copy of the working directory, deleted with the job."""
    copy = job_working_dir()
    rel = [p for p in paths if not os.path.isabs(p)]
    if copy and rel:
        raise ValueError(
            f"output paths {rel[:3]} are relative and this driver runs in Ray's temporary copy of the "
            f"working directory ({copy}): give absolute paths (e.g. --set output_dir=/shared/runs)"
        )


def wait_for_resources(timeout_s: float = 30.0, **need: float) -> None:
    """Block until the cluster offers ``need`` (e.g. ``CPU=2``): for freshly added nodes."""
    t0 = time.monotonic()
    while True:
        total = ray.cluster_resources()
        if all(total.get(k, 0.0) >= v for k, v in need.items()):
            return
        if time.monotonic() - t0 > timeout_s:
            raise TimeoutError(f"the Ray cluster offers {total}, not {need}, after {timeout_s} s")
        time.sleep(0.2)
