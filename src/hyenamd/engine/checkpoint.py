"""Engine state checkpoints (not model checkpoints): one ``.safetensors`` file, never a pickle.

A checkpoint holds every tensor of :class:`~hyenamd.engine.state.MDState` (positions,
velocities, forces, energies, masses, species, cells, pbc, batch/ptr, degrees of freedom,
the RNG state as the ``uint8`` tensor of ``torch.Generator.get_state()``, the canonical order
and ``nl_ref``, the positions of the last neighbour-list build), the integrator's ``aux`` tensors
(``aux.<name>``) and per-system topology labels, and a JSON document in the safetensors metadata under the key ``"hyenamd"``::

    {"format": "hyenamd.engine.checkpoint", "version": 1, "step": ..., "time_fs": ...,
     "single": ..., "dtype": "float64", "device": "cpu", "present": [tensor names],
     "integrator": {...integrator.describe()...}, "labels": [...], "hyenamd_version": ...,
     "extra": {...}}

``time_fs`` is stored as a JSON number, which round-trips a Python float exactly. The file is
written to a temporary name and renamed into place (``os.replace``), so a crash while
writing never destroys the previous checkpoint. Loading reads tensors only (safetensors) and
JSON; no code is executed.

Resuming on a different device than the one that wrote the checkpoint is refused when the
state has an RNG state (a CPU and a CUDA generator have different state formats); pass
``device=`` explicitly with ``allow_device_change=True`` to resume anyway without
bit-identity (the RNG is then re-seeded from ``reseed``).
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

import torch

from hyenamd.engine.state import TENSOR_FIELDS, MDState
from hyenamd.errors import HyenaError
from hyenamd.system import Labels

__all__ = ["CheckpointError", "load_checkpoint", "read_checkpoint_metadata", "save_checkpoint"]

FORMAT = "hyenamd.engine.checkpoint"
VERSION = 1


class CheckpointError(HyenaError, ValueError):
    """A file is not a hyenamd engine checkpoint, or does not fit the run that reads it."""


def _labels_to_json(labels: tuple) -> tuple[list, dict[str, torch.Tensor]]:
    docs, tensors = [], {}
    for k, lab in enumerate(labels):
        if lab is None:
            docs.append(None)
            continue
        tensors[f"labels.{k}.residue_index"] = lab.residue_index.detach().cpu().contiguous()
        tensors[f"labels.{k}.chain_index"] = lab.chain_index.detach().cpu().contiguous()
        docs.append({"atom_names": lab.atom_names, "residue_names": lab.residue_names})
    return docs, tensors


def save_checkpoint(
    path: str | os.PathLike,
    state: MDState,
    *,
    integrator: Any = None,
    extra: dict | None = None,
) -> pathlib.Path:
    """Write ``state`` (and ``integrator.describe()``) to ``path`` atomically; returns the path."""
    from safetensors.torch import save_file

    import hyenamd

    path = pathlib.Path(path)
    tensors: dict[str, torch.Tensor] = {}
    present = []
    for name in TENSOR_FIELDS:
        t = getattr(state, name)
        if t is None:
            continue
        tensors[name] = t.detach().to("cpu").clone().contiguous()
        present.append(name)
    label_docs, label_tensors = _labels_to_json(state.labels)
    tensors.update(label_tensors)
    for name, t in state.aux.items():
        tensors[f"aux.{name}"] = t.detach().to("cpu").clone().contiguous()
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "step": int(state.step),
        "time_fs": float(state.time_fs),
        "single": bool(state.single),
        "dtype": str(state.dtype).removeprefix("torch."),
        "device": state.device.type,
        "present": present,
        "aux": sorted(state.aux),
        "integrator": None if integrator is None else integrator.describe(),
        "labels": label_docs,
        "hyenamd_version": hyenamd.__version__,
        "extra": extra or {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        save_file(tensors, str(tmp), metadata={"hyenamd": json.dumps(meta)})
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def read_checkpoint_metadata(path: str | os.PathLike) -> dict:
    """The JSON document of a checkpoint (raises :class:`CheckpointError` for other files)."""
    from safetensors import safe_open

    path = pathlib.Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory; give the checkpoint file (.safetensors)")
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get("hyenamd")
    except Exception as e:  # safetensors raises its own error types for non-safetensors files
        raise CheckpointError(f"{path} is not a safetensors file: {e}") from e
    if raw is None:
        raise CheckpointError(f"{path} has no 'hyenamd' metadata: not an engine checkpoint")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} has corrupt metadata (not valid JSON: {e})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path} has corrupt metadata (a JSON {type(meta).__name__}, not an object)")
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is a {meta.get('format', 'unknown')!r} file, not an engine checkpoint ({FORMAT}); "
            "model checkpoints are read with hyenamd.surrogate.load_model"
        )
    missing = [k for k in ("device", "present", "step", "time_fs", "single") if k not in meta]
    if missing or not isinstance(meta.get("version", 0), int):
        raise CheckpointError(
            f"{path} has corrupt metadata (missing or malformed keys {missing or ['version']})"
        )
    if int(meta.get("version", 0)) > VERSION:
        raise CheckpointError(
            f"{path} has checkpoint version {meta['version']}; this hyenamd reads <= {VERSION}"
        )
    return meta


def load_checkpoint(
    path: str | os.PathLike,
    *,
    device: str | torch.device | None = None,
    allow_device_change: bool = False,
    reseed: int = 0,
) -> tuple[MDState, dict]:
    """Read a checkpoint: ``(state, metadata)``. ``device`` defaults to the one that wrote it."""
    from safetensors.torch import load_file

    meta = read_checkpoint_metadata(path)
    saved = torch.device(meta["device"])
    dev = saved if device is None else torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CheckpointError(f"{path} was written on CUDA, which is not available here; pass device='cpu'")
    tensors = load_file(str(path), device="cpu")
    missing = [n for n in meta["present"] if n not in tensors]
    if missing:
        raise CheckpointError(f"{path} lacks tensors {missing} listed in its metadata (a damaged file?)")
    fields: dict[str, Any] = {n: tensors.get(n) for n in TENSOR_FIELDS}
    rng = fields.pop("rng_state")
    if rng is not None and dev.type != saved.type:
        if not allow_device_change:
            raise CheckpointError(
                f"{path} holds a {saved.type} RNG state; resuming on {dev.type} cannot continue the same "
                "random sequence. Pass allow_device_change=True to resume with a re-seeded RNG."
            )
        gen = torch.Generator(device=dev)
        gen.manual_seed(int(reseed))
        rng = gen.get_state()
    labels = []
    for k, doc in enumerate(meta.get("labels") or []):
        if doc is None:
            labels.append(None)
            continue
        labels.append(
            Labels(
                tensors[f"labels.{k}.residue_index"],
                tensors[f"labels.{k}.chain_index"],
                None if doc["atom_names"] is None else tuple(doc["atom_names"]),
                None if doc["residue_names"] is None else tuple(doc["residue_names"]),
            )
        )
    on_dev = {k: (None if v is None else v.to(dev)) for k, v in fields.items()}
    aux = {name: tensors[f"aux.{name}"].to(dev) for name in meta.get("aux", [])}
    state = MDState(
        **on_dev,
        step=int(meta["step"]),
        time_fs=float(meta["time_fs"]),
        rng_state=rng,
        labels=tuple(labels),
        single=bool(meta["single"]),
        aux=aux,
    )
    return state, meta
