"""Property prediction (the seed paper's RNA tasks): per-residue and per-structure regression
heads on the G-Hyena backbone, trained from structures (PDB) plus CSV labels.

``hyenamd train CONFIG`` with ``task: property`` and a ``property:`` section
(:class:`PropertyData`)::

    structures.csv   id,path[,<structure targets>...]     path: a PDB file (relative to the CSV)
    residues.csv     id,residue[,<residue targets>...]    residue: 0-based index in the structure

Model (:class:`PropertyModel`): the backbone's embedding and local/global blocks give per-atom
invariants ``h_i = [s_i, |v_i|]`` ``[N, F + C]``; a residue's features are the mean of ``h``
over its atoms and a structure's the mean over its atoms; two MLPs map them to the
(standardised) targets. Both are O(3)-invariant. Targets are standardised with the training
set's mean and std; the loss is the mean squared error over the given (non-NaN) labels.

Outputs in ``output_dir``: ``best_property.safetensors`` (weights + JSON: backbone config,
target names, normalisation, data summary; never pickle), ``predictions_residues.csv``,
``predictions_structures.csv`` (every structure, with its split), ``loss_curve.png``.

:func:`make_rmsf_dataset` builds a proof-of-workflow data set from a reference store of a
peptide/protein: windows of the trajectory become structures (first frame written as PDB);
labels are each residue's RMSF within the window (Å) and the structure's radius of gyration
(Å). docs/training.md explains how to plug in OpenVaccine / Ribonanza / Tc-Ribo.
"""

from __future__ import annotations

import json
import math
import pathlib
import time
from dataclasses import asdict

import numpy as np
import torch
from torch import Tensor, nn

from hyenamd.geometry import batch_neighbor_list, edge_vectors
from hyenamd.surrogate.equivariant import ScalarMLP
from hyenamd.surrogate.local_block import Edges
from hyenamd.surrogate.model import GHyena, GHyenaConfig
from hyenamd.surrogate.schedule import cosine_lr
from hyenamd.system import Batch
from hyenamd.workflows.property_data import (
    PropertyData,
    _write_csv,
    load_property_data,
    make_rmsf_dataset,
    read_pdb,
    write_pdb,
)

__all__ = [
    "PropertyData",
    "PropertyModel",
    "make_rmsf_dataset",
    "read_pdb",
    "train_property",
    "write_pdb",
]


class PropertyModel(nn.Module):
    """G-Hyena backbone + per-residue and per-structure regression heads (module doc)."""

    def __init__(self, cfg: GHyenaConfig, n_residue_targets: int, n_structure_targets: int) -> None:
        super().__init__()
        self.backbone = GHyena(cfg)
        f, c = cfg.n_scalar, cfg.n_vector
        dt = cfg.torch_dtype
        self.residue_head = ScalarMLP(f + c, f, n_residue_targets).to(dt) if n_residue_targets else None
        self.structure_head = ScalarMLP(f + c, f, n_structure_targets).to(dt) if n_structure_targets else None

    def features(self, batch: Batch) -> Tensor:
        """Per-atom invariants ``[N, F + C]``: the backbone's final scalars and vector norms.

        Mirrors :meth:`GHyena.forward` up to its heads (embedding → blocks).
        """
        bb = self.backbone
        idx = bb.species_index(batch.species)
        nb = batch_neighbor_list(batch.positions, batch.cell, batch.pbc, batch.ptr, bb.cutoff)
        edges = Edges(nb.i.long(), nb.j.long(), edge_vectors(batch.positions, batch.cell, nb, batch.batch))
        s = bb.embedding(idx)
        v = s.new_zeros(batch.n_atoms, bb.cfg.n_vector, 3)
        order = batch.order
        for kind, block in zip(bb.cfg.pattern, bb.blocks):
            if kind == "local":
                s, v = block(s, v, edges)
            else:
                if order is None:
                    from hyenamd.surrogate.ordering import batch_order

                    order = batch_order(batch, bb.cfg.ordering)
                s, v = block(s, v, order, batch.ptr)
        return torch.cat([s, torch.sqrt(v.pow(2).sum(-1) + 1e-12)], dim=-1)

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        """``"residue"`` ``[n_residues_total, T_r]`` (systems in order) and ``"structure"`` ``[B, T_s]``."""
        h = self.features(batch)
        out = {}
        if self.structure_head is not None:
            pooled = _segment_mean(h, batch.batch, batch.n_systems)
            out["structure"] = self.structure_head(pooled)
        if self.residue_head is not None:
            rid = residue_ids(batch)
            out["residue"] = self.residue_head(_segment_mean(h, rid, int(rid.max()) + 1))
        return out


def _segment_mean(x: Tensor, seg: Tensor, n: int) -> Tensor:
    tot = x.new_zeros(n, x.shape[1]).index_add(0, seg, x)
    cnt = torch.bincount(seg, minlength=n).clamp(min=1).to(x.dtype)
    return tot / cnt.unsqueeze(-1)


def residue_ids(batch: Batch) -> Tensor:
    """Global residue ids ``[N]``: each system's residue_index offset by the residues before it."""
    ids, off = [], 0
    for k, lab in enumerate(batch.labels):
        if lab is None:
            raise ValueError(
                f"structure {k} of the batch has no residue labels (per-residue targets need them)"
            )
        r = lab.residue_index
        ids.append(r + off)
        off += int(r.max()) + 1
    return torch.cat(ids).to(batch.positions.device)


# ---------------------------------------------------------------------- training
def _masked_mse(pred: Tensor, target: Tensor) -> Tensor:
    ok = torch.isfinite(target)
    if not bool(ok.any()):
        return pred.sum() * 0.0
    return (pred[ok] - target[ok]).pow(2).mean()


def train_property(cfg, *, echo=print) -> dict:
    """Train a :class:`PropertyModel` for ``cfg`` (a :class:`hyenamd.workflows.train.TrainConfig` with
    ``task: property``); writes the checkpoint, predictions and curve; returns a summary."""
    from hyenamd.config import from_dict, to_dict
    from hyenamd.progress import progress_bar

    d = (
        cfg.property
        if isinstance(cfg.property, PropertyData)
        else from_dict(PropertyData, cfg.property, source="property")
    )
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    out = pathlib.Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    dtype = cfg.model.torch_dtype
    items = load_property_data(d, dtype)
    species = sorted({int(z) for it in items for z in it["system"].species.tolist()})
    if sorted(set(species) - set(cfg.model.species)):
        raise ValueError(
            f"structures contain species {sorted(set(species) - set(cfg.model.species))} unknown to model.species"
        )
    g = torch.Generator().manual_seed(d.seed)
    perm = torch.randperm(len(items), generator=g).tolist()
    n_valid = min(max(1, round(d.valid_fraction * len(items))), len(items) - 1)
    valid = [items[k] for k in perm[:n_valid]]
    train = [items[k] for k in perm[n_valid:]]

    # standardise with the training set's statistics
    def stats(key):
        x = torch.cat([it[key].reshape(-1, it[key].shape[-1]) for it in train]) if train else None
        if x is None or x.shape[-1] == 0:
            return torch.zeros(0, dtype=dtype), torch.ones(0, dtype=dtype)
        mu = torch.nanmean(x, 0)
        sd = torch.sqrt(torch.nanmean((x - mu).pow(2), 0)).clamp(min=1e-8)
        return torch.nan_to_num(mu), torch.nan_to_num(sd, nan=1.0)

    s_mu, s_sd = stats("structure")
    r_mu, r_sd = stats("residue")
    torch.manual_seed(d.seed)
    model = PropertyModel(cfg.model, len(d.residue_targets), len(d.structure_targets))
    opt = torch.optim.AdamW(model.parameters(), lr=d.lr, weight_decay=d.weight_decay)
    n_batches = math.ceil(len(train) / d.batch_size)
    total = n_batches * d.epochs

    def loss_of(group):
        batch = Batch.from_systems([it["system"] for it in group])
        pred = model(batch)
        loss = pred.get("structure", torch.zeros(())).sum() * 0.0
        if "structure" in pred:
            loss = loss + _masked_mse(
                pred["structure"], (torch.stack([it["structure"] for it in group]) - s_mu) / s_sd
            )
        if "residue" in pred:
            loss = loss + _masked_mse(
                pred["residue"], (torch.cat([it["residue"] for it in group]) - r_mu) / r_sd
            )
        return loss

    history = {"train_loss": [], "valid_loss": []}
    best, bad, step, t0 = math.inf, 0, 0, time.perf_counter()
    best_state = None
    bar = progress_bar(total=total, desc="train property", unit="step", disable=not d.progress)
    for epoch in range(d.epochs):
        model.train()
        order = torch.randperm(len(train), generator=g).tolist()
        for k in range(0, len(order), d.batch_size):
            for grp in opt.param_groups:
                grp["lr"] = cosine_lr(step, base=d.lr, total=total, warmup=d.warmup_steps)
            loss = loss_of([train[i] for i in order[k : k + d.batch_size]])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), d.clip_grad_norm)
            opt.step()
            step += 1
            history["train_loss"].append(float(loss.detach()))
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss.detach()):.4g}", best=f"{best:.4g}", refresh=False)
        model.eval()
        with torch.no_grad():
            v = sum(
                float(loss_of(valid[k : k + d.batch_size])) * len(valid[k : k + d.batch_size])
                for k in range(0, len(valid), d.batch_size)
            ) / len(valid)
        history["valid_loss"].append(v)
        if v < best:
            best, bad = v, 0
            best_state = {k: t.detach().clone() for k, t in model.state_dict().items()}
        else:
            bad += 1
            if d.patience and bad >= d.patience:
                echo(f"train property: early stop after epoch {epoch + 1}")
                break
    bar.close()
    model.load_state_dict(best_state)
    model.eval()
    norm = {
        "structure_mean": s_mu.tolist(),
        "structure_std": s_sd.tolist(),
        "residue_mean": r_mu.tolist(),
        "residue_std": r_sd.tolist(),
    }
    meta = {
        "format": "hyenamd.property",
        "backbone": to_dict(cfg.model),
        "structure_targets": list(d.structure_targets),
        "residue_targets": list(d.residue_targets),
        "normalisation": norm,
        "valid_loss": best,
        "data": asdict(d),
        "n_train": len(train),
        "n_valid": len(valid),
    }
    from safetensors.torch import save_file

    ckpt = out / "best_property.safetensors"
    save_file(
        {k: t.contiguous() for k, t in model.state_dict().items()},
        str(ckpt),
        metadata={"hyenamd": json.dumps(meta)},
    )
    metrics = _write_predictions(model, items, {id(it) for it in valid}, d, (s_mu, s_sd, r_mu, r_sd), out)
    curve = _plot(history, n_batches, out / "loss_curve.png")
    summary = {
        "checkpoint": str(ckpt),
        "best_valid_loss": best,
        "metrics": metrics,
        "curve": str(curve),
        "wall_s": time.perf_counter() - t0,
        "n_train": len(train),
        "n_valid": len(valid),
    }
    (out / "property_summary.json").write_text(json.dumps(summary, indent=2))
    echo(
        f"train property: best validation loss {best:.4g}; "
        + " ".join(f"{k}={v:.3g}" for k, v in metrics.items())
        + f"; predictions in {out}"
    )
    return summary


@torch.no_grad()
def _write_predictions(model, items, valid_ids, d, norm, out) -> dict[str, float]:
    s_mu, s_sd, r_mu, r_sd = norm
    srows, rrows = [], []
    errs: dict[str, list] = {}
    for it in items:
        pred = model(Batch.from_systems([it["system"]]))
        split = "valid" if id(it) in valid_ids else "train"
        if "structure" in pred:
            p = pred["structure"][0] * s_sd + s_mu
            srows.append(
                [it["id"], split]
                + [f"{float(x):.6g}" for x in p]
                + [f"{float(x):.6g}" for x in it["structure"]]
            )
            if split == "valid":
                for c, a, b in zip(d.structure_targets, p.tolist(), it["structure"].tolist()):
                    errs.setdefault(f"valid_mae[{c}]", []).append(abs(a - b))
        if "residue" in pred:
            p = pred["residue"] * r_sd + r_mu
            for r in range(p.shape[0]):
                rrows.append(
                    [it["id"], r, split]
                    + [f"{float(x):.6g}" for x in p[r]]
                    + [f"{float(x):.6g}" for x in it["residue"][r]]
                )
                if split == "valid":
                    for c, a, b in zip(d.residue_targets, p[r].tolist(), it["residue"][r].tolist()):
                        if math.isfinite(b):
                            errs.setdefault(f"valid_mae[{c}]", []).append(abs(a - b))
    if srows:
        _write_csv(
            out / "predictions_structures.csv",
            ["id", "split"] + [f"pred_{c}" for c in d.structure_targets] + list(d.structure_targets),
            srows,
        )
    if rrows:
        _write_csv(
            out / "predictions_residues.csv",
            ["id", "residue", "split"] + [f"pred_{c}" for c in d.residue_targets] + list(d.residue_targets),
            rrows,
        )
    return {k: float(np.mean(v)) for k, v in errs.items()}


def _plot(history: dict, n_batches: int, path: pathlib.Path) -> pathlib.Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.semilogy(range(1, len(history["train_loss"]) + 1), history["train_loss"], lw=0.8, label="train")
    ax.semilogy(
        [(e + 1) * n_batches for e in range(len(history["valid_loss"]))],
        history["valid_loss"],
        "o-",
        ms=3,
        label="validation",
    )
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("standardised MSE")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
