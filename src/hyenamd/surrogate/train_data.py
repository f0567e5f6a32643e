"""Training data and settings: :class:`TrainSettings`, :class:`Sample`, the split by trajectory
segment and :class:`TrainResult` (re-exported by :mod:`hyenamd.surrogate.training`)."""

from __future__ import annotations

import pathlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from hyenamd.system import System

__all__ = ["Sample", "TrainResult", "TrainSettings", "split_by_segment"]


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings (the ``training:`` section of ``configs/train/*.yaml``).

    task: "force_field" or "dynamics". epochs: passes over the training samples; batch_size:
    structures per step. lr (AdamW), weight_decay, warmup_steps, min_lr_ratio (cosine floor),
    clip_grad_norm (None: off), ema_decay. patience: epochs without a validation improvement
    larger than min_delta before stopping (0: never). energy_weight/force_weight,
    position_weight/velocity_weight: loss weights. noise_std: Å, input noise of the dynamics
    objective. fit_shifts: least-squares per-species energy shifts before training.
    neighbor_skin: Å added to the cutoff of the cached neighbour lists (must exceed 2×noise).
    seed: shuffling and noise. device; mixed_precision (CUDA only); progress (tqdm).
    order_augment: draw a random valid sequence order for every training structure at every
    step (:func:`hyenamd.surrogate.ordering.random_order`: random Hilbert frames/offsets, or
    shuffled identical solvent molecules for topology models), so the model learns not to
    depend on one order; None (default): on for "hilbert" models, off for "topology" ones.
    Validation always uses the canonical order.
    """

    task: Literal["force_field", "dynamics"] = "force_field"
    epochs: int = 50
    batch_size: int = 4
    lr: float = 2e-3
    weight_decay: float = 0.0
    warmup_steps: int = 20
    min_lr_ratio: float = 0.02
    clip_grad_norm: float | None = 10.0
    ema_decay: float = 0.99
    patience: int = 10
    min_delta: float = 0.0
    energy_weight: float = 1.0
    force_weight: float = 1.0
    position_weight: float = 1.0
    velocity_weight: float = 1.0
    noise_std: float = 0.0
    fit_shifts: bool = True
    neighbor_skin: float = 0.5
    seed: int = 0
    device: str = "cpu"
    mixed_precision: bool = False
    progress: bool = True
    order_augment: bool | None = None

    def __post_init__(self) -> None:
        problems = []
        if self.task not in ("force_field", "dynamics"):
            problems.append(f"task must be 'force_field' or 'dynamics', got {self.task!r}")
        if self.epochs < 1 or self.batch_size < 1:
            problems.append("epochs and batch_size must be >= 1")
        if not self.lr > 0 or self.weight_decay < 0 or self.warmup_steps < 0:
            problems.append("need lr > 0, weight_decay >= 0, warmup_steps >= 0")
        if not 0 <= self.min_lr_ratio <= 1 or not 0 <= self.ema_decay < 1:
            problems.append("need 0 <= min_lr_ratio <= 1 and 0 <= ema_decay < 1")
        if self.clip_grad_norm is not None and not self.clip_grad_norm > 0:
            problems.append("clip_grad_norm must be positive or null")
        if self.patience < 0 or self.noise_std < 0 or self.neighbor_skin < 0:
            problems.append("patience, noise_std and neighbor_skin must be >= 0")
        if self.noise_std > 0 and self.neighbor_skin <= 8 * self.noise_std:
            problems.append(
                f"neighbor_skin ({self.neighbor_skin} Å) must exceed 8 × noise_std ({self.noise_std} Å): "
                "two atoms each moved by up to 4σ must stay in the cached neighbour lists"
            )
        if min(self.energy_weight, self.force_weight, self.position_weight, self.velocity_weight) < 0:
            problems.append("loss weights must be >= 0")
        if problems:
            raise ValueError("; ".join(problems))


@dataclass
class Sample:
    """One training structure and its targets.

    system: positions (Å), species, cell, pbc; velocities (Å/fs) for the dynamics task.
    energy: reference potential energy (eV) or None; forces: ``[N, 3]`` eV/Å or None.
    displacement: ``[N, 3]`` Å, x_{t+k} − x_t (minimum image) and next_velocities ``[N, 3]`` Å/fs
    (dynamics targets). segment: the trajectory segment it came from (train/valid split unit).
    """

    system: System
    energy: float | None = None
    forces: Tensor | None = None
    displacement: Tensor | None = None
    next_velocities: Tensor | None = None
    segment: int = 0


def split_by_segment(
    samples: Sequence[Sample], valid_fraction: float = 0.2, seed: int = 0
) -> tuple[list[Sample], list[Sample]]:
    """Split by whole trajectory segments (never one segment on both sides); at least one each.

    The validation segments are drawn with ``seed``; ValueError when fewer than two segments exist.
    """
    if not 0 < valid_fraction < 1:
        raise ValueError(f"valid_fraction must be in (0, 1), got {valid_fraction}")
    segments = sorted({s.segment for s in samples})
    if len(segments) < 2:
        raise ValueError(
            f"a train/validation split needs >= 2 trajectory segments, got {len(segments)} "
            "(use more frames or more segments)"
        )
    n_valid = min(max(1, round(valid_fraction * len(segments))), len(segments) - 1)
    g = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(len(segments), generator=g).tolist()
    valid_seg = {segments[k] for k in perm[:n_valid]}
    return [s for s in samples if s.segment not in valid_seg], [s for s in samples if s.segment in valid_seg]


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` produced: paths, the best validation loss and its metrics."""

    best_path: pathlib.Path | None
    state_path: pathlib.Path
    curve_path: pathlib.Path | None
    best_valid_loss: float
    best_metrics: dict[str, float]
    epochs_run: int
    steps: int
    stopped_early: bool
    wall_s: float
    history: dict[str, list] = field(default_factory=dict)
