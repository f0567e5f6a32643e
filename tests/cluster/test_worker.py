"""The plain RolloutWorker (no Ray): runs, resumes bit-identically, refuses foreign outputs."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from cluster_helpers import assert_same_trajectory, make_spec, read_all

from hyenamd.cluster.spec import RolloutResult, RolloutSpec, SpecError
from hyenamd.cluster.worker import RolloutWorker


def test_spec_and_result_round_trip_json(tmp_path):
    spec = make_spec(tmp_path / "out", "r_1", resources={"num_cpus": 1, "resources": {"node_a": 0.5}})
    again = RolloutSpec.from_json(spec.to_json())
    assert again == spec
    json.loads(spec.to_json())
    res = RolloutResult(
        name="r_1", status="failed", output="x.h5", step=3, error="boom", timings={"total": 1.0}
    )
    assert RolloutResult.from_json(res.to_json()) == res


@pytest.mark.parametrize(
    "change, match",
    [
        ({"steps": -1}, "steps"),
        ({"model": {"kind": "mypackage.MyModel"}}, "model"),
        ({"model": {"kind": "checkpoint"}}, "path"),
        ({"integrator": {"kind": "velocity_verlet"}}, "dt_fs"),
        ({"output": "traj.xyz"}, "output"),
        ({"dtype": "float16"}, "dtype"),
        ({"report_interval": 0}, "report_interval"),
        ({"name": "a/b"}, "name"),
    ],
)
def test_bad_specs_are_refused(tmp_path, change, match):
    with pytest.raises(SpecError, match=match):
        make_spec(tmp_path / "out", "r_0", **change)
    with pytest.raises(SpecError, match="unknown"):
        RolloutSpec.from_dict({**make_spec(tmp_path / "out", "r_0").to_dict(), "colour": "red"})


def test_worker_writes_every_frame_and_a_checkpoint(tmp_path):
    spec = make_spec(tmp_path / "out", "r_0")
    res = RolloutWorker().run(spec)
    assert res.ok and res.step == 60 and res.frames == spec.n_frames == 13 and res.resumed_from == 0
    data = read_all(spec.output)
    assert np.array_equal(data["step"], np.arange(0, 61, 5))
    assert pathlib.Path(spec.checkpoint_path).exists()
    # running it again does nothing new and changes nothing
    before = read_all(spec.output)
    res2 = RolloutWorker().run(spec)
    assert res2.ok and res2.resumed_from == 60 and res2.frames == 13
    for k in before:
        assert np.array_equal(before[k], read_all(spec.output)[k])


def test_extending_a_rollout_resumes_bit_identically(tmp_path):
    full = make_spec(tmp_path / "a", "r_3")
    RolloutWorker().run(full)
    short = make_spec(tmp_path / "b", "r_3", steps=40)
    assert RolloutWorker().run(short).frames == 9
    longer = make_spec(tmp_path / "b", "r_3", steps=60)
    res = RolloutWorker().run(longer)
    assert res.ok and res.resumed_from == 40
    assert_same_trajectory(full.output, longer.output)


def test_killed_worker_resumes_without_duplicated_or_missing_frames(tmp_path):
    """A real crash (SIGKILL) after a checkpoint, with frames past it already written."""
    ref = make_spec(tmp_path / "a", "r_5", steps=400, checkpoint_interval=100)
    RolloutWorker().run(ref)
    spec = make_spec(tmp_path / "b", "r_5", steps=400, checkpoint_interval=100)
    code = (
        "import torch, json, sys; torch.set_num_threads(1)\n"
        "from hyenamd.cluster.worker import RolloutWorker\n"
        "RolloutWorker().run(json.loads(sys.argv[1]))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, spec.to_json()])
    try:
        deadline = time.monotonic() + 120
        from hyenamd.engine.checkpoint import read_checkpoint_metadata

        while time.monotonic() < deadline:
            ck = pathlib.Path(spec.checkpoint_path)
            if (
                ck.exists()
                and read_checkpoint_metadata(ck)["step"] >= 100
                and len(read_all(spec.output)["step"]) > 22
            ):
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the worker finished before it could be killed: make the rollout longer"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    partial = read_all(spec.output)["step"]
    res = RolloutWorker().run(spec)
    assert res.ok and res.resumed_from >= 100 and res.frames == 81
    assert (
        partial[-1] > res.resumed_from or len(partial) >= 1
    )  # frames past the checkpoint were skipped, not rewritten
    assert_same_trajectory(ref.output, spec.output)


def test_blow_up_is_a_failed_result_with_the_frames_before_it(tmp_path):
    spec = make_spec(
        tmp_path / "out",
        "r_0",
        integrator={"kind": "velocity_verlet", "dt_fs": 110.0},
        steps=200,
        report_interval=2,
    )
    res = RolloutWorker().run(spec)
    assert res.status == "failed" and res.error_type == "BlowUpError"
    assert "blew up" in res.error and res.step < 200
    steps = read_all(spec.output)["step"]
    assert res.frames == len(steps) >= 2
    assert steps[-1] < res.step and np.array_equal(steps, np.arange(len(steps)) * 2)


def test_worker_never_overwrites_a_store_it_did_not_write(tmp_path):
    spec = make_spec(tmp_path / "out", "r_0")
    out = pathlib.Path(spec.output)
    out.parent.mkdir(parents=True)
    out.write_bytes(b"precious")
    with pytest.raises(SpecError, match="refusing to overwrite"):
        RolloutWorker().run(spec)
    assert out.read_bytes() == b"precious"
    other = make_spec(tmp_path / "o2", "r_0")
    RolloutWorker().run(other)
    changed = make_spec(tmp_path / "o2", "r_0", integrator={"kind": "velocity_verlet", "dt_fs": 1.0})
    with pytest.raises(SpecError, match="other settings"):
        RolloutWorker().run(changed)


def test_the_plain_worker_does_not_import_ray():
    code = (
        "import sys, hyenamd.cluster, hyenamd.cluster.cli;"
        "from hyenamd.cluster import RolloutSpec, RolloutWorker, RolloutResult, Manifest;"
        "print('ray' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
