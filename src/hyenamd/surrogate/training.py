"""Training the G-Hyena surrogate: force-field and large-step objectives, one resumable loop.

    from hyenamd.surrogate.training import Sample, TrainSettings, Trainer, split_by_segment
    train, valid = split_by_segment(samples, valid_fraction=0.2, seed=0)
    result = Trainer(model, train, valid, TrainSettings(task="force_field"), out_dir="run/").fit()
    result.best_path            # run/best.safetensors (EMA weights, lowest validation loss)

Samples are built by the caller (``hyenamd.workflows.train`` reads them from reference stores), so
this module never imports engine/io/cluster. Objectives (see :mod:`hyenamd.surrogate.losses`):

* ``force_field``: energy + force loss; before training the per-species energy shifts are
  fitted by least squares and put in the model's energy head, its energy scale is set to the
  RMS reference force (eV/Å × 1 Å), and the loss terms are normalised by σ_E and σ_F.
* ``dynamics``: the dynamics head maps (x_t, v_t) to (x_{t+k}, v_{t+k}); Gaussian noise of
  ``noise_std`` Å is added to x_t and the displacement target corrected for it, so the model
  learns to pull perturbed states back (rollout stability). With the ``"stochastic_dynamics"``
  head the objective is the Gaussian NLL of the same targets
  (:func:`~hyenamd.surrogate.losses.stochastic_dynamics_loss`), so the head can be trained on
  Langevin strides; before training its per-species offsets are set from the residual of the
  ballistic step (what a fresh head predicts) when ``fit_shifts`` is on: log RMS for σˣ, σᵛ and
  the x–v correlation for ρ.

Loop: AdamW, linear warm-up + cosine decay (per optimiser step), gradient-norm clipping, EMA
weights (validated and saved), validation after every epoch on held-out trajectory segments,
early stopping after ``patience`` epochs without improvement of the monitored value (the
validation loss, or e.g. the held-out force RMSE with ``monitor: force_rmse``), a tqdm bar.
State after every epoch: ``train_state.safetensors`` (weights, EMA, AdamW moments, RNG state
as tensors; counters, history and scales as JSON metadata — never pickle); a Trainer built
with ``resume=True`` continues from it and, on CPU, reproduces the uninterrupted run bit for
bit. Mixed precision (bfloat16 autocast) only on CUDA, with the global blocks (FFTs) kept in
float32. Outputs: ``best.safetensors`` (:func:`~hyenamd.surrogate.save_model`, data summary
in its metadata), ``loss_curve.png``, ``history.json``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import pathlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from hyenamd.geometry import Neighbors, neighbor_list
from hyenamd.surrogate.checkpoint import save_model
from hyenamd.surrogate.forces import compute_forces
from hyenamd.surrogate.losses import (
    dynamics_loss,
    energy_least_squares_shifts,
    force_field_loss,
    stochastic_dynamics_loss,
)
from hyenamd.surrogate.model import GHyena
from hyenamd.surrogate.ordering import canonical_order, model_ordering, random_order
from hyenamd.surrogate.schedule import EMA, cosine_lr
from hyenamd.surrogate.stochastic_head import StochasticDynamicsHead
from hyenamd.surrogate.train_data import Sample, TrainResult, TrainSettings, split_by_segment
from hyenamd.surrogate.train_state import fp32_global_blocks, load_train_state, save_train_state
from hyenamd.system import Batch, System

__all__ = ["Sample", "TrainResult", "TrainSettings", "Trainer", "split_by_segment"]


class Trainer:
    """The training loop (module doc). ``model`` is trained in place (EMA weights saved as best).

    train/valid: samples (see :func:`split_by_segment`). out_dir: where state, best checkpoint,
    curve and history go. data_summary: JSON-able facts about the data for the checkpoint.
    resume: continue from ``out_dir/train_state.safetensors`` when it exists.
    """

    def __init__(
        self,
        model: GHyena,
        train: Sequence[Sample],
        valid: Sequence[Sample],
        settings: TrainSettings | None = None,
        *,
        out_dir: str | pathlib.Path,
        data_summary: dict[str, Any] | None = None,
        resume: bool = False,
        echo: Callable[[str], Any] = print,
    ) -> None:
        settings = settings or TrainSettings()
        self.s = settings
        self.echo = echo
        self.train, self.valid = list(train), list(valid)
        if not self.train or not self.valid:
            raise ValueError(
                f"need training and validation samples, got {len(self.train)} and {len(self.valid)}"
            )
        self._check_targets(model)
        self.stochastic = isinstance(model.dynamics_head, StochasticDynamicsHead)
        self.device = torch.device(settings.device)
        self.amp = bool(settings.mixed_precision and self.device.type == "cuda")
        if settings.mixed_precision and not self.amp:
            echo("training: mixed precision is for CUDA only; running in full precision on this device")
        self.model = model.to(self.device)
        self.dtype = model.dtype
        self.out_dir = pathlib.Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.state_path = self.out_dir / "train_state.safetensors"
        self.data_summary = dict(data_summary or {})
        self._nbrs: dict[int, Neighbors] = {}
        self.ordering = model_ordering(model)
        augment = settings.order_augment
        self.order_augment = bool(
            self.ordering is not None and (self.ordering == "hilbert" if augment is None else augment)
        )
        self._prepared = [self._prepare(x) for x in self.train + self.valid]
        self.scales = self._fit_scales()
        self.optim = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
        self.ema = EMA(model, settings.ema_decay)
        self.gen = torch.Generator().manual_seed(settings.seed)
        self.step = 0
        self.epoch = 0
        self.best = math.inf
        self.best_metrics: dict[str, float] = {}
        self.bad_epochs = 0
        self.history: dict[str, list] = {
            "step": [],
            "train_loss": [],
            "epoch": [],
            "valid_loss": [],
            "lr": [],
        }
        n_batches = math.ceil(len(self.train) / settings.batch_size)
        self.total_steps = n_batches * settings.epochs
        if resume and self.state_path.exists():
            self.load_state(self.state_path)
            echo(f"training: resumed from {self.state_path} at epoch {self.epoch}, step {self.step}")

    # ------------------------------------------------------------------ set-up
    def _check_targets(self, model: GHyena) -> None:
        if not isinstance(model, GHyena):
            raise TypeError(f"Trainer trains a GHyena model, got {type(model).__name__}")
        if self.s.task == "dynamics":
            if model.dynamics_head is None:
                raise ValueError(
                    "task 'dynamics' needs a model with a dynamics head "
                    "(heads: [energy, dynamics] or [energy, stochastic_dynamics])"
                )
            bad = [
                k
                for k, x in enumerate(self.train + self.valid)
                if x.displacement is None or x.next_velocities is None or x.system.velocities is None
            ]
            if bad:
                raise ValueError(
                    f"dynamics samples need velocities, displacement and next_velocities (sample {bad[0]})"
                )
        else:
            bad = [k for k, x in enumerate(self.train + self.valid) if x.forces is None and x.energy is None]
            if bad:
                raise ValueError(
                    f"force-field samples need forces and/or energy (sample {bad[0]} has neither)"
                )

    def _prepare(self, x: Sample) -> Sample:
        """Move to the model's device/dtype, fix the canonical order (the model's rule), cache the neighbour list.

        The order always comes from the model's rule (an order a sample carries may have
        been made by another rule).
        """
        sys = x.system.to(self.device, self.dtype)
        sys = sys.replace(order=None)
        if self.ordering is not None:
            sys = sys.replace(order=canonical_order(sys, self.ordering))
        if self.s.task == "force_field":
            sys = sys.replace(velocities=None)
        cv = lambda t: None if t is None else torch.as_tensor(t).to(self.device, self.dtype)  # noqa: E731
        y = Sample(sys, x.energy, cv(x.forces), cv(x.displacement), cv(x.next_velocities), x.segment)
        nb = neighbor_list(
            sys.positions.detach(), sys.cell, sys.pbc, self.model.cutoff + self.s.neighbor_skin
        )
        self._nbrs[id(y)] = nb
        return y

    def _fit_scales(self) -> dict[str, float]:
        train = self._prepared[: len(self.train)]
        scales: dict[str, float] = {}
        if self.s.task == "force_field":
            f = [x.forces for x in train if x.forces is not None]
            scales["force"] = float(torch.cat(f).double().pow(2).mean().sqrt()) if f else 1.0
            with_e = [x for x in train if x.energy is not None]
            if with_e and self.s.fit_shifts:
                counts = torch.stack([self._counts(x.system) for x in with_e])
                e = torch.tensor([x.energy for x in with_e], dtype=torch.float64)
                shifts = energy_least_squares_shifts(counts, e)
                with torch.no_grad():
                    self.model.energy_head.energy_shift.copy_(shifts.to(self.model.energy_head.energy_shift))
                    self.model.energy_head.energy_scale.fill_(max(scales["force"], 1e-3))
                scales["shifts"] = [float(v) for v in shifts]
            scales["energy"] = max(scales["force"], 1e-3)  # σ_E = σ_F · 1 Å (per-atom energy)
        else:
            d = torch.cat([x.displacement for x in train]).double()
            v = torch.cat([x.next_velocities for x in train]).double()
            scales["position"] = max(float(d.pow(2).mean().sqrt()), 1e-6)
            scales["velocity"] = max(float(v.pow(2).mean().sqrt()), 1e-9)
            if self.stochastic and self.s.fit_shifts:
                scales.update(self._fit_log_sigma(train))
        return scales

    def _fit_log_sigma(self, train: list[Sample]) -> dict[str, list[float]]:
        """Per-species offsets of the stochastic head from the ballistic step's residuals
        ``Δx* − u Δτ`` and ``v* − u`` (a fresh head's error): their log RMS (per component) for
        log σˣ, log σᵛ, and atanh(ρ/ρ_max) of their correlation for ρ."""
        from hyenamd.surrogate.stochastic_head import RHO_MAX

        head, dt = self.model.dynamics_head, self.model.cfg.dynamics_horizon_fs
        idx = torch.cat([self.model.species_index(x.system.species) for x in train]).cpu()
        u = torch.cat([x.system.velocities for x in train]).double().cpu()
        rx = torch.cat([x.displacement for x in train]).double().cpu() - u * dt
        rv = torch.cat([x.next_velocities for x in train]).double().cpu() - u
        shift = head.noise_shift.detach().clone().double().cpu()
        for k in idx.unique().tolist():
            m = idx == k
            mx, mv = float(rx[m].pow(2).mean()), float(rv[m].pow(2).mean())
            shift[k, 0] = 0.5 * math.log(max(mx, 1e-30))
            shift[k, 1] = 0.5 * math.log(max(mv, 1e-30))
            rho = float((rx[m] * rv[m]).mean()) / max(math.sqrt(mx * mv), 1e-300)
            shift[k, 2] = math.atanh(max(-0.95, min(0.95, rho / RHO_MAX)))
        with torch.no_grad():
            head.noise_shift.copy_(shift.to(head.noise_shift))
        return {
            "log_sigma_x0": shift[:, 0].tolist(),
            "log_sigma_v0": shift[:, 1].tolist(),
            "rho_xv0": [RHO_MAX * math.tanh(r) for r in shift[:, 2].tolist()],
        }

    def _counts(self, sys: System) -> Tensor:
        idx = self.model.species_index(sys.species)
        return torch.bincount(idx, minlength=len(self.model.cfg.species)).to(torch.float64).cpu()

    # ------------------------------------------------------------------ batches and losses
    def _batch(
        self, items: list[Sample], noise: bool
    ) -> tuple[Batch, Neighbors, list[Sample], Tensor | None]:
        systems = [x.system for x in items]
        if noise and self.order_augment:  # a random valid order per structure and step
            systems = [s.replace(order=random_order(s, self.ordering, self.gen)) for s in systems]
        batch = Batch.from_systems(systems)
        nbs = [self._nbrs[id(x)] for x in items]
        offs = batch.ptr[:-1].tolist()
        nb = Neighbors(
            torch.cat([n.i + o for n, o in zip(nbs, offs)]),
            torch.cat([n.j + o for n, o in zip(nbs, offs)]),
            torch.cat([n.shifts for n in nbs]),
            True,
        )
        eps = None
        if noise and self.s.task == "dynamics" and self.s.noise_std > 0:
            eps = self.s.noise_std * torch.randn(
                batch.positions.shape, generator=self.gen, dtype=torch.float64
            )
            eps = eps.to(self.device, self.dtype)
            batch = batch.replace(positions=batch.positions + eps)
        return batch, nb.to(self.device), items, eps

    def _loss(self, items: list[Sample], *, train: bool) -> tuple[Tensor, dict[str, Tensor]]:
        batch, nb, items, eps = self._batch(items, noise=train)
        ctx = torch.autocast("cuda", dtype=torch.bfloat16) if self.amp else contextlib.nullcontext()
        with ctx, fp32_global_blocks(self.model, self.amp):
            if self.s.task == "force_field":
                out = compute_forces(self.model, batch, neighbors=nb, create_graph=train)
                e_ref = None
                if all(x.energy is not None for x in items):
                    e_ref = torch.tensor([x.energy for x in items], dtype=self.dtype, device=self.device)
                f_ref = None
                if all(x.forces is not None for x in items):
                    f_ref = torch.cat([x.forces for x in items])
                return force_field_loss(
                    out["energy"].to(self.dtype),
                    e_ref,
                    batch.counts,
                    out["forces"].to(self.dtype),
                    f_ref,
                    energy_weight=self.s.energy_weight,
                    force_weight=self.s.force_weight,
                    energy_scale=self.scales["energy"],
                    force_scale=self.scales["force"],
                )
            out = self.model(batch, neighbors=nb)
            d_ref = torch.cat([x.displacement for x in items])
            if eps is not None:
                d_ref = d_ref - eps
            if self.stochastic:
                return stochastic_dynamics_loss(
                    out["displacement"].to(self.dtype),
                    d_ref,
                    out["velocities"].to(self.dtype),
                    torch.cat([x.next_velocities for x in items]),
                    out["log_sigma_x"].to(self.dtype),
                    out["log_sigma_v"].to(self.dtype),
                    out["rho_xv"].to(self.dtype),
                    position_weight=self.s.position_weight,
                    velocity_weight=self.s.velocity_weight,
                    position_scale=self.scales["position"],
                    velocity_scale=self.scales["velocity"],
                )
            return dynamics_loss(
                out["displacement"].to(self.dtype),
                d_ref,
                out["velocities"].to(self.dtype),
                torch.cat([x.next_velocities for x in items]),
                position_weight=self.s.position_weight,
                velocity_weight=self.s.velocity_weight,
                position_scale=self.scales["position"],
                velocity_scale=self.scales["velocity"],
            )

    def evaluate(self) -> tuple[float, dict[str, float]]:
        """Mean validation loss and metrics (structure-weighted) with the EMA weights."""
        valid = self._prepared[len(self.train) :]
        self.ema.swap(self.model)
        try:
            total, sums, n = 0.0, {}, 0
            for k in range(0, len(valid), self.s.batch_size):
                items = valid[k : k + self.s.batch_size]
                loss, parts = self._loss(items, train=False)
                total += float(loss.detach()) * len(items)
                for key, val in parts.items():
                    sums[key] = sums.get(key, 0.0) + float(val) ** (2 if key.endswith("rmse") else 1) * len(
                        items
                    )
                n += len(items)
        finally:
            self.ema.swap(self.model)
        metrics = {k: (v / n) ** 0.5 if k.endswith("rmse") else v / n for k, v in sums.items()}
        return total / n, metrics

    # ------------------------------------------------------------------ the loop
    def fit(self, until_epoch: int | None = None) -> TrainResult:
        """Train to ``settings.epochs`` (or stop after ``until_epoch``, to test resuming)."""
        from hyenamd.progress import progress_bar

        t0 = time.perf_counter()
        train = self._prepared[: len(self.train)]
        stop_at = self.s.epochs if until_epoch is None else min(until_epoch, self.s.epochs)
        stopped = self.s.patience > 0 and self.bad_epochs >= self.s.patience
        bar = progress_bar(
            total=self.total_steps,
            initial=self.step,
            desc=f"train {self.s.task}",
            unit="step",
            disable=not self.s.progress,
            dynamic_ncols=True,
        )
        self.model.train()
        while self.epoch < stop_at and not stopped:
            perm = torch.randperm(len(train), generator=self.gen).tolist()
            running = 0.0
            for k in range(0, len(perm), self.s.batch_size):
                items = [train[i] for i in perm[k : k + self.s.batch_size]]
                lr = cosine_lr(
                    self.step,
                    base=self.s.lr,
                    total=self.total_steps,
                    warmup=self.s.warmup_steps,
                    min_lr_ratio=self.s.min_lr_ratio,
                )
                for g in self.optim.param_groups:
                    g["lr"] = lr
                loss, _ = self._loss(items, train=True)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"training loss became {float(loss)} at step {self.step}")
                self.optim.zero_grad(set_to_none=True)
                loss.backward()
                if self.s.clip_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.s.clip_grad_norm)
                self.optim.step()
                self.ema.update(self.model)
                self.step += 1
                running = float(loss.detach())
                self.history["step"].append(self.step)
                self.history["train_loss"].append(running)
                self.history["lr"].append(lr)
                bar.update(1)
                bar.set_postfix(loss=f"{running:.4g}", lr=f"{lr:.2e}", best=f"{self.best:.4g}", refresh=False)
            self.epoch += 1
            v_loss, metrics = self.evaluate()
            self.history["epoch"].append(self.epoch)
            self.history["valid_loss"].append(v_loss)
            score = v_loss if self.s.monitor == "loss" else metrics.get(self.s.monitor, v_loss)
            if score < self.best - self.s.min_delta:
                self.best, self.best_metrics, self.bad_epochs = score, metrics, 0
                self._save_best()
            else:
                self.bad_epochs += 1
            bar.set_postfix(loss=f"{running:.4g}", valid=f"{v_loss:.4g}", best=f"{self.best:.4g}")
            self.save_state(self.state_path)
            stopped = self.s.patience > 0 and self.bad_epochs >= self.s.patience
        bar.close()
        self.model.eval()
        if stopped:
            self.echo(
                f"training: early stop after epoch {self.epoch} ({self.s.patience} epochs without improvement)"
            )
        curve = self.plot(self.out_dir / "loss_curve.png")
        (self.out_dir / "history.json").write_text(json.dumps(self.history))
        best_path = self.out_dir / "best.safetensors"
        return TrainResult(
            best_path if best_path.exists() else None,
            self.state_path,
            curve,
            self.best,
            dict(self.best_metrics),
            self.epoch,
            self.step,
            stopped,
            time.perf_counter() - t0,
            self.history,
        )

    def _save_best(self) -> None:
        meta = {
            "task": self.s.task,
            "data": self.data_summary,
            "n_train": len(self.train),
            "n_valid": len(self.valid),
            "epoch": self.epoch,
            "step": self.step,
            "valid_loss": self.best,
            "valid_metrics": self.best_metrics,
            "scales": self.scales,
            "settings": dataclasses.asdict(self.s),
        }
        self.ema.swap(self.model)
        try:
            save_model(self.model, self.out_dir / "best.safetensors", **meta)
        finally:
            self.ema.swap(self.model)

    def plot(self, path: pathlib.Path) -> pathlib.Path | None:
        """Loss curves (training per step, validation per epoch) as a PNG; None without data."""
        if not self.history["step"]:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        n_batches = max(1, math.ceil(len(self.train) / self.s.batch_size))
        fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
        positive = min(self.history["train_loss"] + self.history["valid_loss"]) > 0
        plot = ax.semilogy if positive else ax.plot  # the Gaussian NLL can be negative
        plot(self.history["step"], self.history["train_loss"], lw=0.8, alpha=0.7, label="train (per step)")
        plot(
            [e * n_batches for e in self.history["epoch"]],
            self.history["valid_loss"],
            "o-",
            ms=3,
            label="validation (EMA, per epoch)",
        )
        ax.set_xlabel("optimiser step")
        ax.set_ylabel(f"{self.s.task} loss (normalised)")
        ax.set_title(f"hyenamd train — {self.s.task}")
        ax.legend()
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
        return path

    # ------------------------------------------------------------------ resumable state
    def save_state(self, path: pathlib.Path) -> None:
        """Everything needed to continue exactly (see :mod:`hyenamd.surrogate.train_state`)."""
        save_train_state(self, path)

    def load_state(self, path: pathlib.Path) -> None:
        """Restore a state written by :meth:`save_state` (ValueError when it does not fit)."""
        load_train_state(self, path)
