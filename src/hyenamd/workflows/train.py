"""``hyenamd train CONFIG``: reference stores → training samples → :class:`~hyenamd.surrogate.training.Trainer`.

The glue between the frame stores (:mod:`hyenamd.io`) and the surrogate's training loop,
kept outside ``hyenamd.surrogate`` (which never imports io). ``configs/train/*.yaml`` map 1:1
onto :class:`TrainConfig`::

    task: force_field            # or dynamics (loss from the head: MSE, or the Gaussian NLL of
                                 # heads: [energy, stochastic_dynamics]), property
    output_dir: runs/argon_ff
    data: {stores: [data/reference/argon.h5], stride: 2, n_segments: 5, valid_fraction: 0.2}
    model: {species: [18], cutoff: 6.0, ...}          # GHyenaConfig
    training: {epochs: 30, batch_size: 4, lr: 2e-3}   # TrainSettings

Frames are split into ``n_segments`` contiguous trajectory segments per store; whole segments
go to validation, so no validation frame is a near-copy of a training frame. Dynamics pairs
``(t, t + horizon_frames)`` never straddle two segments. ``task: property`` is handed to
:mod:`hyenamd.workflows.property` (the ``property:`` section).
"""

from __future__ import annotations

import dataclasses
import pathlib
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from hyenamd.errors import HyenaError
from hyenamd.surrogate.model import GHyenaConfig
from hyenamd.surrogate.training import Sample, TrainResult, TrainSettings

__all__ = ["DataConfig", "TrainConfig", "load_samples", "train"]


@dataclass(frozen=True)
class DataConfig:
    """Which reference frames to train on.

    stores: reference stores (``.h5``/``.zarr`` with forces; energies from the
    ``potential_energy`` observable). skip_frames: leading frames dropped (equilibration).
    stride: use every stride-th frame; max_frames: at most this many per store (None: all).
    horizon_frames: dynamics pairs are (t, t + horizon_frames · stride) in stored frames.
    n_segments: contiguous segments per store (the split unit); valid_fraction: share of
    segments held out for validation; split_seed: which ones. time_reversal (dynamics; for NVE
    data — a thermostatted run is not reversible): each pair (x_t, v_t) → (x_t+τ, v_t+τ) is also used reversed, (x_t+τ, −v_t+τ) →
    (x_t, −v_t) — an exact symmetry of Hamiltonian dynamics that pushes the learned map towards
    reversibility (less systematic energy loss); the two share a segment, so never split.
    """

    stores: tuple[str, ...] = ()
    skip_frames: int = 0
    stride: int = 1
    max_frames: int | None = None
    horizon_frames: int = 1
    n_segments: int = 5
    valid_fraction: float = 0.2
    split_seed: int = 0
    time_reversal: bool = False

    def __post_init__(self) -> None:
        if self.skip_frames < 0 or self.stride < 1 or self.horizon_frames < 1 or self.n_segments < 2:
            raise ValueError("need skip_frames >= 0, stride >= 1, horizon_frames >= 1, n_segments >= 2")
        if self.max_frames is not None and self.max_frames < 2:
            raise ValueError(f"max_frames must be >= 2 or null, got {self.max_frames}")


@dataclass(frozen=True)
class TrainConfig:
    """Settings of ``hyenamd train`` (``configs/train/*.yaml``).

    task: force_field, dynamics or property. output_dir: state, best checkpoint, curve.
    resume: continue from ``output_dir/train_state.safetensors`` when present.
    overwrite: train into a non-empty ``output_dir`` from scratch, replacing its checkpoint, state
    and history (without it, or ``resume``, a non-empty ``output_dir`` is refused before any work).
    init_from: start from the weights of a checkpoint with the same architecture (e.g. the
    dynamics head on a trained force-field backbone); None: fresh weights from ``model``.
    torch_threads: intra-op threads (0: torch's default).
    """

    task: Literal["force_field", "dynamics", "property"] = "force_field"
    output_dir: str = "runs/train"
    resume: bool = False
    overwrite: bool = False
    init_from: str | None = None
    torch_threads: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: GHyenaConfig = field(default_factory=GHyenaConfig)
    training: TrainSettings = field(default_factory=TrainSettings)
    property: dict[str, Any] = field(default_factory=dict)


class TrainDataError(HyenaError, ValueError):
    """The training data named by a config cannot be used (empty, too short, missing arrays)."""


def _frame_indices(n: int, d: DataConfig) -> list[int]:
    idx = list(range(d.skip_frames, n, d.stride))
    if d.max_frames is not None:
        idx = idx[: d.max_frames]
    return idx


def load_samples(d: DataConfig, task: str) -> tuple[list[Sample], dict[str, Any]]:
    """Samples from every store of ``d`` (segment ids unique across stores) and a data summary."""
    from hyenamd.geometry import minimum_image
    from hyenamd.io import open_store

    if not d.stores:
        raise TrainDataError("data.stores is empty: name at least one reference store")
    missing = [p for p in d.stores if not pathlib.Path(p).exists()]
    if missing:
        raise FileNotFoundError(f"reference store(s) not found: {missing}")
    samples: list[Sample] = []
    summary: dict[str, Any] = {"stores": [], "task": task}
    for s_id, path in enumerate(d.stores):
        with open_store(path) as st:
            idx = _frame_indices(len(st), d)
            if len(idx) < d.n_segments:
                raise TrainDataError(
                    f"{path}: {len(idx)} usable frames, fewer than n_segments={d.n_segments}"
                )
            seg = {k: s_id * d.n_segments + (n * d.n_segments) // len(idx) for n, k in enumerate(idx)}
            has_f = "force" in st.fields
            pe = st.observable("potential_energy") if "potential_energy" in st.observable_names else None
            if task == "force_field" and not has_f and pe is None:
                raise TrainDataError(f"{path} holds neither forces nor potential energies: nothing to fit")
            times = st.times
            if task == "force_field":
                for k in idx:
                    f = torch.as_tensor(np.asarray(st.read(k, "forces"))) if has_f else None
                    e = None if pe is None else float(pe[k])
                    samples.append(Sample(st[k], e, f, segment=seg[k]))
            else:
                if "velocity" not in st.fields:
                    raise TrainDataError(f"{path} has no velocities: the dynamics task needs them")
                h = d.horizon_frames * d.stride
                # NVE segments of the reference (``segments: nve``): pairs never straddle two
                ref_seg = st.observable("segment") if "segment" in st.observable_names else None
                for k in idx:
                    j = k + h
                    if j not in seg or seg[j] != seg[k]:
                        continue
                    if ref_seg is not None and ref_seg[j] != ref_seg[k]:
                        continue
                    a, b = st[k], st[j]
                    disp = minimum_image(b.positions - a.positions, a.cell, a.pbc)
                    samples.append(Sample(a, displacement=disp, next_velocities=b.velocities, segment=seg[k]))
                    if d.time_reversal:
                        back = b.replace(velocities=-b.velocities)
                        samples.append(
                            Sample(back, displacement=-disp, next_velocities=-a.velocities, segment=seg[k])
                        )
                    summary["horizon_fs"] = float(times[j] - times[k])
                summary.setdefault("reference_segments", []).append(
                    "none (one continuous run)"
                    if ref_seg is None
                    else f"nve: {len(np.unique(ref_seg))} NVE segments started from NVT states"
                )
            summary["stores"].append(
                {
                    "path": str(path),
                    "n_frames": len(st),
                    "used": len(idx),
                    "n_atoms": st.n_atoms,
                    "dt_frame_fs": float(times[1] - times[0]),
                }
            )
    if not samples:
        raise TrainDataError(
            "no training samples: check skip_frames / stride / horizon_frames against the stores"
        )
    summary["n_samples"] = len(samples)
    summary["data_config"] = dataclasses.asdict(d)
    return samples, summary


def train(cfg: TrainConfig, *, echo=print) -> TrainResult:
    """Run ``hyenamd train`` for ``cfg`` (force_field or dynamics; property goes to hyenamd.workflows.property)."""
    from hyenamd.surrogate import GHyena, load_model
    from hyenamd.surrogate.training import Trainer, split_by_segment

    check_output_dir(cfg.output_dir, resume=cfg.resume, overwrite=cfg.overwrite)
    if cfg.task == "property":
        from hyenamd.workflows.property import train_property

        return train_property(cfg, echo=echo)
    if cfg.training.task != cfg.task:
        cfg = dataclasses.replace(cfg, training=dataclasses.replace(cfg.training, task=cfg.task))
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    model_cfg = cfg.model
    if cfg.task == "dynamics" and not model_cfg.has_dynamics:
        model_cfg = dataclasses.replace(model_cfg, heads=(*model_cfg.heads, "dynamics"))
    samples, summary = load_samples(cfg.data, cfg.task)
    if cfg.task == "dynamics" and "horizon_fs" in summary:
        model_cfg = dataclasses.replace(model_cfg, dynamics_horizon_fs=summary["horizon_fs"])
    species = sorted({int(z) for x in samples for z in x.system.species.unique().tolist()})
    unknown = sorted(set(species) - set(model_cfg.species))
    if unknown:
        raise TrainDataError(
            f"the data has species {unknown} that model.species {list(model_cfg.species)} lacks"
        )
    model = GHyena(model_cfg)
    if cfg.init_from:
        src = load_model(cfg.init_from, dtype=model.dtype)
        missing, _ = model.load_state_dict(_init_state(src.state_dict(), model), strict=False)
        echo(f"train: initialised from {cfg.init_from} ({len(missing)} new tensors: the added heads)")
        changed = init_differences(src.cfg, model_cfg)
        if changed:
            echo(
                f"train: warning: {cfg.init_from} was trained with {', '.join(changed)}; its weights now "
                "run with model's other values (set them in the model section to keep its maths)"
            )
    train_s, valid_s = split_by_segment(samples, cfg.data.valid_fraction, cfg.data.split_seed)
    echo(
        f"train: {cfg.task} on {len(train_s)} training / {len(valid_s)} validation samples "
        f"({summary['n_samples']} total), model {sum(p.numel() for p in model.parameters()):,} parameters"
    )
    trainer = Trainer(
        model,
        train_s,
        valid_s,
        cfg.training,
        out_dir=cfg.output_dir,
        data_summary=summary,
        resume=cfg.resume,
        echo=echo,
    )
    result = trainer.fit()
    echo(
        f"train: best validation loss {result.best_valid_loss:.4g} "
        + " ".join(f"{k}={v:.4g}" for k, v in result.best_metrics.items())
        + f"; checkpoint {result.best_path}; curve {result.curve_path}"
    )
    return result


#: config fields that change a model's maths without changing its tensors' shapes
_MATHS_FIELDS = (
    "cutoff", "radial_basis", "envelope_exponent", "avg_neighbors", "filter_w_cap", "conv",
    "ordering", "norm_eps", "learn_norm_eps", "pair_cutoff",
)  # fmt: skip


def init_differences(src: GHyenaConfig, cfg: GHyenaConfig) -> list[str]:
    """``"field=value"`` of ``init_from``'s config for every maths setting ``cfg`` changes
    (e.g. a checkpoint written before issue 12 loads with conv='linear', norm_eps=1.0)."""
    return [f"{k}={getattr(src, k)!r}" for k in _MATHS_FIELDS if getattr(src, k) != getattr(cfg, k)]


def _init_state(state: dict[str, torch.Tensor], model) -> dict[str, torch.Tensor]:
    """``state`` for ``model``: a deterministic dynamics head's weights become the means of a
    stochastic one (``dynamics_head.X`` → ``dynamics_head.mean.X``), e.g. a Φ trained on NVE
    strides as the start of a stochastic head trained on Langevin data."""
    if "stochastic_dynamics" not in model.cfg.heads:
        return state
    pre = "dynamics_head."

    def rename(k: str) -> str:
        tail = k[len(pre) :]
        if k.startswith(pre) and tail.split(".")[0] in ("displacement", "velocity"):
            return pre + "mean." + tail
        return k

    return {rename(k): v for k, v in state.items()}


def check_output_dir(path: str | pathlib.Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse to train into a non-empty ``path`` unless resuming or overwriting; refuse a file or an
    unwritable directory. Runs before any data is read (creates ``path`` when missing)."""
    from hyenamd.errors import OutputExistsError, check_writable_dir

    p = pathlib.Path(path)
    if p.is_dir() and any(p.iterdir()) and not (resume or overwrite):
        names = sorted(x.name for x in p.iterdir())
        raise OutputExistsError(
            f"output_dir {p} is not empty ({', '.join(names[:5])}{' ...' if len(names) > 5 else ''}): "
            "its checkpoint and history would be replaced; use --overwrite (or overwrite: true), "
            "resume: true to continue, or another output_dir"
        )
    check_writable_dir(p, "output_dir")


# ---------------------------------------------------------------------- CLI
def add_arguments(p) -> None:
    from hyenamd.config import add_config_args

    add_config_args(
        p, positional=True, required=True, config_cls=TrainConfig, example="output_dir=runs/argon"
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="train from scratch into a non-empty output_dir, replacing its checkpoint and history",
    )


def run(args) -> int:
    from hyenamd.config import load_config

    overrides = [*args.overrides, *(["overwrite=true"] if getattr(args, "overwrite", False) else [])]
    cfg = load_config(args.config, TrainConfig, overrides)
    train(cfg)
    return 0
