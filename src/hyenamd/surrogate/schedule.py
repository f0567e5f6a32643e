"""Learning-rate schedule (linear warm-up then cosine decay) and EMA weights, as pure helpers.

``lr(step) = base · step / warmup`` for ``step < warmup``, then
``lr(step) = base · (r + (1 − r) · ½ (1 + cos(π · p)))`` with ``p = (step − warmup) / (total − warmup)``
clamped to [0, 1] and ``r = min_lr_ratio`` (the floor as a fraction of ``base``).

EMA: after every optimiser step ``θ̄ ← d · θ̄ + (1 − d) · θ`` with the decay warmed up as
``d = min(decay, (1 + n) / (10 + n))`` (n = updates so far), so early averages are not stuck
at the initial weights.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["EMA", "cosine_lr"]


def cosine_lr(step: int, *, base: float, total: int, warmup: int = 0, min_lr_ratio: float = 0.01) -> float:
    """Learning rate at optimiser step ``step`` (0-based), see the module doc."""
    if warmup > 0 and step < warmup:
        return base * (step + 1) / warmup
    span = max(total - warmup, 1)
    p = min(max((step - warmup) / span, 0.0), 1.0)
    return base * (min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * p)))


class EMA:
    """Exponential moving average of a model's floating-point parameters (module doc)."""

    def __init__(self, model: nn.Module, decay: float = 0.99) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.n_updates = 0
        self.shadow: dict[str, Tensor] = {
            k: p.detach().clone() for k, p in model.named_parameters() if p.dtype.is_floating_point
        }

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = min(self.decay, (1.0 + self.n_updates) / (10.0 + self.n_updates))
        for k, p in model.named_parameters():
            if k in self.shadow:
                self.shadow[k].mul_(d).add_(p.detach(), alpha=1.0 - d)
        self.n_updates += 1

    @torch.no_grad()
    def swap(self, model: nn.Module) -> None:
        """Exchange the model's parameters with the averages (call twice to undo)."""
        for k, p in model.named_parameters():
            if k in self.shadow:
                tmp = p.detach().clone()
                p.copy_(self.shadow[k])
                self.shadow[k].copy_(tmp)
