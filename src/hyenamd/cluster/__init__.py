"""Ray-scheduled rollout ensembles and sharded inference (the only subpackage that imports ray).

Imports are lazy: ``import hyenamd.cluster`` and the plain :class:`RolloutWorker` never load
Ray; :func:`run_rollouts` and :func:`sharded_inference` import it when first used. See
``docs/cluster.md``.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "Manifest",
    "RolloutResult",
    "RolloutSpec",
    "RolloutWorker",
    "evaluate_frames",
    "run_rollouts",
    "sharded_inference",
    "write_initial_store",
]

_WHERE = {
    "RolloutSpec": "hyenamd.cluster.spec",
    "RolloutResult": "hyenamd.cluster.spec",
    "write_initial_store": "hyenamd.cluster.spec",
    "RolloutWorker": "hyenamd.cluster.worker",
    "Manifest": "hyenamd.cluster.manifest",
    "run_rollouts": "hyenamd.cluster.backend",
    "sharded_inference": "hyenamd.cluster.inference",
    "evaluate_frames": "hyenamd.cluster.inference",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'hyenamd.cluster' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
