"""Comparisons of surrogate trajectories against reference MD: metrics, plots, reports.

    from hyenamd.validate import ValidateConfig, validate
    result = validate("reference.h5", "surrogate.h5", ValidateConfig(), out_dir="validation/")
    print(result.table())            # the metrics with pass/fail
    result.passed, result.metric("rdf_mae[O-O]").value

The metric functions (``structure``, ``torsions``, ``dynamics``, ``energy``, ``stability``,
``accuracy``) are pure numpy on arrays and can be used on their own; ``analysis`` streams a
trajectory through them, ``metrics`` compares two trajectories, ``report`` writes Markdown,
HTML, JSON and PNGs. Units: Å, fs, eV; D in Å²/ps; drift in meV/atom/ps. See docs/validation.md.
"""

from __future__ import annotations

from hyenamd.validate.config import Thresholds, ValidateConfig
from hyenamd.validate.metrics import Metric
from hyenamd.validate.runner import ValidationResult, validate
from hyenamd.validate.trajectory import ArrayTrajectory, Frame, Trajectory

__all__ = [
    "ArrayTrajectory",
    "Frame",
    "Metric",
    "Thresholds",
    "Trajectory",
    "ValidateConfig",
    "ValidationResult",
    "validate",
]
