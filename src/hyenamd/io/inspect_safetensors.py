"""``hyenamd inspect`` for ``.safetensors`` files: model checkpoints, engine checkpoints and
training states, told apart by their metadata (read without loading any tensor)."""

from __future__ import annotations

import json
import pathlib

__all__ = ["describe_safetensors"]


class NotHyenamdFile(ValueError):
    """A file hyenamd inspect cannot describe (the message is the one line it prints)."""


def _metadata(path: pathlib.Path) -> tuple[dict, dict[str, tuple[int, ...]]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return dict(f.metadata() or {}), {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for malformed files
        raise NotHyenamdFile(
            f"{path} is not a readable safetensors file (truncated or corrupt?): {e}"
        ) from None


def _engine(path: pathlib.Path, meta: dict, shapes: dict) -> str:
    n_atoms = shapes.get("positions", (0,))[0]
    integ = meta.get("integrator") or {}
    lines = [
        f"hyenamd engine checkpoint {path} ({path.stat().st_size:,} bytes, version {meta.get('version')})",
        f"  step         {meta.get('step')}  (t = {meta.get('time_fs')} fs)",
        f"  atoms        {n_atoms}" + ("" if meta.get("single", True) else " (a batch of systems)"),
        f"  dtype        {meta.get('dtype')} on {meta.get('device')}",
        "  integrator   " + (", ".join(f"{k}={v}" for k, v in integ.items()) if integ else "(not recorded)"),
        f"  tensors      {', '.join(meta.get('present', []))}",
        f"  written by   hyenamd {meta.get('hyenamd_version', '?')}",
    ]
    if meta.get("extra"):
        lines.append(f"  extra        {json.dumps(meta['extra'])[:200]}")
    return "\n".join(lines)


def _train_state(path: pathlib.Path, meta: dict, shapes: dict) -> str:
    state = json.loads(meta.get("state", "{}"))
    settings = state.get("settings", {})
    n_model = sum(1 for k in shapes if k.startswith("model."))
    best = state.get("best")
    return "\n".join([
        f"hyenamd training state {path} ({path.stat().st_size:,} bytes; resume with resume: true)",
        f"  task         {settings.get('task', '?')}",
        f"  progress     step {state.get('step')}, epoch {state.get('epoch')}",
        f"  best         {best if best is not None else '(none yet)'} {state.get('best_metrics') or ''}".rstrip(),
        f"  tensors      {n_model} model, {sum(1 for k in shapes if k.startswith('optim.'))} optimiser",
    ])  # fmt: skip


def describe_safetensors(path: str | pathlib.Path) -> str:
    """A summary of a hyenamd ``.safetensors`` file; :class:`NotHyenamdFile` for anything else."""
    from hyenamd.surrogate.checkpoint import FORMAT as MODEL_FORMAT
    from hyenamd.surrogate.checkpoint import describe_checkpoint
    from hyenamd.surrogate.train_state import STATE_FORMAT

    path = pathlib.Path(path)
    meta, shapes = _metadata(path)
    if meta.get("format") == MODEL_FORMAT:
        return describe_checkpoint(path)
    if meta.get("format") == STATE_FORMAT:
        return _train_state(path, meta, shapes)
    if "hyenamd" in meta:
        try:
            doc = json.loads(meta["hyenamd"])
        except ValueError:
            doc = {}
        if doc.get("format") == "hyenamd.engine.checkpoint":
            return _engine(path, doc, shapes)
    raise NotHyenamdFile(
        f"{path} is a safetensors file but not a hyenamd model checkpoint, engine checkpoint or "
        f"training state (metadata keys: {sorted(meta) or 'none'})"
    )
