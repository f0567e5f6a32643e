"""Ray as its users run it: a real head node with the job server (``ray start --head``),
``hyenamd rollout`` submitted through the JobSubmissionClient with a working_dir, the CLI and
the example run next to that cluster without joining it. One head for the module; it is
stopped by signalling the process group this test started (never ``ray stop``, which would stop
every Ray instance on the machine)."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

ray = pytest.importorskip("ray")
job_submission = pytest.importorskip("ray.job_submission")
pytest.importorskip("aiohttp")  # ray[default]: the dashboard and its job server

pytestmark = pytest.mark.slow

ROOT = pathlib.Path(__file__).parents[2]
SRC = str(pathlib.Path(__import__("hyenamd").__file__).parents[1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")])))
    # a throw-away local cluster: no token auth (Ray >= 2.5x enables it when ~/.ray/auth_token exists)
    env.update(OMP_NUM_THREADS="1", RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")
    env.pop("RAY_ADDRESS", None)
    return env


@pytest.fixture(scope="module")
def head():
    """A Ray head with its dashboard/job server, in its own short temp dir (socket paths)."""
    tmp = tempfile.mkdtemp(prefix="hr", dir="/tmp")
    port, dash = _free_port(), _free_port()
    ray_bin = pathlib.Path(sys.executable).with_name("ray")
    cmd = [str(ray_bin), "start", "--head", "--block", f"--port={port}", f"--dashboard-port={dash}",
           "--dashboard-host=127.0.0.1", "--include-dashboard=true", "--num-cpus=2", "--num-gpus=0", "--node-ip-address=127.0.0.1",
           f"--temp-dir={tmp}", "--disable-usage-stats"]  # fmt: skip
    log = open(pathlib.Path(tmp) / "head.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=_env(), start_new_session=True)
    saved = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"  # for the JobSubmissionClient of this process
    try:
        url = f"http://127.0.0.1:{dash}"
        client, t0, err = None, time.monotonic(), None
        while client is None:
            try:
                client = job_submission.JobSubmissionClient(url)
            except Exception as e:
                err = e
                if proc.poll() is not None or time.monotonic() - t0 > 120:
                    head_log = (pathlib.Path(tmp) / "head.log").read_text()[-1500:]
                    pytest.fail(f"ray head did not start ({err}): {head_log}")
                time.sleep(1.0)
        yield {"client": client, "port": port, "url": url}
    finally:
        if saved is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = saved
        os.killpg(proc.pid, signal.SIGTERM)  # the process group this fixture started
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _submit(client, timeout: float = 420.0, **kw) -> str:
    """submit_job, retried while the head's job agent is still starting (HTTP 500 "No available
    agent to submit job, please try again later")."""
    t0 = time.monotonic()
    while True:
        try:
            return client.submit_job(**kw)
        except RuntimeError as e:
            if "No available agent" not in str(e) or time.monotonic() - t0 > timeout:
                raise
            time.sleep(2.0)


def _wait(client, job_id: str, timeout: float = 300.0):
    t0 = time.monotonic()
    while True:
        status = client.get_job_status(job_id)
        if status.is_terminal():
            return status
        if time.monotonic() - t0 > timeout:
            client.stop_job(job_id)
            pytest.fail(
                f"job {job_id} still {status} after {timeout} s: {client.get_job_logs(job_id)[-2000:]}"
            )
        time.sleep(1.0)


def test_job_submit_writes_outputs_where_the_user_asked(head, tmp_path):
    workdir = tmp_path / "project"  # what `ray job submit --working-dir .` uploads
    workdir.mkdir()
    shutil.copy(ROOT / "configs" / "cluster" / "lj_ensemble.yaml", workdir / "lj.yaml")
    out = tmp_path / "results"  # absolute: lands here, not in Ray's copy of the working dir
    common = (
        "--no-progress --set replicas=2 --set steps=20 --set report_interval=10 --set checkpoint_interval=10"
    )
    runtime_env = {
        "working_dir": str(workdir),
        "env_vars": {k: _env()[k] for k in ("PYTHONPATH", "OMP_NUM_THREADS", "RAY_AUTH_MODE")},
    }
    # the inputs may be relative (they travel with the working dir); outputs must be absolute
    good = _submit(
        head["client"],
        entrypoint=f"{sys.executable} -m hyenamd.cli rollout lj.yaml {common} --set initial=init.h5md "
        f"--set output_dir={out}",
        runtime_env=runtime_env,
    )
    bad = _submit(
        head["client"],
        entrypoint=f"{sys.executable} -m hyenamd.cli rollout lj.yaml {common} --set initial=init.h5md "
        "--set output_dir=relative_results",
        runtime_env=runtime_env,
    )
    status = _wait(head["client"], good)
    logs = head["client"].get_job_logs(good)
    assert status == job_submission.JobStatus.SUCCEEDED, logs[-3000:]
    assert "2/2 rollouts completed" in logs
    assert sorted(p.name for p in out.glob("*.h5md")) == ["lj_0.h5md", "lj_1.h5md"]
    doc = json.loads((out / "manifest.json").read_text())
    assert doc["ray"]["mode"] == "joined" and doc["ray"]["requested"].startswith("RAY_ADDRESS=")
    assert doc["ray"]["address"].endswith(f":{head['port']}")
    assert all(os.path.isabs(e["output"]) for e in doc["rollouts"].values())
    assert not (workdir / "relative_results").exists()
    assert _wait(head["client"], bad) == job_submission.JobStatus.FAILED
    assert "Ray's temporary copy" in head["client"].get_job_logs(bad)


def test_cli_without_address_does_not_join_a_running_cluster(head, tmp_path):
    """``hyenamd rollout`` without --address starts its own Ray even though a cluster runs here."""
    cfg = ROOT / "configs" / "cluster" / "lj_ensemble.yaml"
    cmd = [sys.executable, "-m", "hyenamd.cli", "rollout", str(cfg), "--no-progress", "--set", "replicas=1",
           "--set", "steps=10", "--set", "report_interval=10", "--set", f"output_dir={tmp_path / 'out'}",
           "--set", f"initial={tmp_path / 'init.h5md'}"]  # fmt: skip
    r = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert doc["ray"]["mode"] == "embedded" and doc["ray"]["requested"] is None
    assert not doc["ray"]["address"].endswith(f":{head['port']}")


def test_example_runs_while_a_cluster_runs(head, tmp_path):
    r = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "ray_rollouts.py"), "--out", str(tmp_path), "--steps", "20"],
        env=_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count(": completed") == 4 and "argon_0.labels.zarr" in r.stdout
