"""run_rollouts on an embedded Ray instance (real Ray, 2 CPUs, one instance for the module)."""

from __future__ import annotations

import json
import pathlib
import time

import numpy as np
import pytest
from cluster_helpers import assert_same_trajectory, make_spec, read_all

from hyenamd.cluster.worker import RolloutWorker

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def embedded_ray():
    ray.init(
        address="local", num_cpus=2, include_dashboard=False, log_to_driver=False
    )  # never a running cluster
    yield
    ray.shutdown()


def test_eight_rollouts_equal_the_plain_worker_bit_for_bit(embedded_ray, tmp_path):
    from hyenamd.cluster import run_rollouts

    specs = [make_spec(tmp_path / "ray", f"r_{k}") for k in range(8)]
    manifest = tmp_path / "manifest.json"
    results = run_rollouts(specs, manifest=manifest, progress=False)
    assert [r.name for r in results] == [s.name for s in specs]
    assert all(r.ok and r.frames == 13 and r.step == 60 for r in results), results
    assert all(r.node_id != "local" for r in results)
    doc = json.loads(manifest.read_text())
    assert doc["format"] == "hyenamd.cluster.manifest" and doc["versions"]["ray"] == ray.__version__
    for s in specs:
        e = doc["rollouts"][s.name]
        assert e["status"] == "completed" and e["attempts"] == 1 and e["retries"] == 0 and e["node_ids"]
    for s in specs:
        direct = make_spec(tmp_path / "direct", s.name)
        assert RolloutWorker().run(direct).ok
        assert_same_trajectory(direct.output, s.output)


def test_a_blow_up_fails_alone_and_keeps_its_frames(embedded_ray, tmp_path):
    from hyenamd.cluster import run_rollouts

    bad = make_spec(
        tmp_path / "ray",
        "boom_0",
        integrator={"kind": "velocity_verlet", "dt_fs": 110.0},
        steps=200,
        report_interval=2,
    )
    specs = [make_spec(tmp_path / "ray", "r_1"), bad, make_spec(tmp_path / "ray", "r_2")]
    manifest = tmp_path / "manifest.json"
    results = run_rollouts(specs, manifest=manifest, progress=False, max_retries=1)
    by = {r.name: r for r in results}
    assert by["r_1"].ok and by["r_2"].ok
    b = by["boom_0"]
    assert b.status == "failed" and b.error_type == "BlowUpError" and "blew up" in b.error
    steps = read_all(bad.output)["step"]
    assert b.frames == len(steps) >= 2 and steps[-1] < b.step
    doc = json.loads(manifest.read_text())
    assert doc["rollouts"]["boom_0"]["status"] == "failed"
    assert doc["rollouts"]["boom_0"]["attempts"] == 1 and doc["rollouts"]["boom_0"]["retries"] == 0
    # a re-run does not retry the deterministic failure
    again = run_rollouts(specs, manifest=manifest, progress=False)
    assert json.loads(manifest.read_text())["rollouts"]["boom_0"]["attempts"] == 1
    assert {r.name: r.status for r in again} == {"r_1": "completed", "boom_0": "failed", "r_2": "completed"}


def test_bad_input_fails_before_any_work(embedded_ray, tmp_path):
    from hyenamd.cluster import run_rollouts
    from hyenamd.cluster.manifest import ManifestError

    a = make_spec(tmp_path / "ray", "r_1")
    with pytest.raises(ManifestError, match="unique"):
        run_rollouts([a, a], progress=False)
    with pytest.raises(ValueError, match="unknown resources"):
        run_rollouts([make_spec(tmp_path / "ray", "r_2", resources={"gpus": 1})], progress=False)
    assert not pathlib.Path(a.output).exists()


def test_rerun_after_an_interruption_skips_finished_and_resumes_the_rest(embedded_ray, tmp_path):
    from hyenamd.cluster import run_rollouts

    specs = [make_spec(tmp_path / "ray", f"r_{k}", steps=100, checkpoint_interval=25) for k in range(4)]
    manifest = tmp_path / "manifest.json"

    def interrupt(result):  # Ctrl-C in the driver once a rollout finished and another checkpointed
        t0 = time.monotonic()
        while time.monotonic() - t0 < 60:
            if any(pathlib.Path(s.checkpoint_path).exists() for s in specs if s.name != result.name):
                break
            time.sleep(0.05)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_rollouts(specs, manifest=manifest, progress=False, max_in_flight=2, on_result=interrupt)
    doc = json.loads(manifest.read_text())
    done = [n for n, e in doc["rollouts"].items() if e["status"] == "completed"]
    assert len(done) == 1
    first = {n: e["attempts"] for n, e in doc["rollouts"].items()}
    mtime = pathlib.Path(doc["rollouts"][done[0]]["output"]).stat().st_mtime_ns

    # rollouts left with a checkpoint and a trajectory must resume from it (which ones depends on
    # timing: the interrupted actor may have been stopped before or after its first checkpoint)
    had_ckpt = {
        s.name
        for s in specs
        if s.name != done[0] and pathlib.Path(s.checkpoint_path).exists() and pathlib.Path(s.output).exists()
    }
    results = run_rollouts(specs, manifest=manifest, progress=False)
    assert all(r.ok and r.frames == specs[0].n_frames == 21 for r in results), [
        (r.name, r.status, r.frames, r.error) for r in results
    ]
    doc = json.loads(manifest.read_text())
    assert doc["rollouts"][done[0]]["attempts"] == first[done[0]]  # skipped, not re-run
    assert pathlib.Path(doc["rollouts"][done[0]]["output"]).stat().st_mtime_ns == mtime
    for r in results:
        if r.name in had_ckpt:
            assert r.resumed_from > 0, f"{r.name} had a checkpoint but restarted from step 0"
    for s in specs:
        direct = make_spec(tmp_path / "direct", s.name, steps=100, checkpoint_interval=25)
        RolloutWorker().run(direct)
        assert_same_trajectory(direct.output, s.output)
    assert np.all([doc["rollouts"][s.name]["status"] == "completed" for s in specs])


def test_cli_runs_a_config_and_a_rerun_skips_everything(embedded_ray, tmp_path, capsys):
    from hyenamd.cli import main
    from hyenamd.cluster.cli import RolloutConfig, build_specs
    from hyenamd.config import load_config

    cfg = pathlib.Path(__file__).parents[2] / "configs" / "cluster" / "lj_ensemble.yaml"
    sets = [
        f"output_dir={tmp_path / 'out'}",
        f"initial={tmp_path / 'init.h5'}",
        "replicas=3",
        "steps=40",
        "checkpoint_interval=20",
    ]
    specs = build_specs(load_config(cfg, RolloutConfig, sets))
    assert [s.name for s in specs] == ["lj_0", "lj_1", "lj_2"]
    assert len({s.integrator["seed"] for s in specs}) == 3  # independent Langevin noise
    argv = ["rollout", str(cfg), "--no-progress"] + [a for s in sets for a in ("--set", s)]
    assert main(argv) == 0
    assert "3/3 rollouts completed" in capsys.readouterr().out
    doc = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert all(e["status"] == "completed" and e["attempts"] == 1 for e in doc["rollouts"].values())
    assert main(argv) == 0
    doc = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert all(e["attempts"] == 1 for e in doc["rollouts"].values())
    for s in specs:
        assert read_all(s.output)["step"].tolist() == [0, 20, 40]


def test_specs_with_different_resources_share_a_small_cluster(embedded_ray, tmp_path):
    from hyenamd.cluster import run_rollouts

    specs = [
        make_spec(tmp_path / "ray", "r_1", steps=20, resources={"num_cpus": 1}),
        make_spec(tmp_path / "ray", "r_2", steps=20, resources={"num_cpus": 2}),
        make_spec(tmp_path / "ray", "r_3", steps=20, resources={"num_cpus": 1}),
    ]
    results = run_rollouts(specs, progress=False, max_in_flight=1)
    assert [r.status for r in results] == ["completed"] * 3


def test_unsatisfiable_resources_fail_fast_with_a_clear_error(embedded_ray, tmp_path):
    """num_gpus on a GPU-less cluster (or more CPUs than any node has) would pend forever."""
    from hyenamd.cluster import run_rollouts
    from hyenamd.cluster.backend import ResourceError

    gpus = ray.cluster_resources().get("GPU", 0.0)
    for res, what in (({"num_cpus": 64}, "CPU 64"), ({"num_cpus": 1, "num_gpus": gpus + 0.25}, "GPU")):
        spec = make_spec(tmp_path / "ray", "r_0", resources=res)
        with pytest.raises(ResourceError, match=f"asks for .*{what}.*no node of the Ray cluster"):
            run_rollouts([spec], progress=False, manifest=tmp_path / "m.json")
        assert not pathlib.Path(spec.output).exists()


def test_relative_paths_are_resolved_on_the_driver(embedded_ray, tmp_path, monkeypatch):
    from hyenamd.cluster import run_rollouts

    spec = make_spec(tmp_path / "ray", "r_0", steps=10)
    monkeypatch.chdir(tmp_path)
    rel = make_spec(pathlib.Path("ray"), "r_0", steps=10, initial=spec.initial)
    assert not pathlib.Path(rel.output).is_absolute()
    (r,) = run_rollouts([rel], progress=False, manifest="m.json")
    assert r.ok and r.output == str(tmp_path / "ray" / "r_0.h5")
    doc = json.loads((tmp_path / "m.json").read_text())
    assert doc["rollouts"]["r_0"]["output"] == str(tmp_path / "ray" / "r_0.h5")
    assert doc["ray"]["mode"] == "existing"  # the fixture initialised Ray itself
    assert doc["ray"]["address"] and doc["ray"]["nodes"] == 1


def test_relative_outputs_are_refused_in_a_job_working_dir_copy(tmp_path, monkeypatch):
    from hyenamd.cluster.backend import check_output_paths

    copy = tmp_path / "runtime_resources" / "working_dir_files" / "_ray_pkg_abc"
    copy.mkdir(parents=True)
    check_output_paths(["out/a.h5md"])  # an ordinary directory: fine
    monkeypatch.chdir(copy)
    check_output_paths([str(tmp_path / "a.h5md")])
    with pytest.raises(ValueError, match="Ray's temporary copy"):
        check_output_paths(["out/a.h5md"])


def test_spec_absolute():
    from hyenamd.cluster.spec import RolloutSpec

    s = RolloutSpec(
        name="a", initial="in/x.h5md", model={"kind": "checkpoint", "path": "m.safetensors"},
        integrator={"kind": "velocity_verlet", "dt_fs": 1.0}, steps=1, output="out/a.h5md",
    )  # fmt: skip
    a = s.absolute("/data/run")
    assert (a.initial, a.output, a.model["path"]) == (
        "/data/run/in/x.h5md",
        "/data/run/out/a.h5md",
        "/data/run/m.safetensors",
    )
    assert a.absolute("/elsewhere") == a
