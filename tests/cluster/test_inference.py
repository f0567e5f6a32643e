"""Sharded inference over Ray tasks writes exactly what one process computes."""

from __future__ import annotations

import numpy as np
import pytest
from cluster_helpers import LJ, make_spec

from hyenamd.cluster.worker import RolloutWorker

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def embedded_ray():
    ray.init(
        address="local", num_cpus=2, include_dashboard=False, log_to_driver=False
    )  # never a running cluster
    yield
    ray.shutdown()


def test_sharded_inference_equals_a_single_process(embedded_ray, tmp_path):
    from hyenamd.cluster import evaluate_frames, sharded_inference
    from hyenamd.io import open_store

    spec = make_spec(tmp_path / "md", "r_1", steps=60)
    RolloutWorker().run(spec)  # a 13-frame trajectory to relabel
    model = dict(LJ, sigma=3.3)  # another LJ: the labels differ from the stored forces
    out = tmp_path / "labels.zarr"
    path = sharded_inference(spec.output, model, out, frames_per_task=4, stress=True, progress=False)
    ref = evaluate_frames(model, spec.output, stress=True)
    with open_store(path, "r") as st, open_store(spec.output, "r") as md:
        assert st.status == "complete" and len(st) == len(md) == 13
        assert bool(st.committed.all())
        assert np.array_equal(st.read(slice(0, 13), "force"), ref["forces"])
        assert np.array_equal(st.observable("energy"), ref["energy"])
        assert np.array_equal(st.observable("stress"), ref["stress"])
        assert np.array_equal(st.read(slice(0, 13), "position"), md.read(slice(0, 13), "position"))
        assert np.array_equal(st.steps, md.steps)
        assert not np.array_equal(st.read(slice(0, 13), "force"), md.read(slice(0, 13), "force"))
    # a re-run on the finished output computes nothing and changes nothing
    again = sharded_inference(spec.output, model, out, frames_per_task=4, stress=True, progress=False)
    with open_store(again, "r") as st:
        assert np.array_equal(st.read(slice(0, 13), "force"), ref["forces"])
    with pytest.raises(Exception, match="choose another output"):
        sharded_inference(spec.output, model, out, frames_per_task=5, progress=False)
    with pytest.raises(ValueError, match="zarr"):
        sharded_inference(spec.output, model, tmp_path / "labels.h5", progress=False)
