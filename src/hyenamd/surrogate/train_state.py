"""Resumable training state and the mixed-precision guard of the training loop.

:func:`save_train_state` writes one ``.safetensors`` file: tensors ``model.*`` (state dict),
``ema.*`` (EMA averages), ``optim.<param>.<key>`` (AdamW moments and step counts) and ``rng``
(the shuffling/noise generator state); the metadata holds ``format`` and a JSON ``state``
(step, epoch, best loss and metrics, early-stopping counter, EMA update count, history, data
scales, settings). No pickle anywhere. :func:`load_train_state` restores all of it, so a
resumed run repeats the uninterrupted one exactly (bit for bit on CPU).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import tempfile
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # pragma: no cover
    from hyenamd.surrogate.model import GHyena
    from hyenamd.surrogate.training import Trainer

__all__ = ["STATE_FORMAT", "fp32_global_blocks", "load_train_state", "save_train_state"]

STATE_FORMAT = "hyenamd.train_state"


def save_train_state(self: Trainer, path: pathlib.Path) -> None:
    """Everything needed to continue exactly: tensors in safetensors, counters as JSON."""
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
    tensors |= {f"ema.{k}": v.detach().cpu().clone() for k, v in self.ema.shadow.items()}
    names = [n for n, _ in self.model.named_parameters()]
    params = list(self.model.parameters())
    for n, p in zip(names, params):
        st = self.optim.state.get(p, {})
        for key, val in st.items():
            tensors[f"optim.{n}.{key}"] = torch.as_tensor(val).detach().cpu().clone()
    tensors["rng"] = self.gen.get_state().clone()
    meta = {
        "step": self.step,
        "epoch": self.epoch,
        "best": self.best if math.isfinite(self.best) else None,
        "best_metrics": self.best_metrics,
        "bad_epochs": self.bad_epochs,
        "ema_updates": self.ema.n_updates,
        "history": self.history,
        "scales": self.scales,
        "settings": dataclasses.asdict(self.s),
    }
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"format": STATE_FORMAT, "state": json.dumps(meta)})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_train_state(self: Trainer, path: pathlib.Path) -> None:
    """Restore a state written by :meth:`save_state` (ValueError when it does not fit)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device="cpu") as f:
        meta = f.metadata() or {}
        if meta.get("format") != STATE_FORMAT:
            raise ValueError(f"{path} is not a hyenamd training state (format {meta.get('format')!r})")
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    info = json.loads(meta["state"])
    if info["settings"].get("task") != self.s.task:
        raise ValueError(
            f"{path} is a {info['settings'].get('task')!r} state; this run trains {self.s.task!r}"
        )
    model_state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        self.model.load_state_dict(model_state, strict=True)
    except RuntimeError as e:
        raise ValueError(f"{path} does not fit this model: {e}") from e
    for k in self.ema.shadow:
        self.ema.shadow[k].copy_(tensors[f"ema.{k}"])
    self.ema.n_updates = int(info["ema_updates"])
    for n, p in self.model.named_parameters():
        st = {key[len(f"optim.{n}.") :]: v for key, v in tensors.items() if key.startswith(f"optim.{n}.")}
        if st:
            self.optim.state[p] = {key: (v.to(self.device) if key != "step" else v) for key, v in st.items()}
    self.gen.set_state(tensors["rng"])
    self.step, self.epoch = int(info["step"]), int(info["epoch"])
    self.best = math.inf if info["best"] is None else float(info["best"])
    self.best_metrics, self.bad_epochs = info["best_metrics"], int(info["bad_epochs"])
    self.history, self.scales = info["history"], info["scales"]


class fp32_global_blocks:
    """Under CUDA autocast, run the global blocks (FFT convolutions) in float32."""

    def __init__(self, model: GHyena, active: bool) -> None:
        self.model, self.active, self.saved = model, active, []

    def __enter__(self) -> None:
        if not self.active:
            return
        for kind, block in zip(self.model.cfg.pattern, self.model.blocks):
            if kind == "global":
                fwd = block.forward

                def wrapped(s, v, order, ptr, _fwd=fwd):
                    with torch.autocast("cuda", enabled=False):
                        return _fwd(s.float(), v.float(), order, ptr)

                self.saved.append((block, fwd))
                block.forward = wrapped

    def __exit__(self, *exc) -> None:
        for block, _ in self.saved:
            del block.forward  # drop the instance attribute: the class's forward is back
        self.saved = []
