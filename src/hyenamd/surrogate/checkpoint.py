"""Model checkpoints: one ``.safetensors`` file, weights plus a JSON description. Never unpickles.

Layout (format version 1): the tensors are the model's ``state_dict`` (parameters and
buffers, names as in PyTorch); the safetensors metadata (string → string) holds

* ``"format"``: ``"hyenamd.checkpoint"``; ``"format_version"``: ``"1"``;
* ``"hyenamd"``: a JSON object with ``model`` (class name), ``config`` (the
  :class:`~hyenamd.surrogate.model.GHyenaConfig` as a mapping), ``species``, ``cutoff`` (Å),
  ``units``, ``dtype`` (of the saved tensors), ``ordering`` (the sequence-order rule, also in
  ``config``; checkpoints without it load with :func:`legacy_ordering` and a warning;
  files written before issue 12 load with the maths they were trained with, see
  :mod:`hyenamd.surrogate.checkpoint_legacy`),
  ``hyenamd_version``, ``n_parameters`` and ``training`` (the ``**metadata`` given to
  :func:`save_model`: data set, steps, errors, ...; any JSON-able values).

:func:`load_model` reads only JSON and raw tensors (``safetensors.safe_open``): a file can
never execute code. Every way a file can be wrong raises :class:`CheckpointError` naming the
problem: unreadable/truncated file, foreign or missing format tag, unsupported format
version, unknown or invalid config key, missing or unexpected tensors, shape mismatches.
:func:`save_model` writes to a temporary file and renames it, so an existing checkpoint is
never left half-written.
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
import warnings
from typing import Any

import torch

from hyenamd.config import ConfigError, from_dict, to_dict
from hyenamd.dtypes import resolve_dtype
from hyenamd.errors import HyenaError
from hyenamd.surrogate.checkpoint_legacy import legacy_ordering, migrate, pre12_fill_values
from hyenamd.surrogate.model import GHyena, GHyenaConfig

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "CheckpointError",
    "describe_checkpoint",
    "legacy_ordering",
    "load_model",
    "save_model",
]

FORMAT = "hyenamd.checkpoint"
FORMAT_VERSION = 1
UNITS = {"length": "Å", "energy": "eV", "time": "fs", "mass": "amu", "force": "eV/Å", "stress": "eV/Å³"}
_DTYPE_NAMES = {torch.float32: "float32", torch.float64: "float64"}


class CheckpointError(HyenaError, ValueError):
    """A checkpoint file is unreadable, foreign, of an unsupported version, or does not fit the model."""


def _version() -> str:
    from hyenamd import __version__

    return __version__


def save_model(model: GHyena, path: str | os.PathLike, **metadata: Any) -> pathlib.Path:
    """Write ``model`` to ``path`` (one ``.safetensors`` file); ``metadata`` = training-data summary (JSON-able).

    Returns the path written. The file is replaced atomically.
    """
    if not isinstance(model, GHyena):
        raise TypeError(f"save_model expects a GHyena model, got {type(model).__name__}")
    from safetensors.torch import save_file

    path = pathlib.Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"checkpoint path must end in .safetensors, got {path.name!r}")
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    info = {
        "model": type(model).__name__,
        "config": to_dict(model.cfg),
        "species": list(model.cfg.species),
        "cutoff": model.cutoff,
        "units": UNITS,
        "dtype": _DTYPE_NAMES.get(model.dtype, str(model.dtype)),
        "ordering": model.cfg.ordering,
        "hyenamd_version": _version(),
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "training": metadata,
    }
    try:
        text = json.dumps(info, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"checkpoint metadata must be JSON-serialisable (str, numbers, lists, dicts): {e}"
        ) from e
    meta = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "hyenamd": text}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(state, tmp, metadata=meta)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _read_header(path: pathlib.Path) -> tuple[dict[str, Any], dict[str, tuple[int, ...]]]:
    """The JSON description and the tensor shapes of a checkpoint (checks format and version)."""
    from safetensors import safe_open

    if path.is_dir():
        raise CheckpointError(f"{path} is a directory; give the checkpoint file (.safetensors)")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error type for every malformed file
        raise CheckpointError(
            f"{path} is not a readable safetensors file (truncated or corrupt?): {e}"
        ) from e
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a hyenamd checkpoint (metadata 'format' is {meta.get('format')!r}, "
            f"expected {FORMAT!r})"
        )
    version = meta.get("format_version")
    if version != str(FORMAT_VERSION):
        raise CheckpointError(
            f"{path} has checkpoint format version {version!r}; this hyenamd ({_version()}) reads "
            f"version {FORMAT_VERSION}"
        )
    try:
        info = json.loads(meta["hyenamd"])
    except (KeyError, json.JSONDecodeError) as e:
        raise CheckpointError(
            f"{path}: the 'hyenamd' metadata entry is missing or not valid JSON ({e})"
        ) from e
    if not isinstance(info, dict) or "config" not in info:
        raise CheckpointError(f"{path}: the 'hyenamd' metadata has no 'config' entry")
    if info.get("model", "GHyena") != "GHyena":
        raise CheckpointError(
            f"{path} holds a {info.get('model')!r} model; load_model reads GHyena checkpoints"
        )
    return info, shapes


def load_model(
    path: str | os.PathLike,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str | None = None,
    *,
    ordering: str | None = None,
) -> GHyena:
    """Rebuild the model saved at ``path`` on ``device`` (dtype: the saved one unless given). Eval mode.

    dtype: ``"float32"``, ``"float64"``, ``torch.float32``/``torch.float64`` or None
    (:func:`hyenamd.dtypes.resolve_dtype`; anything else is a ``ValueError`` before the file is read).
    ordering: override the checkpoint's ordering rule (for checkpoints written before the rule
    was recorded, whose rule is inferred by :func:`legacy_ordering` with a warning).
    """
    from safetensors import safe_open

    dtype = resolve_dtype(dtype)
    path = pathlib.Path(path)
    info, shapes = _read_header(path)
    migration = migrate(info, ordering)  # files older than issue 12: the settings they were trained with
    try:
        cfg = from_dict(GHyenaConfig, migration.config, source=f"{path} (config)")
    except ConfigError as e:
        raise CheckpointError(f"{path}: its config does not fit this hyenamd: {e}") from e
    saved_dtype = {"float32": torch.float32, "float64": torch.float64}.get(info.get("dtype", cfg.dtype))
    if saved_dtype is None:
        raise CheckpointError(f"{path}: unsupported dtype {info.get('dtype')!r} (float32 or float64)")
    if list(info.get("species", cfg.species)) != list(cfg.species):
        raise CheckpointError(
            f"{path}: its species table {info.get('species')} disagrees with its config's "
            f"{list(cfg.species)} (a tampered or damaged file)"
        )
    # shapes and dtypes come from a model built on the meta device (no memory), so a header
    # claiming a huge model is refused before anything is allocated
    with torch.device("meta"):
        meta_model = GHyena(cfg).to(saved_dtype)
        expected_sd = meta_model.state_dict()
    expected = {k: tuple(v.shape) for k, v in expected_sd.items()}
    # a pre-issue-12 file lacks the learned norm floors and pre-norm gains: filled with the
    # values that make them the identity of its maths (checkpoint_legacy.py)
    fill = pre12_fill_values(meta_model, cfg.norm_eps) if migration.pre12 else {}
    fill = {k: v for k, v in fill.items() if k in expected and k not in shapes}
    missing = sorted(set(expected) - set(shapes) - set(fill))
    extra = sorted(set(shapes) - set(expected))
    if missing or extra:
        raise CheckpointError(
            f"{path}: tensors do not match the model built from its config "
            f"(missing: {missing[:8]}{' ...' if len(missing) > 8 else ''}; "
            f"unexpected: {extra[:8]}{' ...' if len(extra) > 8 else ''})"
        )
    wrong = [f"{k}: file {shapes[k]} vs model {expected[k]}" for k in shapes if shapes[k] != expected[k]]
    if wrong:
        raise CheckpointError(f"{path}: tensor shape mismatch: " + "; ".join(wrong[:8]))
    with safe_open(str(path), framework="pt", device="cpu") as f:
        kinds = {k: f.get_slice(k).get_dtype() for k in shapes}
        bad = [f"{k}: {kinds[k]} (expected {_ST_DTYPES.get(expected_sd[k].dtype)})"
               for k in shapes if kinds[k] != _ST_DTYPES.get(expected_sd[k].dtype)]  # fmt: skip
        if bad:
            raise CheckpointError(f"{path}: tensor dtype mismatch: " + "; ".join(bad[:8]))
        state = {k: f.get_tensor(k) for k in shapes}
    state.update({k: torch.full(expected[k], v, dtype=expected_sd[k].dtype) for k, v in fill.items()})
    check_state_values(path, cfg, state)
    if migration.assumed:
        warnings.warn(migration.warning(path), UserWarning, stacklevel=2)
    model = GHyena(cfg).to(saved_dtype)
    model.load_state_dict(state, strict=True)
    model = model.to(device=device, dtype=dtype) if dtype is not None else model.to(device=device)
    return model.eval()


#: safetensors' dtype names of the tensor dtypes a GHyena state holds
_ST_DTYPES = {
    torch.float32: "F32",
    torch.float64: "F64",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.bool: "BOOL",
}


def check_state_values(path: pathlib.Path, cfg: GHyenaConfig, state: dict[str, torch.Tensor]) -> None:
    """Refuse NaN/inf weights and a species table that is not the one ``cfg.species`` implies."""
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(
            f"{path}: tensors {bad[:8]} hold NaN or inf values (a diverged or damaged model)"
        )
    table = state.get("species_table")
    if table is not None:
        want = torch.full_like(table, -1)
        want[list(cfg.species)] = torch.arange(len(cfg.species), dtype=table.dtype)
        if not torch.equal(table, want):
            raise CheckpointError(
                f"{path}: its species_table does not map the config's species {list(cfg.species)} to "
                "embedding rows 0..n-1 (a tampered or damaged file)"
            )


def describe_checkpoint(path: str | os.PathLike) -> str:
    """A human-readable summary of a checkpoint (what ``hyenamd inspect model.safetensors`` prints)."""
    from hyenamd.elements import SYMBOLS

    path = pathlib.Path(path)
    info, shapes = _read_header(path)
    cfg = info["config"]
    n_par = info.get("n_parameters", "?")
    lines = [
        f"hyenamd checkpoint {path} ({path.stat().st_size:,} bytes, format v{FORMAT_VERSION})",
        f"  model        {info.get('model', 'GHyena')}, {n_par:,} parameters"
        if isinstance(n_par, int)
        else f"  model        {info.get('model', 'GHyena')}",
        f"  written by   hyenamd {info.get('hyenamd_version', '?')}",
        "  species      " + ", ".join(f"{SYMBOLS[z]} ({z})" for z in info.get("species", [])),
        f"  cutoff       {info.get('cutoff')} Å",
        f"  widths       scalars {cfg.get('n_scalar')}, vectors {cfg.get('n_vector')}, rbf {cfg.get('n_rbf')}",
        f"  blocks       {' → '.join(cfg.get('pattern', []))}",
        f"  heads        {', '.join(cfg.get('heads', []))}"
        + (
            f" (horizon {cfg.get('dynamics_horizon_fs')} fs)"
            if {"dynamics", "stochastic_dynamics"} & set(cfg.get("heads", []))
            else ""
        ),
        f"  dtype        {info.get('dtype')}; {len(shapes)} tensors",
        "  units        " + ", ".join(f"{k} {v}" for k, v in info.get("units", {}).items()),
        f"  ordering     {cfg.get('ordering', 'not recorded (legacy): ' + legacy_ordering(info))}",
    ]
    if migrate(info).pre12:  # the one definition of "written before issue 12"
        lines.append(
            "  maths        written before issue 12: loads as conv linear, frozen norm floors ε = 1, "
            "no pre-norm gain (the maths it was trained with; see docs/model.md)"
        )
    training = info.get("training") or {}
    if training:
        lines.append("  training")
        lines += [f"    {k}: {json.dumps(v, ensure_ascii=False)}" for k, v in training.items()]
    else:
        lines.append("  training     (no summary recorded)")
    return "\n".join(lines)
