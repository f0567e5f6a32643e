"""``hyenamd rollout CONFIG [--address ADDR] [--num-gpus N]``: a rollout ensemble from a YAML config.

The config (:class:`RolloutConfig`, presets in ``configs/cluster/``) describes an ensemble:
every frame in ``frames`` of the ``initial`` store, ``replicas`` times each, with seeds
``seed + k``; the model, integrator and lengths shared by all. Rollout ``k`` is named
``<name>_<k>`` and writes ``<output_dir>/<name>_<k>.h5md`` (or ``.zarr``); the manifest is
``<output_dir>/manifest.json`` unless given. Running the same command again skips finished
rollouts and resumes the others from their checkpoints. The exit status is 0 when every
rollout completed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import pathlib
from dataclasses import dataclass, field
from typing import Literal

from hyenamd.cluster.spec import RolloutSpec

__all__ = ["RolloutConfig", "add_arguments", "build_specs", "run"]

Value = float | int | str | bool | None


@dataclass(frozen=True)
class RolloutConfig:
    """A rollout ensemble (see the module docstring). Units: fs, K, Å, eV.

    initial_builder: ``"lj_fluid"`` writes an argon box of ``4 · initial_size³`` atoms to
    ``initial`` when that store does not exist (for demos); ``"none"``: it must exist.
    model / integrator / guard / committee: as in :class:`~hyenamd.cluster.RolloutSpec`
    (``committee``: checkpoints whose force spread the guard watches; ``guard`` then also takes
    ``max_force_std`` and ``action``; a checkpoint ``model`` takes ``compile: true`` or a
    backend name for the compiled small-system path, ``--set model.compile=true``). num_gpus: GPUs per rollout actor (fractions pack several
    on one GPU); address: a Ray cluster to join.
    """

    name: str = "rollout"
    initial: str = "runs/rollouts/initial.h5md"
    initial_builder: Literal["none", "lj_fluid"] = "none"
    initial_size: int = 2
    frames: tuple[int, ...] = (0,)
    replicas: int = 1
    seed: int = 0
    model: dict[str, Value] = field(default_factory=lambda: {"kind": "lennard_jones"})
    integrator: dict[str, Value] = field(
        default_factory=lambda: {"kind": "langevin_baoab", "dt_fs": 5.0, "temperature_k": 120.0}
    )
    steps: int = 1000
    report_interval: int = 10
    checkpoint_interval: int = 100
    temperature_k: float | None = None
    dtype: Literal["float32", "float64"] = "float32"
    device: str = "cpu"
    guard: dict[str, Value] | None = None
    committee: tuple[str, ...] | None = None
    output_dir: str = "runs/rollouts"
    format: Literal["h5md", "h5", "zarr"] = "h5md"
    manifest: str | None = None
    address: str | None = None
    num_cpus: float = 1.0
    num_gpus: float | None = None
    max_in_flight: int | None = None
    max_retries: int = 3
    retry_failed: bool = False


def build_specs(cfg: RolloutConfig) -> list[RolloutSpec]:
    """One :class:`RolloutSpec` per (frame, replica) of the config."""
    if cfg.replicas < 1:
        raise ValueError(f"replicas must be >= 1, got {cfg.replicas}")
    out = pathlib.Path(cfg.output_dir)
    specs = []
    k = 0
    for frame in cfg.frames:
        for _ in range(cfg.replicas):
            integ = dict(cfg.integrator)
            if integ.get("kind") == "langevin_baoab":
                integ["seed"] = int(integ.get("seed", 0) or 0) + cfg.seed + k  # independent noise
            res: dict = {"num_cpus": cfg.num_cpus}
            if cfg.num_gpus:
                res["num_gpus"] = cfg.num_gpus
            specs.append(
                RolloutSpec(
                    name=f"{cfg.name}_{k}",
                    initial=cfg.initial,
                    frame=int(frame),
                    model=dict(cfg.model),
                    integrator=integ,
                    steps=cfg.steps,
                    output=str(out / f"{cfg.name}_{k}.{cfg.format}"),
                    report_interval=cfg.report_interval,
                    checkpoint_interval=cfg.checkpoint_interval,
                    seed=cfg.seed + k,
                    temperature_k=cfg.temperature_k,
                    dtype=cfg.dtype,
                    device=cfg.device,
                    resources=res,
                    guard=None if cfg.guard is None else dict(cfg.guard),
                    committee=None if cfg.committee is None else list(cfg.committee),
                )
            )
            k += 1
    return specs


def _build_initial(cfg: RolloutConfig) -> None:
    if pathlib.Path(cfg.initial).exists() or cfg.initial_builder == "none":
        return
    import torch

    from hyenamd.cluster.spec import write_initial_store
    from hyenamd.engine.reference_systems import lj_fluid_system

    system = lj_fluid_system(cfg.initial_size, seed=cfg.seed, dtype=getattr(torch, cfg.dtype))
    write_initial_store(system, cfg.initial)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from hyenamd.config import add_config_args

    add_config_args(p, positional=True, required=True, config_cls=RolloutConfig, example="replicas=32")
    p.add_argument(
        "--address",
        default=None,
        help="Ray cluster to join ('auto', 'host:6379', 'ray://host:10001'); without it a fresh local Ray "
        "instance runs the rollouts (or the cluster in RAY_ADDRESS, as under `ray job submit`)",
    )
    p.add_argument("--num-gpus", type=float, default=None, help="GPUs per rollout actor (fractions allowed)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from hyenamd.cluster.backend import check_output_paths, run_rollouts
    from hyenamd.config import load_config

    overrides = list(args.overrides)
    if args.address is not None:
        overrides.append(f"address={args.address}")
    if args.num_gpus is not None:
        overrides.append(f"num_gpus={args.num_gpus}")
    cfg = load_config(args.config, RolloutConfig, overrides)
    specs = build_specs(cfg)
    manifest = cfg.manifest or str(pathlib.Path(cfg.output_dir) / "manifest.json")
    # relative outputs inside a `ray job submit` working-dir copy: refused before any work
    # (before the initial store is written into that copy)
    check_output_paths([*(s.output for s in specs), manifest])
    _build_initial(cfg)
    results = run_rollouts(
        specs,
        cfg.address,
        num_gpus=cfg.num_gpus,
        max_in_flight=cfg.max_in_flight,
        manifest=manifest,
        max_retries=cfg.max_retries,
        retry_failed=cfg.retry_failed,
        progress=not args.no_progress,
    )
    for line in report(results, manifest):
        print(line)
    return 0 if all(r.ok for r in results) else 1


def report(results, manifest: str) -> list[str]:
    """What ``hyenamd rollout`` prints at the end: the count, then a line per failed rollout and per
    rollout whose compiled model ran (some) calls eagerly (:class:`~hyenamd.cluster.spec.RolloutResult`)."""
    lines = [f"{sum(r.ok for r in results)}/{len(results)} rollouts completed; manifest: {manifest}"]
    for r in results:
        if not r.ok:
            lines.append(f"  {r.name}: {r.status} at step {r.step} ({r.frames} frames): {r.error}")
        if r.compile_fallback is not None:
            n = r.compiled_calls + r.eager_calls
            lines.append(
                f"  {r.name}: compile={r.compile!r} but {r.eager_calls}/{n} model calls ran eagerly: {r.compile_fallback}"
            )
    return lines
