"""Tiny CI versions of the paper experiments (issue 9): data-generator invariants and valid JSON.

No timed assertions. The scripts live in ``benchmarks/`` (not a package); they are imported
from there by path.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import torch

BENCH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

from ear_data import ear_dataset, random_rotations, recall_oracle  # noqa: E402
from nbody_sim import coulomb_forces, initial_state, momentum, simulate, total_energy  # noqa: E402
from paper_models import SequenceModel, uniform_ptr  # noqa: E402


# ---------------------------------------------------------------- EAR data
@pytest.mark.parametrize("variant", ["fixed", "random"])
def test_ear_answer_is_the_recalled_value(variant):
    d = ear_dataset(50, 16, variant=variant, seed=3)
    assert d["tokens"].shape == (50, 17, 3) and d["target"].shape == (50, 3)
    np.testing.assert_allclose(recall_oracle(d["tokens"]), d["target"], atol=1e-12)


@pytest.mark.parametrize("variant", ["fixed", "random"])
def test_ear_rotating_the_sequence_rotates_only_the_answer(variant):
    d = ear_dataset(40, 12, variant=variant, seed=5, rotate=False)
    rot = random_rotations(np.random.default_rng(0), 1)[0]
    rotated = d["tokens"] @ rot.T
    np.testing.assert_allclose(recall_oracle(rotated), d["target"] @ rot.T, atol=1e-12)
    # and the generator's own rotation keeps bigrams rotation-related: |value| = |key|
    r = ear_dataset(40, 12, variant=variant, seed=5)
    np.testing.assert_allclose(
        np.linalg.norm(r["tokens"][:, 0:12:2], axis=-1), np.linalg.norm(r["tokens"][:, 1:12:2], axis=-1)
    )
    # rotation by the generator is a proper rotation of the unrotated data set (same seed stream)
    assert np.allclose(np.linalg.norm(r["target"], axis=-1), np.linalg.norm(d["target"], axis=-1))


def test_ear_fixed_vocabulary_is_shared_and_random_is_not():
    f = ear_dataset(30, 8, variant="fixed", seed=1, rotate=False)
    keys = np.unique(np.round(f["tokens"][:, 0:8:2].reshape(-1, 3), 9), axis=0)
    assert len(keys) <= 4
    r = ear_dataset(30, 8, variant="random", seed=1, rotate=False)
    assert len(np.unique(np.round(r["tokens"][:, 0:8:2].reshape(-1, 3), 9), axis=0)) > 4
    mags = np.linalg.norm(f["tokens"], axis=-1)
    assert mags.min() >= 1.0 and mags.max() <= 4.0


def test_ear_bad_input():
    with pytest.raises(ValueError, match="variant"):
        ear_dataset(2, 4, variant="other")
    with pytest.raises(ValueError, match="even"):
        ear_dataset(2, 5, variant="fixed")


def test_random_rotations_are_proper():
    r = random_rotations(np.random.default_rng(1), 20)
    np.testing.assert_allclose(r @ r.transpose(0, 2, 1), np.broadcast_to(np.eye(3), (20, 3, 3)), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-12)


# ---------------------------------------------------------------- n-body simulator
def _direct_forces(x, q):
    """O(P²) double loop: the oracle for coulomb_forces."""
    f = np.zeros_like(x)
    for s in range(x.shape[0]):
        for i in range(x.shape[1]):
            for j in range(x.shape[1]):
                if i != j:
                    d = x[s, i] - x[s, j]
                    f[s, i] += q[s, i] * q[s, j] * d / np.linalg.norm(d) ** 3
    return f


def test_nbody_forces_match_direct_sum_and_like_charges_repel():
    x, _, q = initial_state(4, seed=2)
    np.testing.assert_allclose(coulomb_forces(x, q), _direct_forces(x, q), rtol=1e-12, atol=1e-12)
    x2 = np.array([[[0.0, 0, 0], [1.0, 0, 0]]])
    f = coulomb_forces(x2, np.array([[1.0, 1.0]]))
    assert f[0, 0, 0] < 0 < f[0, 1, 0]


def test_nbody_conserves_momentum_and_energy():
    x, v, q = initial_state(16, seed=1)
    xs, vs = simulate(x, v, q, n_frames=6, sample_every=100, dt=1e-3)
    np.testing.assert_allclose(momentum(vs[:, -1]), momentum(v), atol=1e-10)
    e0 = total_energy(x, v, q)
    e1 = total_energy(xs[:, -1], vs[:, -1], q)
    # velocity Verlet: O(dt²) energy error; these 16 seeded samples have no close encounter
    # (without force clipping, other seeds hold near-collisions of opposite charges)
    assert np.max(np.abs(e1 - e0) / np.maximum(np.abs(e0), 1.0)) < 1e-4
    # halving dt quarters the error (second-order integrator)
    xh, vh = simulate(x, v, q, n_frames=6, sample_every=200, dt=5e-4)
    ratio = np.abs(total_energy(xh[:, -1], vh[:, -1], q) - e0).max() / np.abs(e1 - e0).max()
    assert 0.2 < ratio < 0.3


# ---------------------------------------------------------------- task models
@pytest.mark.parametrize("kind", ["ghyena", "eqattn"])
def test_equivariant_sequence_models_are_equivariant(kind):
    torch.manual_seed(0)
    for readout in ("pool", "token"):
        m = SequenceModel(kind, s_in=3, v_in=2, n_scalar=8, n_vector=4, n_blocks=2, readout=readout).double()
        s0, v0, ptr = (
            torch.randn(10, 3, dtype=torch.float64),
            torch.randn(10, 2, 3, dtype=torch.float64),
            uniform_ptr(2, 5),
        )
        q = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64))[0]  # orthogonal, det ±1
        out = m(s0, v0, ptr)
        assert out.shape == ((2, 3) if readout == "pool" else (10, 3))
        torch.testing.assert_close(m(s0, v0 @ q.T, ptr), out @ q.T, atol=1e-10, rtol=1e-9)


# ---------------------------------------------------------------- scripts write valid JSON
@pytest.mark.parametrize(
    ("script", "keys"),
    [
        ("ear.py", ("runs", "summary", "config", "git_commit", "machine")),
        ("nbody.py", ("runs", "summary", "config", "git_commit", "copy_input_test_mse")),
        ("scaling.py", ("results", "analysis", "stopped", "git_commit", "machine")),
    ],
)
def test_quick_run_writes_valid_json(tmp_path, script, keys):
    res = subprocess.run(
        [
            sys.executable,
            str(BENCH / script),
            "--quick",
            "--out-dir",
            str(tmp_path),
            "--fig-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    name = script.replace(".py", "_quick")
    data = json.loads((tmp_path / f"{name}.json").read_text())
    for k in keys:
        assert k in data, k
    assert (tmp_path / f"{name}.png").stat().st_size > 1000
    if script == "ear.py":
        assert all(np.isfinite(r["test_mse"]) for r in data["runs"]) and len(data["runs"]) == 8
    elif script == "nbody.py":
        assert set(data["summary"]) == {"linear", "ghyena", "eqattn"}
        assert all(np.isfinite(v["test_mse_mean"]) for v in data["summary"].values())
    else:
        assert data["analysis"]["ratios"], "no size where both blocks ran"
        assert {r["mode"] for r in data["results"]} == {"global", "attention_naive", "attention_chunked"}


# ---------------------------------------------------------------- hyenamd bench
def test_bench_cli_lists_and_rejects():
    from hyenamd.cli import main
    from hyenamd.workflows.bench import available

    names = available()
    assert {"ear", "nbody", "scaling"} <= set(names) and "paper_models" not in names
    assert main(["bench", "no_such_benchmark"]) == 2
    assert main(["bench", "--list"]) == 0


def test_bench_writes_only_where_told(tmp_path, monkeypatch):
    """`hyenamd bench NAME` from another directory writes ./results there, not into the repository."""
    import json as _json
    import pathlib as _pathlib

    from hyenamd.cli import main
    from hyenamd.workflows.bench import _take_out, benchmarks_dir

    repo_results = benchmarks_dir() / "results" / "neighbors.json"
    before = repo_results.stat().st_mtime_ns if repo_results.exists() else None
    monkeypatch.chdir(tmp_path)
    assert main(["bench", "neighbors", "--quick"]) == 0
    assert _json.loads((tmp_path / "results" / "neighbors.json").read_text())["rows"]
    assert (repo_results.stat().st_mtime_ns if repo_results.exists() else None) == before
    assert main(["bench", "--out", str(tmp_path / "b"), "neighbors", "--quick"]) == 0
    assert (tmp_path / "b" / "neighbors.json").exists()
    assert _take_out(["--quick", "--out=x", "--n", "3"], None) == (
        ["--quick", "--n", "3"],
        _pathlib.Path("x"),
    )
