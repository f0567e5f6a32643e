"""Rollouts watched by a committee (UncertaintyGuard): spec checks, the plain worker and real Ray."""

from __future__ import annotations

import dataclasses
import json
import pathlib

import pytest
import torch
from cluster_helpers import make_spec

from hyenamd.cluster.spec import RolloutResult, RolloutSpec, SpecError
from hyenamd.cluster.worker import RolloutWorker, check_committees


def _member(seed: int, species=(18,), ordering="hilbert"):
    from hyenamd.surrogate import GHyena, GHyenaConfig

    cfg = GHyenaConfig(
        species=species, cutoff=4.0, n_scalar=8, n_vector=2, n_rbf=4, pattern=("local", "global"),
        energy_scale=1.0, dtype="float64", seed=seed, ordering=ordering,
    )  # fmt: skip
    return GHyena(cfg)


@pytest.fixture(scope="module")
def members(tmp_path_factory) -> list[str]:
    """Three tiny random G-Hyena checkpoints for argon (they disagree: random weights)."""
    from hyenamd.surrogate import save_model

    d = tmp_path_factory.mktemp("committee")
    return [str(save_model(_member(k), d / f"m{k}.safetensors")) for k in range(3)]


def test_spec_takes_torch_dtypes_and_checks_committee_fields(tmp_path, members):
    spec = make_spec(tmp_path / "out", "r_0", dtype=torch.float64)
    assert (
        spec.dtype == "float64" and make_spec(tmp_path / "out", "r_0", dtype=torch.float32).dtype == "float32"
    )
    assert "committee" not in spec.to_dict()  # specs without one read as before (sidecars, manifests)
    with pytest.raises(SpecError, match="dtype must be"):
        make_spec(tmp_path / "out", "r_0", dtype=torch.float16)
    ok = make_spec(
        tmp_path / "out", "r_0", committee=members[:2], guard={"max_force_std": 0.2, "action": "flag"}
    )
    assert RolloutSpec.from_json(ok.to_json()) == ok
    bad = [
        (dict(committee=members[:1]), "two or more"),
        (dict(committee=members[0]), "list of checkpoint paths"),
        (dict(committee=[members[0], members[0]]), "twice"),
        (dict(guard={"max_force_std": 0.2}), r"need committee"),
        (dict(guard={"max_force": -1.0}), "max_force must be positive"),
        (dict(guard={"colour": 1}), "unknown guard keys"),
        (dict(committee=members[:2], guard={"max_force_std": 0.0}), "max_force_std must be a positive"),
        (dict(committee=members[:2], guard={"action": "panic"}), "'stop' or 'flag'"),
        (dict(model={"kind": "committee"}), "give committee"),
    ]
    for change, match in bad:
        with pytest.raises(SpecError, match=match):
            make_spec(tmp_path / "out", "r_0", **change)
    rel = make_spec(tmp_path / "out", "r_0", committee=["a.safetensors", "sub/b.safetensors"])
    assert rel.absolute("/base").committee == ["/base/a.safetensors", "/base/sub/b.safetensors"]


def test_committee_files_and_members_are_checked_before_any_work(tmp_path, members):
    from hyenamd.surrogate import save_model

    other_species = str(save_model(_member(5, species=(10, 18)), tmp_path / "ne_ar.safetensors"))
    other_order = str(save_model(_member(6, ordering="topology"), tmp_path / "topo.safetensors"))
    cases = [
        ([members[0], str(tmp_path / "missing.safetensors")], "missing.safetensors does not exist"),
        ([members[0], other_species], r"different species .*\[10, 18\]"),
        ([members[0], other_order], "different rules .*topology"),
    ]
    for paths, match in cases:
        spec = make_spec(tmp_path / "out", "r_0", committee=paths)
        with pytest.raises(SpecError, match=f"r_0: committee.*{match}|r_0: .*{match}"):
            check_committees([spec])
        with pytest.raises(SpecError, match=match):  # the worker alone refuses it too
            RolloutWorker().run(spec)
        assert not pathlib.Path(spec.output).exists() and not pathlib.Path(spec.sidecar_path).exists()


def test_plain_worker_stop_flag_and_committee_mean(tmp_path, members):
    """No Ray: a stop at the first check, a flagged run, and the committee mean integrated."""
    common = dict(steps=10, report_interval=5, checkpoint_interval=10, committee=members)
    stop = make_spec(tmp_path / "out", "stop_0", guard={"max_force_std": 1e-9, "check_every": 4}, **common)
    res = RolloutWorker().run(stop)
    # random members disagree from the start: the check of the initial state stops it
    assert res.status == "failed" and res.stop_reason == "uncertainty" and res.step == 0
    assert "committee force spread" in res.error and res.uncertainty["stopped"]["step"] == 0
    assert res.uncertainty["checks"] == 1 and res.uncertainty["peak_force_std"] > 1e-9
    assert res.frames == 0  # the guard runs before the reporters: no frame of a stopped state
    again = RolloutWorker().run(dataclasses.replace(stop, guard={"max_force_std": 1e-9, "check_every": 4}))
    assert again.stop_reason == "uncertainty"  # deterministic: the same stop when re-run
    flag = make_spec(
        tmp_path / "out",
        "flag_0",
        guard={"max_force_std": 1e-9, "check_every": 5, "action": "flag"},
        **common,
    )
    res = RolloutWorker().run(flag)
    assert res.ok and res.stop_reason is None and res.step == 10
    assert res.uncertainty["n_flags"] == 3 and [f["step"] for f in res.uncertainty["flags"]] == [0, 5, 10]
    mean = make_spec(tmp_path / "out", "mean_0", model={"kind": "committee"}, **common)
    res = RolloutWorker().run(mean)
    assert res.ok and res.uncertainty["n_flags"] == 0 and res.uncertainty["max_force_std"] == 0.5
    assert RolloutResult.from_json(res.to_json()) == res


@pytest.mark.slow
def test_ray_rollouts_with_a_committee(tmp_path, members):
    """Real Ray: one rollout stopped by the committee, one that completes; the manifest says why."""
    ray = pytest.importorskip("ray")
    from hyenamd.cluster import run_rollouts

    common = dict(steps=10, report_interval=5, checkpoint_interval=10, dtype=torch.float64)
    stop = make_spec(
        tmp_path / "ray",
        "stop_0",
        committee=members,
        guard={"max_force_std": 1e-9, "check_every": 4},
        **common,
    )
    done = make_spec(
        tmp_path / "ray",
        "done_1",
        committee=members[:2],
        guard={"max_force_std": 1e6, "check_every": 4},
        **common,
    )
    plain = make_spec(tmp_path / "ray", "plain_2", **common)  # no committee: as before
    manifest = tmp_path / "manifest.json"
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with pytest.raises(SpecError, match="bad_3: committee checkpoint .* does not exist"):
            missing = dataclasses.replace(done, name="bad_3", committee=[members[0], str(tmp_path / "no.st")])
            run_rollouts([done, missing], manifest=tmp_path / "m0.json", progress=False)
        assert not pathlib.Path(done.output).exists()  # refused before any work
        results = {r.name: r for r in run_rollouts([stop, done, plain], manifest=manifest, progress=False)}
    finally:
        ray.shutdown()
    s, d, p = results["stop_0"], results["done_1"], results["plain_2"]
    assert s.status == "failed" and s.stop_reason == "uncertainty" and s.step == 0 and s.node_id != "local"
    # checks at steps 0, 4, 8 (check_every) and the report steps 5, 10
    assert d.ok and d.stop_reason is None and d.uncertainty["checks"] == 5 and d.uncertainty["n_flags"] == 0
    assert p.ok and p.uncertainty == {} and p.stop_reason is None
    doc = json.loads(manifest.read_text())["rollouts"]
    assert doc["stop_0"]["status"] == "failed" and doc["stop_0"]["result"]["stop_reason"] == "uncertainty"
    assert doc["stop_0"]["result"]["uncertainty"]["stopped"]["step"] == 0
    assert doc["stop_0"]["spec"]["committee"] == members and doc["stop_0"]["spec"]["dtype"] == "float64"
    assert doc["done_1"]["result"]["uncertainty"]["peak_force_std"] > 0


def test_yaml_preset_names_a_committee():
    """configs/cluster/surrogate_committee.yaml maps onto specs with a committee and its guard."""
    from hyenamd.cluster.cli import RolloutConfig, build_specs
    from hyenamd.config import load_config

    root = pathlib.Path(__file__).resolve().parents[2]
    cfg = load_config(root / "configs" / "cluster" / "surrogate_committee.yaml", RolloutConfig, [])
    specs = build_specs(cfg)
    assert len(specs) == 8 and all(len(s.committee) == 3 and s.model == {"kind": "committee"} for s in specs)
    assert specs[0].guard["max_force_std"] == 0.3 and specs[0].guard["action"] == "stop"
