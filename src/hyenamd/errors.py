"""The user-facing error hierarchy: every error hyenamd raises on bad input derives from
:class:`HyenaError`, so the ``hyenamd`` command prints it as one line (``--debug`` for the
traceback) and library users can catch them all with one ``except``.

Each concrete error also derives from the builtin exception it has always been
(``ValueError`` for bad input, ``RuntimeError`` for a failed run), so existing
``except ValueError`` code keeps working. This module imports nothing heavy.

=========================================  ============================  =======================
error                                      raised by                     for
=========================================  ============================  =======================
``hyenamd.config.ConfigError``             YAML configs, ``--set``       keys, types, values
``hyenamd.InvalidSystemError``             ``System``, ``Batch``, nbrs   positions, species, cell
``hyenamd.io.StoreError`` (+ subclasses)   ``open_store``, ``append``    stores and their frames
``...surrogate.checkpoint.CheckpointError``  ``load_model``              model checkpoints
``...engine.checkpoint.CheckpointError``   ``build_simulation``          engine checkpoints
``hyenamd.cluster.spec.SpecError``         rollout specs                 rollout YAML
``hyenamd.cluster.manifest.ManifestError`` rollout manifests             manifest JSON
``hyenamd.errors.OutputExistsError``       reporters, ``train``          files never overwritten
``hyenamd.errors.NonFiniteOutputError``    ASE calculator, OpenMM force  NaN/inf energies, forces
``hyenamd.engine.guard.BlowUpError``       ``Simulation.run``            a run that blew up
=========================================  ============================  =======================
"""

from __future__ import annotations

import math
import os
from pathlib import Path

__all__ = [
    "HyenaError",
    "NonFiniteOutputError",
    "OutputExistsError",
    "check_finite_outputs",
    "check_writable_dir",
    "one_line",
    "read_json_file",
]


class HyenaError(Exception):
    """Base of every user-facing hyenamd error: the message names the problem (and the file)."""


class OutputExistsError(HyenaError, FileExistsError):
    """An output file or directory already holds data and overwriting was not asked for."""


class NonFiniteOutputError(HyenaError, ValueError):
    """A model returned NaN or inf energies/forces (overlapping atoms, or a diverged model)."""


def check_finite_outputs(where: str, **values) -> None:
    """Raise :class:`NonFiniteOutputError` when any of ``values`` (arrays/tensors/floats) is NaN/inf.

    ``where`` names the caller (e.g. ``"HyenaCalculator"``); the message names the quantity and
    the first bad atom. Arrays may be numpy arrays, torch tensors or Python floats.
    """
    import numpy as np

    for name, v in values.items():
        if v is None:
            continue
        if hasattr(v, "detach"):
            v = v.detach().cpu().numpy()
        a = np.asarray(v, dtype=np.float64)
        ok = np.isfinite(a)
        if ok.all():
            continue
        first = np.argwhere(~ok)[0].tolist()
        kind = "NaN" if np.isnan(a).any() else "inf"
        at = f" (first at index {tuple(first)}{', atom ' + str(first[0]) if a.ndim == 2 else ''})"
        raise NonFiniteOutputError(
            f"{where}: the model returned {kind} {name}{at if a.ndim else ''}; atoms may overlap "
            "(check the smallest interatomic distance) or the model has diverged"
        )


def check_writable_dir(path: str | os.PathLike, what: str = "output directory") -> Path:
    """Create ``path`` (and parents) if missing and check it is a writable directory.

    Raises :class:`HyenaError` naming the directory instead of a late ``PermissionError`` on some
    file inside it.
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise HyenaError(f"{what} {p} is a file, not a directory")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise HyenaError(f"cannot create {what} {p}: {e.strerror or e}") from None
    if not os.access(p, os.W_OK | os.X_OK):
        raise HyenaError(f"{what} {p} is not writable")
    return p


def read_json_file(path: str | os.PathLike, what: str, error: type[Exception] = HyenaError):
    """Read a JSON file; a missing, unreadable or corrupt file raises ``error`` naming ``path``."""
    import json

    p = Path(path)
    if p.is_dir():
        raise error(f"{what} {p} is a directory, not a JSON file")
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise error(f"{what} {p} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise error(f"cannot read {what} {p}: {e}") from None
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except (json.JSONDecodeError, ValueError) as e:
        raise error(f"{what} {p} is corrupt (not valid JSON: {e})") from None


def _refuse_constant(name: str) -> float:
    # JSON written by Python may hold NaN/Infinity; keep them (numbers), never fail on them
    return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}[name]


def one_line(e: BaseException) -> str:
    """The message of ``e`` on one line (whitespace runs, including newlines, become one space)."""
    msg = " ".join(str(e).split())
    return msg or type(e).__name__
