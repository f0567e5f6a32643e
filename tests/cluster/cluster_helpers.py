"""Helpers of the cluster tests: tiny float64 LJ rollouts and trajectory comparison."""

from __future__ import annotations

import pathlib

import numpy as np

LJ = {"kind": "lennard_jones", "cutoff": 5.0, "switch_on": 4.0}


def initial_store(directory: pathlib.Path, seed: int = 0) -> str:
    from hyenamd.cluster.spec import write_initial_store
    from hyenamd.engine.reference_systems import lj_fluid_system

    path = directory / f"init{seed}.h5"
    if not path.exists():
        write_initial_store(lj_fluid_system(2, seed=seed), path)
    return str(path)


def make_spec(directory: pathlib.Path, name_: str, **kw):
    """A small Langevin LJ rollout (32 argon atoms, float64, CPU) writing ``<directory>/<name>.h5``."""
    from hyenamd.cluster.spec import RolloutSpec

    base = dict(
        name=name_,
        initial=initial_store(directory.parent / "inputs"),
        model=dict(LJ),
        integrator={"kind": "langevin_baoab", "dt_fs": 5.0, "temperature_k": 120.0, "seed": 7},
        steps=60,
        output=str(directory / f"{name_}.h5"),
        report_interval=5,
        checkpoint_interval=20,
        temperature_k=120.0,
        seed=int(name_.rsplit("_", 1)[-1]) if name_.rsplit("_", 1)[-1].isdigit() else 0,
    )
    base.update(kw)
    return RolloutSpec(**base)


def read_all(path: str) -> dict[str, np.ndarray]:
    """Every committed array of a trajectory store (frames stacked)."""
    from hyenamd.io import open_store

    with open_store(path, "r") as st:
        n = len(st)
        out = {"step": st.steps, "time": st.times}
        for f in st.fields:
            out[f] = st.read(slice(0, n), f)
        for o in st.observable_names:
            out[o] = st.observable(o)
    return out


def assert_same_trajectory(a: str, b: str) -> None:
    ra, rb = read_all(a), read_all(b)
    assert sorted(ra) == sorted(rb)
    for k in ra:
        assert ra[k].shape == rb[k].shape, (k, ra[k].shape, rb[k].shape)
        assert np.array_equal(ra[k], rb[k]), f"{k} differs between {a} and {b}"
    steps = ra["step"]
    assert np.array_equal(steps, np.arange(len(steps)) * (steps[1] - steps[0] if len(steps) > 1 else 0))
