"""Force-field accuracy on held-out reference frames: energy and force MAE/RMSE.

For frames k with reference energies E_k (eV, the store's ``potential_energy``) and forces
F_k (eV/Å), and a model's predictions Ê_k, F̂_k from :func:`hyenamd.surrogate.compute_forces`:

    energy MAE/RMSE   over frames of (Ê_k − E_k) / N                 meV/atom
    force  MAE/RMSE   over all components of F̂ − F                   eV/Å
    force_rel_rmse    force RMSE / σ(F)                               σ over all reference components

σ(F) is the standard deviation of the reference force components about their mean (≈ 0),
so ``force_rel_rmse = 1`` is what a model predicting zero forces scores; the target of the
project is ≤ 0.1. Errors are accumulated as running sums (:class:`ErrorAccumulator`), one
frame at a time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from hyenamd.validate.trajectory import Trajectory

__all__ = ["AccuracyResult", "ErrorAccumulator", "evaluate_model", "evenly_spaced"]


class ErrorAccumulator:
    """Running MAE / RMSE of predictions against references, and the references' std."""

    def __init__(self) -> None:
        self.n = 0
        self._abs = self._sq = self._ref = self._ref2 = 0.0

    def update(self, pred: np.ndarray, ref: np.ndarray) -> None:
        p = np.asarray(pred, dtype=np.float64).ravel()
        r = np.asarray(ref, dtype=np.float64).ravel()
        if p.shape != r.shape:
            raise ValueError(f"prediction has {p.size} values, reference {r.size}")
        e = p - r
        self.n += e.size
        self._abs += float(np.abs(e).sum())
        self._sq += float((e**2).sum())
        self._ref += float(r.sum())
        self._ref2 += float((r**2).sum())

    @property
    def mae(self) -> float:
        return self._abs / self.n if self.n else math.nan

    @property
    def rmse(self) -> float:
        return math.sqrt(self._sq / self.n) if self.n else math.nan

    @property
    def ref_std(self) -> float:
        if not self.n:
            return math.nan
        mean = self._ref / self.n
        return math.sqrt(max(self._ref2 / self.n - mean**2, 0.0))


@dataclass(frozen=True)
class AccuracyResult:
    """energy_mae, energy_rmse: meV/atom (NaN without reference energies); force_mae,
    force_rmse, force_ref_std: eV/Å; force_rel_rmse: force RMSE / σ(F); n_frames evaluated."""

    energy_mae: float
    energy_rmse: float
    force_mae: float
    force_rmse: float
    force_ref_std: float
    force_rel_rmse: float
    n_frames: int


def evenly_spaced(n_frames: int, k: int) -> np.ndarray:
    """``min(k, n_frames)`` distinct frame indices spread evenly over ``range(n_frames)``."""
    if n_frames <= 0 or k <= 0:
        return np.zeros(0, np.int64)
    return np.unique(np.linspace(0, n_frames - 1, min(k, n_frames)).round().astype(np.int64))


def evaluate_model(
    model: torch.nn.Module,
    reference: Trajectory,
    frames: np.ndarray | None = None,
    *,
    energy_name: str = "potential_energy",
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> AccuracyResult:
    """Errors of a potential (the ``compute_forces`` protocol) on reference frames.

    frames: indices into ``reference`` (default: all); each must have reference forces.
    The model runs in its own parameter dtype (float32 unless it was loaded as float64); the
    trajectory's ``order`` (a store's canonical order) is passed on when it has one.
    """
    from hyenamd.surrogate.forces import compute_forces
    from hyenamd.system import Batch, System

    idx = np.arange(len(reference)) if frames is None else np.asarray(frames, dtype=np.int64)
    if len(idx) == 0:
        raise ValueError("no reference frames to evaluate the model on")
    params = list(model.parameters())
    dtype = params[0].dtype if params else torch.float64
    energies = reference.observable(energy_name)
    n_atoms = len(reference.species)
    e_acc, f_acc = ErrorAccumulator(), ErrorAccumulator()
    it = (next(iter(reference.frames(int(i), int(i) + 1))) for i in idx)
    if progress:
        from hyenamd.progress import progress_bar

        it = progress_bar(it, total=len(idx), desc="model on reference frames", leave=False)
    model = model.to(device)
    for fr in it:
        ref_f = reference.forces(fr.index)
        if ref_f is None:
            raise ValueError(f"reference frame {fr.index} has no forces: the accuracy metric needs them")
        system = System(
            positions=torch.tensor(fr.positions, dtype=dtype),
            species=torch.as_tensor(reference.species),
            masses=torch.as_tensor(reference.masses, dtype=dtype),
            cell=None if fr.cell is None else torch.tensor(fr.cell, dtype=dtype),
            pbc=torch.as_tensor(fr.pbc),
            labels=reference.labels,
            order=getattr(reference, "order", None),
        )
        out = compute_forces(model, Batch.from_systems([system]).to(device))
        f_acc.update(out["forces"].detach().cpu().double().numpy(), ref_f)
        if energies is not None and np.isfinite(energies[fr.index]):
            e_pred = float(out["energy"].detach().cpu().double().sum())
            e_acc.update(np.array([e_pred / n_atoms * 1e3]), np.array([energies[fr.index] / n_atoms * 1e3]))
    std = f_acc.ref_std
    return AccuracyResult(
        energy_mae=e_acc.mae,
        energy_rmse=e_acc.rmse,
        force_mae=f_acc.mae,
        force_rmse=f_acc.rmse,
        force_ref_std=std,
        force_rel_rmse=f_acc.rmse / std if std > 0 else math.nan,
        n_frames=f_acc.n // (3 * n_atoms) if n_atoms else 0,
    )
