"""A node dies under running rollouts (ray.cluster_utils.Cluster: a head and two worker nodes)."""

from __future__ import annotations

import json
import pathlib
import threading
import time

import pytest
from cluster_helpers import assert_same_trajectory, make_spec

from hyenamd.cluster.worker import RolloutWorker

ray = pytest.importorskip("ray")
cluster_utils = pytest.importorskip("ray.cluster_utils")


@pytest.fixture(scope="module")
def two_node_cluster():
    cluster = cluster_utils.Cluster(
        initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False}
    )
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    ray.init(address=cluster.address, log_to_driver=False)
    cluster.wait_for_nodes()
    yield cluster, workers
    ray.shutdown()
    cluster.shutdown()


@pytest.mark.slow
def test_rollouts_survive_the_loss_of_a_node(two_node_cluster, tmp_path):
    from hyenamd.cluster import run_rollouts

    cluster, workers = two_node_cluster
    victim = workers[1]
    specs = [make_spec(tmp_path / "ray", f"r_{k}", steps=800, checkpoint_interval=40) for k in range(4)]
    removed = threading.Event()
    checkpointed: list[str] = []  # the rollout whose checkpoint existed when its node was removed

    def kill_a_node():
        # once a rollout running on the victim node has written a checkpoint (the manifest says where)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 300:
            try:
                doc = json.loads(manifest.read_text())
            except (OSError, ValueError):
                doc = {"rollouts": {}}
            for name, e in doc["rollouts"].items():
                on_victim = e["status"] == "running" and e.get("running_on") == victim.node_id
                if on_victim and pathlib.Path(e["checkpoint"]).exists():
                    checkpointed.append(name)
                    cluster.remove_node(victim, allow_graceful=False)
                    removed.set()
                    return
            time.sleep(0.05)

    manifest = tmp_path / "manifest.json"
    killer = threading.Thread(target=kill_a_node, daemon=True)
    killer.start()
    results = run_rollouts(specs, manifest=manifest, progress=False, max_in_flight=2, lock_timeout_s=120)
    killer.join()
    assert removed.is_set()
    assert all(r.ok and r.frames == specs[0].n_frames for r in results), [
        (r.name, r.status, r.error) for r in results
    ]
    doc = json.loads(manifest.read_text())
    retried = [n for n, e in doc["rollouts"].items() if e["retries"] > 0]
    assert retried, "the rollout on the removed node should have been retried"
    for name in retried:
        e = doc["rollouts"][name]
        assert e["attempts"] == e["retries"] + 1 and e["errors"]
        assert e["node_ids"][0] == victim.node_id and e["node_ids"][-1] != victim.node_id
    # the rollout that had checkpointed resumes from that checkpoint, not from step 0 (another
    # rollout queued on the same actor may be retried too, before it ever started: from 0)
    if checkpointed[0] in retried:
        assert doc["rollouts"][checkpointed[0]]["result"]["resumed_from"] > 0
    for s in specs:
        direct = make_spec(tmp_path / "direct", s.name, steps=800, checkpoint_interval=40)
        RolloutWorker().run(direct)
        assert_same_trajectory(direct.output, s.output)  # bit-identical, no frame duplicated or missing
