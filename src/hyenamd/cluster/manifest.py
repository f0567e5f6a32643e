"""The manifest of a rollout ensemble: one JSON file, replaced atomically after every change.

Layout (``format = "hyenamd.cluster.manifest"``, ``version = 1``)::

    {"format": ..., "version": 1, "created": ISO time, "updated": ISO time,
     "versions": {"hyenamd": ..., "ray": ..., "torch": ..., "python": ...},
     "ray": {"mode": "embedded", "address": "10.0.0.1:6379", "requested": null, "nodes": n, "resources": {...}},
     "rollouts": {name: {"spec": {...RolloutSpec...}, "status": "pending|running|completed|failed",
                         "output": path, "checkpoint": path, "attempts": n, "retries": n,
                         "node_ids": [node of each attempt], "running_on": node of the current one,
                         "errors": [system errors retried],
                         "submitted": time, "finished": time, "wall_s": seconds of all attempts,
                         "result": {...RolloutResult of the last attempt...} | null}}}

A re-run with the same manifest skips rollouts that are ``completed`` (and ``failed`` ones,
unless asked to retry them: a blow-up is deterministic and would happen again); the others
run again, resuming from their checkpoints. A spec whose trajectory-defining settings
changed under the same name is refused (:class:`ManifestError`).
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import platform

from hyenamd.cluster.spec import RolloutResult, RolloutSpec
from hyenamd.errors import HyenaError, read_json_file

__all__ = ["FORMAT", "Manifest", "ManifestError"]

FORMAT = "hyenamd.cluster.manifest"
VERSION = 1


class ManifestError(HyenaError, ValueError):
    """A manifest is not ours, or disagrees with the specs of a re-run."""


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")


def _versions() -> dict:
    import torch

    import hyenamd

    out = {"hyenamd": hyenamd.__version__, "torch": torch.__version__, "python": platform.python_version()}
    try:
        import ray

        out["ray"] = ray.__version__
    except ImportError:  # pragma: no cover - ray is a dependency of the cluster layer
        out["ray"] = None
    return out


def _same_run(a: dict, b: dict) -> bool:
    """Two spec dicts describe the same trajectory (resources may change between runs)."""
    keep = lambda d: {k: v for k, v in d.items() if k != "resources"}  # noqa: E731
    return keep(a) == keep(b)


_ENTRY_KEYS = ("spec", "status", "output", "attempts", "retries", "node_ids", "errors", "wall_s", "result")


def _check_entries(path: pathlib.Path, doc: dict) -> None:
    """Refuse a manifest whose entries lack the keys the scheduler reads (a damaged file)."""
    rollouts = doc.get("rollouts")
    if not isinstance(rollouts, dict):
        raise ManifestError(f"rollout manifest {path} is corrupt: 'rollouts' is not a mapping")
    for name, e in rollouts.items():
        missing = [k for k in _ENTRY_KEYS if not isinstance(e, dict) or k not in e]
        if missing:
            raise ManifestError(
                f"rollout manifest {path} is corrupt: entry {name!r} lacks {missing}; "
                "move the file away to start a fresh manifest"
            )
        if not isinstance(e["spec"], dict) or e["status"] not in (
            "pending",
            "running",
            "completed",
            "failed",
        ):
            raise ManifestError(
                f"rollout manifest {path} is corrupt: entry {name!r} has a bad spec or status"
            )


class Manifest:
    """Read-modify-write access to a manifest file (``path=None``: kept in memory only)."""

    def __init__(self, path: str | os.PathLike | None) -> None:
        self.path = None if path is None else pathlib.Path(path)
        if self.path is not None and self.path.exists():
            doc = read_json_file(self.path, "rollout manifest", ManifestError)
            if not isinstance(doc, dict):
                raise ManifestError(f"rollout manifest {self.path} is corrupt (a JSON {type(doc).__name__})")
            if doc.get("format") != FORMAT:
                raise ManifestError(f"{self.path} is not a rollout manifest (format {doc.get('format')!r})")
            if int(doc.get("version", 0)) > VERSION:
                raise ManifestError(f"{self.path} has manifest version {doc['version']} > {VERSION}")
            _check_entries(self.path, doc)
            self.doc = doc
        else:
            self.doc = {"format": FORMAT, "version": VERSION, "created": _now(), "rollouts": {}}
        self.doc["versions"] = _versions()

    @property
    def rollouts(self) -> dict[str, dict]:
        return self.doc["rollouts"]

    def entry(self, name: str) -> dict:
        return self.rollouts[name]

    # ------------------------------------------------------------------ planning
    def plan(
        self, specs: list[RolloutSpec], *, retry_failed: bool = False
    ) -> tuple[list[RolloutSpec], list[str]]:
        """Register ``specs``; returns ``(to_run, skipped_names)``. Raises on a changed spec."""
        names = [s.name for s in specs]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ManifestError(f"rollout names must be unique; repeated: {dup}")
        outs = [s.output for s in specs]
        dup = sorted({o for o in outs if outs.count(o) > 1})
        if dup:
            raise ManifestError(f"rollouts must not share an output store; shared: {dup}")
        to_run, skipped = [], []
        for s in specs:
            e = self.rollouts.get(s.name)
            if e is not None and not _same_run(e["spec"], s.to_dict()):
                raise ManifestError(
                    f"rollout {s.name!r} is in {self.path} with other settings; rename it or use another manifest"
                )
            if e is None:
                e = self.rollouts[s.name] = {
                    "spec": s.to_dict(),
                    "status": "pending",
                    "output": s.output,
                    "checkpoint": s.checkpoint_path,
                    "attempts": 0,
                    "retries": 0,
                    "node_ids": [],
                    "errors": [],
                    "submitted": None,
                    "finished": None,
                    "wall_s": 0.0,
                    "result": None,
                }
            e["spec"] = s.to_dict()
            done = e["status"] == "completed" or (e["status"] == "failed" and not retry_failed)
            if done and pathlib.Path(s.output).exists():
                skipped.append(s.name)
            else:
                e["status"] = "pending"
                to_run.append(s)
        return to_run, skipped

    # ------------------------------------------------------------------ updates
    def started(self, name: str, node_id: str) -> None:
        e = self.rollouts[name]
        e["status"] = "running"
        e["running_on"] = node_id
        e["attempts"] += 1
        e["submitted"] = e["submitted"] or _now()

    def retried(self, name: str, error: str, node_id: str) -> None:
        """A system failure (actor or node died): the rollout goes back to the queue."""
        e = self.rollouts[name]
        e["node_ids"].append(node_id)
        e["status"] = "pending"
        e["retries"] += 1
        e["errors"].append({"time": _now(), "error": error})

    def finished(self, result: RolloutResult) -> None:
        e = self.rollouts[result.name]
        e["status"] = result.status
        e["result"] = result.to_dict()
        e["finished"] = _now()
        e["wall_s"] = round(e["wall_s"] + result.wall_s, 6)
        e["node_ids"].append(result.node_id)

    def result(self, name: str) -> RolloutResult | None:
        r = self.rollouts[name]["result"]
        return None if r is None else RolloutResult.from_dict(r)

    def write(self) -> None:
        """Replace the file atomically (temporary file + ``os.replace``)."""
        self.doc["updated"] = _now()
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")
        with open(tmp, "w") as f:
            json.dump(self.doc, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
