"""The stages of ``hyenamd demo`` that touch OpenMM, the engine and the validator (see :mod:`hyenamd.workflows.demo`).

* :func:`reference_stage` — two independent OpenMM runs (training, held out).
* :func:`openmm_speed` — OpenMM's simulated time per wall second on the same system and machine.
* :func:`rollout_force_field` — Langevin NVT MD with the trained force field (:class:`~hyenamd.engine.Simulation`).
* :func:`rollout_dynamics` — learned large steps ``(x, v) → (x + Δx, v')`` with the dynamics
  head (:class:`~hyenamd.engine.LearnedPropagator` in a :class:`~hyenamd.engine.Simulation`).
* :func:`validate_stage` — :func:`hyenamd.validate.validate` of each rollout against the held-out run,
  with an exact OpenMM run of the rollout's length as the baseline (:func:`baseline_run`).
"""

from __future__ import annotations

import dataclasses
import pathlib
import shutil
import time
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:  # pragma: no cover
    from hyenamd.workflows.demo import DemoConfig

__all__ = [
    "baseline_run",
    "openmm_speed",
    "reference_stage",
    "rollout_dynamics",
    "rollout_force_field",
    "validate_stage",
]


def reference_stage(cfg: DemoConfig, out: pathlib.Path, echo=print) -> tuple[pathlib.Path, pathlib.Path]:
    """Stage 1: the training and the held-out reference stores (kept when ``reuse_reference``)."""
    from hyenamd.engine.reference import reference_md

    paths = []
    # the training run may be NVE segments from NVT states (the large step's data); the held-out
    # run is always one continuous NVT run (what the rollouts are validated against)
    runs = (
        ("reference_train.h5", cfg.reference.seed, cfg.reference.n_steps, cfg.reference.segments),
        ("reference_heldout.h5", cfg.reference.seed + 1, cfg.heldout_steps, "none"),
    )
    echo(
        f"[1/5] reference MD (OpenMM, {cfg.reference.system}, {cfg.reference.ensemble.upper()} "
        f"{cfg.reference.temperature_k:g} K, dt {cfg.reference.dt_fs:g} fs)"
    )
    for name, seed, n_steps, segments in runs:
        path = out / name
        rc = dataclasses.replace(
            cfg.reference, output=str(path), overwrite=True, seed=seed, n_steps=n_steps, segments=segments
        )
        if cfg.reuse_reference and _complete(path, rc):
            echo(f"      reusing {path}")
        else:
            if path.exists():
                echo(f"      {path.name}: made with other settings (or incomplete); running it again")
            t = time.perf_counter()
            reference_md(rc)
            echo(
                f"      {path.name}: {n_steps} steps ({n_steps * rc.dt_fs / 1000:g} ps) in {time.perf_counter() - t:.1f} s"
            )
        paths.append(path)
    return paths[0], paths[1]


def _complete(path: pathlib.Path, rc) -> bool:
    """Whether ``path`` is a complete store made with the settings of ``rc`` (its provenance file)."""
    if not path.exists():
        return False
    import json

    from hyenamd.config import to_dict
    from hyenamd.io import open_store

    volatile = ("output", "overwrite", "progress")
    try:
        stored = json.loads(path.with_name(path.name + ".provenance.json").read_text())["config"]
        wanted = json.loads(json.dumps(to_dict(rc), default=str))
        if {k: v for k, v in stored.items() if k not in volatile} != {
            k: v for k, v in wanted.items() if k not in volatile
        }:
            return False
        with open_store(path) as st:
            same_kind = ("segment" in st.observable_names) == (rc.segments == "nve")
            return st.status == "complete" and len(st) >= 2 and same_kind
    except Exception:
        return False


def openmm_speed(cfg: DemoConfig, n_steps: int = 1000, repeats: int = 3) -> dict[str, float]:
    """OpenMM's speed on the reference system (same platform/threads as the reference runs).

    The fastest of ``repeats`` timings of ``n_steps`` steps: one short timing was noisy (a
    400-step run once read 4,900 fs/s instead of ~34,000 on a quiet machine).
    """
    from hyenamd.engine.reference import make_context

    rc = dataclasses.replace(cfg.reference, minimize=False, segments="none")
    _, ctx, integ, _ = make_context(rc)
    integ.step(20)  # warm-up
    ctx.getState(getEnergy=True)
    walls = []
    for _ in range(repeats):
        t = time.perf_counter()
        integ.step(n_steps)
        ctx.getState(getEnergy=True)
        walls.append(time.perf_counter() - t)
    wall = min(walls)
    return {
        "steps": n_steps,
        "repeats": repeats,
        "wall_s": wall,
        "simulated_fs_per_wall_s": n_steps * rc.dt_fs / wall,
        "platform": ctx.getPlatform().getName(),
        "threads": rc.threads,
    }


def _first_frame(store_path: pathlib.Path, dtype: torch.dtype):
    from hyenamd.io import open_store

    with open_store(store_path) as st:
        return st[0].to(dtype=dtype), float(st.times[1] - st.times[0])


def rollout_force_field(
    cfg: DemoConfig, model_path, heldout: pathlib.Path, path: pathlib.Path, echo=print
) -> dict:
    """Stage 4a: Langevin NVT with the force field (temperature, friction, dt of the reference).

    Through :func:`hyenamd.cluster.run_rollouts` on an embedded Ray instance when
    ``rollout.use_ray`` (the default), else in-process with :class:`~hyenamd.engine.Simulation`.
    """
    ref = cfg.reference
    n = cfg.rollout.md_steps
    integ = {
        "kind": "langevin_baoab",
        "dt_fs": ref.dt_fs,
        "temperature_k": ref.temperature_k,
        "friction_per_fs": ref.friction_per_ps / 1000.0,
        "seed": cfg.seed,
        "skin": cfg.rollout.skin,
    }
    for stale in (
        path,
        path.with_name(path.name + ".ckpt.safetensors"),
        path.with_name(path.name + ".spec.json"),
    ):
        if stale.exists():  # a previous demo's rollout of an older model: never resume it
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    t = time.perf_counter()
    if cfg.rollout.use_ray:
        from hyenamd.cluster import RolloutSpec, run_rollouts

        manifest = path.with_name("rollouts.manifest.json")
        manifest.unlink(missing_ok=True)
        spec = RolloutSpec(
            name="force_field_md",
            initial=str(heldout),
            frame=0,
            model={"kind": "checkpoint", "path": str(model_path), "compile": cfg.rollout.compile},
            integrator=integ,
            steps=n,
            output=str(path),
            report_interval=cfg.rollout.report_interval,
            checkpoint_interval=n,
            seed=cfg.seed,
            dtype=_model_dtype(model_path),
            resources={"num_cpus": cfg.rollout.ray_cpus},
        )
        # address "local": always a fresh embedded instance, never a cluster someone else started here
        echo("      Ray (embedded): run_rollouts([force_field_md])")
        (res,) = run_rollouts(
            [spec],
            manifest=manifest,
            progress=ref.progress,
            max_retries=1,
            address="local",
        )
        steps, blowup = res.step, (res.error if res.status != "completed" else None)
        where = f"Ray node {res.node_id[:8]}, manifest {manifest}"
        compiled = {k: getattr(res, k) for k in ("compiled_calls", "eager_calls", "compile_fallback")}
    else:
        steps, blowup, compiled = _simulate_in_process(cfg, model_path, heldout, path, integ, echo)
        where = "in-process"
    wall = time.perf_counter() - t
    if blowup:
        echo(f"      rollout stopped: {blowup}")
    echo(f"      {steps} steps ({steps * ref.dt_fs / 1000:g} ps) in {wall:.1f} s ({where}) → {path}")
    return {
        "path": str(path),
        "steps": steps,
        "dt_fs": ref.dt_fs,
        "wall_s": wall,
        "blowup": blowup,
        "simulated_fs_per_wall_s": steps * ref.dt_fs / wall,
        "runner": where,
        "compile": cfg.rollout.compile,
        **compiled,
    }


def _model_dtype(model_path) -> str:
    from hyenamd.surrogate.checkpoint import _read_header

    info, _ = _read_header(pathlib.Path(model_path))
    return str(info.get("dtype", "float32"))


def _simulate_in_process(
    cfg: DemoConfig, model_path, heldout, path, integ: dict, echo
) -> tuple[int, str | None, dict]:
    """The force-field rollout in this process: (steps, blow-up message or None, the compiled
    path's record: ``compiled_calls``, ``eager_calls``, ``compile_fallback``)."""
    from hyenamd.engine import LangevinBAOAB, Simulation, TrajectoryReporter
    from hyenamd.engine.compile_switch import FallbackWatch, compiled_potential
    from hyenamd.surrogate import load_model

    model = load_model(model_path)
    system, _ = _first_frame(heldout, model.dtype)
    potential = compiled_potential(model, cfg.rollout.compile, what="rollout.compile")
    watch = FallbackWatch(potential)  # eager calls of a compiled model: warned once, recorded
    kw = {k: v for k, v in integ.items() if k not in ("kind", "dt_fs", "temperature_k")}
    integrator = LangevinBAOAB(potential, integ["dt_fs"], integ["temperature_k"], **kw)
    rep = TrajectoryReporter(path, cfg.rollout.report_interval, forces=False, overwrite=True)
    n = cfg.rollout.md_steps
    with Simulation(integrator, system, [rep]) as sim:
        watch.check()  # after the initial forces
        chunk = max(cfg.rollout.report_interval, n // 50)
        blowup = _run_with_progress(sim, n, chunk, "force-field MD", cfg.reference.progress)
        watch.check()
        return sim.state.step, blowup, watch.summary()


def _run_with_progress(sim, n: int, chunk: int, desc: str, progress: bool) -> str | None:
    """Run ``sim`` to step ``n`` in chunks under a progress bar; the blow-up message, or None."""
    from hyenamd.engine import BlowUpError
    from hyenamd.progress import progress_bar

    with progress_bar(total=n, desc=desc, unit="step", disable=not progress) as bar:
        try:
            while sim.state.step < n:
                k = min(chunk, n - sim.state.step)
                sim.run(k)
                bar.update(k)
        except BlowUpError as e:
            return str(e)
    return None


def rollout_dynamics(
    cfg: DemoConfig, model_path, heldout: pathlib.Path, path: pathlib.Path, echo=print, *, energy_model=None
) -> dict:
    """Stage 4b: learned large steps, a frame every step.

    O–Φ–O strides (:class:`~hyenamd.engine.LearnedPropagator`): OU half-steps at the reference's
    temperature and friction around the dynamics head, and the energy rescale with
    ``energy_model`` (the force-field checkpoint; None: no rescale).
    """

    from hyenamd.engine import LearnedPropagator, Simulation, TrajectoryReporter
    from hyenamd.surrogate import load_model

    model = load_model(model_path)
    system, _ = _first_frame(heldout, model.dtype)
    ref = cfg.reference
    prop = LearnedPropagator(
        model,
        ref.temperature_k,
        ref.friction_per_ps / 1000.0,
        energy_model=None if energy_model is None else load_model(energy_model, dtype=model.dtype),
        seed=cfg.seed,
        substeps=cfg.rollout.large_step_substeps,
        rescale_every=cfg.rollout.large_step_rescale_every,
        skin=cfg.rollout.skin,
    )
    tau = prop.dt_fs  # the stride: substeps × the model's horizon
    n = cfg.rollout.large_steps
    rep = TrajectoryReporter(path, 1, forces=False, overwrite=True)
    t = time.perf_counter()
    with Simulation(prop, system, [rep]) as sim:
        blowup = _run_with_progress(sim, n, max(1, n // 20), "large-step rollout", cfg.reference.progress)
        if blowup is not None:
            echo(f"      rollout stopped: {blowup}")
        steps = sim.state.step
        n_eval = prop.evaluator.n_evaluations
        guarded = int(sim.state.aux["rescale_guarded"].sum())
    wall = time.perf_counter() - t
    echo(f"      {steps} large steps of {tau:g} fs ({steps * tau / 1000:g} ps) in {wall:.1f} s → {path}")
    return {
        "path": str(path),
        "steps": steps,
        "horizon_fs": tau,
        "substeps": prop.substeps,
        "wall_s": wall,
        "blowup": blowup,
        "model_evaluations": n_eval,
        "friction_per_fs": prop.friction_per_fs,
        "energy_rescale": prop.rescale,
        "rescale_guarded_strides": guarded,
        "simulated_fs_per_wall_s": steps * tau / max(wall, 1e-9),
    }


def validate_stage(
    cfg: DemoConfig, heldout: pathlib.Path, ff_model, rollouts: dict[str, Any], out: pathlib.Path, echo=print
) -> dict:
    """Stage 5: validate each rollout against the held-out run; print and return the metrics."""
    from hyenamd.validate import validate

    results = {}
    base = cfg.validate
    if base.temperature_k is None:  # the thermostat's temperature, not the held-out run's sample mean
        base = dataclasses.replace(base, temperature_k=cfg.reference.temperature_k)
    for name, traj in rollouts.items():
        model = ff_model if name == "force_field_md" else None
        vcfg = base
        if name == "large_step" and cfg.large_step_max_diffusion_rel_error is not None:
            th = dataclasses.replace(
                base.thresholds, max_diffusion_rel_error=cfg.large_step_max_diffusion_rel_error
            )
            vcfg = dataclasses.replace(base, thresholds=th)
        baseline = baseline_run(cfg, traj, out / f"baseline_{name}.h5")
        res = validate(
            heldout,
            traj,
            vcfg,
            model=model,
            baseline=baseline,
            out_dir=out / "report" / name,
            echo=lambda m: echo("      " + m),
        )
        echo(f"\n── {name}: {traj} vs {heldout.name} ──")
        echo(res.table())
        results[name] = {
            "passed": res.passed,
            "report": str(out / "report" / name / "report.md"),
            "metrics": {m.name: m.value for m in res.metrics},
            "baseline_run": {m.name: m.spread for m in res.metrics if m.spread is not None},
        }
    return results


def baseline_run(cfg: DemoConfig, traj, path: pathlib.Path) -> pathlib.Path:
    """An exact OpenMM run as long as the rollout ``traj``, with its frame interval (seed: reference + 2).

    Its metrics against the held-out run (the "baseline run" column) show what an exact
    simulation of that length scores: with 108 atoms and a few picoseconds the statistical
    scatter of ⟨T⟩, the diffusion coefficient and the kinetic-energy test is comparable to the
    thresholds (BENCHMARKS.md, "What an exact run of the same length scores").
    """
    from hyenamd.engine.reference import reference_md
    from hyenamd.io import open_store

    with open_store(traj) as st:
        times = st.times
        duration, frame_dt = float(times[-1] - times[0]), float(times[1] - times[0])
    dt = cfg.reference.dt_fs
    interval = max(1, round(frame_dt / dt))
    n_steps = max(interval, round(duration / dt / interval) * interval)
    rc = dataclasses.replace(
        cfg.reference,
        output=str(path),
        overwrite=True,
        seed=cfg.reference.seed + 2,
        n_steps=n_steps,
        report_interval=interval,
        segments="none",
        progress=False,
    )
    if not _complete(path, rc):
        reference_md(rc)
    return path
