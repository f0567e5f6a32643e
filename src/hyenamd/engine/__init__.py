"""Integrators, the simulation driver, reporters, checkpoints and the ASE/OpenMM adapters.

Everything is imported lazily (module ``__getattr__``): ``import hyenamd.engine`` loads
neither ASE nor OpenMM; ``from hyenamd.engine import HyenaCalculator`` imports ASE then.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "BlowUpError",
    "BlowUpGuard",
    "CheckpointReporter",
    "Committee",
    "HyenaCalculator",
    "LangevinBAOAB",
    "LearnedPropagator",
    "MDState",
    "Simulation",
    "StateDataReporter",
    "TrajectoryReporter",
    "UncertaintyGuard",
    "VelocityVerlet",
    "load_checkpoint",
    "save_checkpoint",
]

_WHERE = {
    "MDState": "hyenamd.engine.state",
    "VelocityVerlet": "hyenamd.engine.integrators",
    "LangevinBAOAB": "hyenamd.engine.integrators",
    "LearnedPropagator": "hyenamd.engine.learned",
    "Simulation": "hyenamd.engine.simulation",
    "BlowUpGuard": "hyenamd.engine.guard",
    "BlowUpError": "hyenamd.engine.guard",
    "StateDataReporter": "hyenamd.engine.reporters",
    "TrajectoryReporter": "hyenamd.engine.reporters",
    "CheckpointReporter": "hyenamd.engine.reporters",
    "save_checkpoint": "hyenamd.engine.checkpoint",
    "load_checkpoint": "hyenamd.engine.checkpoint",
    "HyenaCalculator": "hyenamd.engine.ase_calculator",
    "Committee": "hyenamd.engine.committee",
    "UncertaintyGuard": "hyenamd.engine.uncertainty",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'hyenamd.engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
