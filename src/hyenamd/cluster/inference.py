"""Sharded inference: evaluate a model on every frame of a store, frames split across Ray tasks.

::

    sharded_inference("traj.h5", {"kind": "checkpoint", "path": "model.safetensors"}, "labels.zarr")

The output is a zarr v3 store pre-allocated with :func:`hyenamd.io.create_zarr_store` (same
atoms, one slot per input frame) holding ``position`` (copied), ``force`` (eV/Å, −∂E/∂x by
:func:`hyenamd.surrogate.compute_forces`), the ``energy`` observable (eV) and, with
``stress=True``, a ``stress`` observable (eV/Å³, ASE sign). Its frame chunk is
``frames_per_task``, and task ``k`` owns the frames ``[k·f, (k+1)·f)``: every task writes whole
chunks only (the multi-writer protocol of :mod:`hyenamd.io.zarr_store`), so tasks never touch
the same file. Each frame is evaluated alone as a one-system :class:`~hyenamd.Batch`, exactly
as :func:`evaluate_frames` does in one process, so the values are bit-identical to it.

Faults: tasks run with Ray's ``max_retries`` (a dead worker or node is retried elsewhere), and a
task resumes after the last frame its range committed; re-running the same call on an
existing output only fills the frames still missing. The store is marked complete at the end.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
from typing import Any

import numpy as np
import torch

__all__ = ["evaluate_frames", "sharded_inference"]

_DTYPES = {"float32": torch.float32, "float64": torch.float64}
_MODELS: dict[tuple, torch.nn.Module] = {}  # per worker process: a model is built once


def _model(model: dict, dtype: str, device: str, weights: bytes | None = None) -> torch.nn.Module:
    from hyenamd.cluster.worker import build_model

    key = (json.dumps(model, sort_keys=True), dtype, device)
    if key not in _MODELS:
        _MODELS[key] = build_model(model, dtype=_DTYPES[dtype], device=device, weights=weights)
    return _MODELS[key]


def _evaluate(model: torch.nn.Module, system, *, stress: bool) -> dict[str, np.ndarray]:
    from hyenamd.surrogate.forces import compute_forces
    from hyenamd.system import Batch

    out = compute_forces(model, Batch.from_systems([system]), stress=stress)
    res = {
        "energy": out["energy"].detach().cpu().numpy()[0],
        "forces": out["forces"].detach().cpu().numpy(),
    }
    if stress:
        res["stress"] = out["stress"].detach().cpu().numpy()[0]
    return res


def evaluate_frames(
    model: torch.nn.Module | dict,
    store: str | os.PathLike,
    frames: range | None = None,
    *,
    dtype: str = "float64",
    device: str = "cpu",
    stress: bool = False,
) -> dict[str, np.ndarray]:
    """The single-process computation: ``energy [n]`` eV, ``forces [n, N, 3]`` eV/Å (``stress [n, 3, 3]``).

    model: a potential (``nn.Module``) or a spec dict as in :class:`~hyenamd.cluster.RolloutSpec`.
    """
    from hyenamd.io import open_store

    if isinstance(model, dict):
        model = _model(model, dtype, device)
    with open_store(store, "r") as st:
        frames = range(len(st)) if frames is None else frames
        rows = [_evaluate(model, st[i].to(device, _DTYPES[dtype]), stress=stress) for i in frames]
    return {k: np.stack([r[k] for r in rows]) for k in rows[0]} if rows else {}


def _infer_range(
    store: str,
    output: str,
    start: int,
    stop: int,
    model: dict,
    weights_ref: list,
    dtype: str,
    device: str,
    stress: bool,
) -> int:
    """One task: fill output frames ``[start, stop)``; returns the frames it computed."""
    from hyenamd.io import open_store

    key = (json.dumps(model, sort_keys=True), dtype, device)
    weights = None
    if weights_ref and key not in _MODELS:
        import ray

        weights = ray.get(weights_ref[0])
    pot = _model(model, dtype, device, weights)
    with open_store(output, "r") as ro:
        committed = np.zeros(stop - start, bool)
        have = ro.committed[start:stop]
        committed[: len(have)] = have
    first = start + (int(np.argmin(committed)) if not committed.all() else stop - start)
    if first == stop:
        return 0
    with open_store(store, "r") as inp, open_store(output, "r+", frames=range(start, stop)) as out:
        for i in range(first, stop):
            system = inp[i].to(device, _DTYPES[dtype])
            r = _evaluate(pot, system, stress=stress)
            obs: dict[str, Any] = {"energy": float(r["energy"])}
            if stress:
                obs["stress"] = r["stress"]
            out.append(
                system.positions.detach().cpu().numpy(),
                step=int(inp.steps[i]),
                time=float(inp.times[i]),
                forces=r["forces"],
                cell=None if system.cell is None else system.cell.detach().cpu().numpy(),
                **obs,
            )
    return stop - first


def sharded_inference(
    store: str | os.PathLike,
    model: dict,
    output: str | os.PathLike,
    *,
    address: str | None = None,
    frames_per_task: int | None = None,
    dtype: str = "float64",
    device: str = "cpu",
    stress: bool = False,
    num_cpus: float = 1,
    num_gpus: float | None = None,
    max_in_flight: int | None = None,
    max_retries: int = 3,
    progress: bool = True,
    shutdown: bool | None = None,
) -> pathlib.Path:
    """Evaluate ``model`` on every frame of ``store`` into the zarr store ``output``; returns its path.

    model: a spec dict (``{"kind": "checkpoint", "path": ...}`` or a named classical potential).
    frames_per_task: frames per task and the output's frame chunk (default: about four tasks
    per CPU of the cluster). An existing ``output`` made for the same input is completed, not
    replaced. Other arguments as in :func:`~hyenamd.cluster.run_rollouts`.
    """
    import ray

    from hyenamd.cluster.backend import SYSTEM_ERRORS, check_output_paths, check_resources, ensure_ray
    from hyenamd.cluster.spec import MODEL_KINDS
    from hyenamd.io import complete_store, create_zarr_store, open_store
    from hyenamd.io.schema import StoreError

    check_output_paths([os.fspath(output)])
    store, output = os.path.abspath(store), os.path.abspath(output)  # tasks run in other directories
    if not isinstance(model, dict) or model.get("kind") not in MODEL_KINDS:
        raise ValueError(f"model must be a dict with 'kind' in {MODEL_KINDS}, got {model!r}")
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    if pathlib.Path(output).suffix != ".zarr":
        raise ValueError(f"output must be a .zarr store (chunk-aligned writers), got {output!r}")
    with open_store(store, "r") as st:
        n = len(st)
        template = st.system
        if n == 0:
            raise StoreError(f"{store} has no frames")
    started = ensure_ray(address)
    try:
        gpu = {"num_gpus": float(num_gpus)} if num_gpus else {}
        check_resources({f"inference of {store}": {"num_cpus": float(num_cpus), **gpu}})
        if frames_per_task is None:
            cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
            frames_per_task = max(1, math.ceil(n / (4 * cpus)))
        f = int(frames_per_task)
        if pathlib.Path(output).exists():
            with open_store(output, "r") as ex:
                slots = ex._slots() if ex.layout is not None else 0  # pre-allocated frames (io internals)
                chunk = ex.layout.chunk_frames if ex.layout is not None else 0
                if ex.n_atoms != template.n_atoms or slots != n or chunk != f:
                    raise StoreError(
                        f"{output} exists with {ex.n_atoms} atoms, {slots} frames, chunk {chunk}; "
                        f"this run needs {template.n_atoms}, {n}, {f}: choose another output"
                    )
        else:
            obs = {"energy": ()} | ({"stress": (3, 3)} if stress else {})
            create_zarr_store(
                output, template.to(dtype=_DTYPES[dtype]), n, fields=("position", "force"),
                observables=obs, units={"energy": "eV", "stress": "eV/Å^3"}, chunk_frames=f,
                dtype=dtype,
            )  # fmt: skip
        refs = []
        if model["kind"] == "checkpoint":
            refs = [ray.put(pathlib.Path(model["path"]).read_bytes())]
        task = ray.remote(_infer_range).options(
            num_cpus=num_cpus, num_gpus=num_gpus or 0, max_retries=max_retries, retry_exceptions=False
        )
        ranges = [(a, min(a + f, n)) for a in range(0, n, f)]
        limit = (
            int(max_in_flight)
            if max_in_flight
            else max(1, int(ray.cluster_resources().get("CPU", 1) // num_cpus))
        )
        bar = None
        if progress:
            from hyenamd.progress import progress_bar

            bar = progress_bar(total=n, unit="frame", desc="inference", dynamic_ncols=True)
        pending, in_flight = list(ranges), {}
        try:
            while pending or in_flight:
                while pending and len(in_flight) < limit:
                    a, b = pending.pop(0)
                    ref = task.remote(store, output, a, b, model, refs, dtype, device, stress)
                    in_flight[ref] = (a, b)
                done, _ = ray.wait(list(in_flight), num_returns=1, timeout=1.0)
                for ref in done:
                    a, b = in_flight.pop(ref)
                    try:
                        ray.get(ref)
                    except SYSTEM_ERRORS as e:
                        raise RuntimeError(f"frames {a}:{b} failed after {max_retries} retries: {e}") from e
                    if bar is not None:
                        bar.update(b - a)
        finally:
            if bar is not None:
                bar.close()
        complete_store(output)
    finally:
        if shutdown or (shutdown is None and started):
            ray.shutdown()
    return pathlib.Path(output)
