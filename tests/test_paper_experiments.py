"""Tiny CI versions of the paper experiments (issues 9, 14): data-generator invariants and valid JSON.

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

from ear import attention_bytes, memory_limits, train_batch  # noqa: E402
from ear_data import ear_dataset, random_rotations, recall_oracle  # noqa: E402
from nbody import fit_linear_tv, label_of, option_suffix, to_tokens  # noqa: E402
from nbody_model import NBodyNet, complete_graph, load_task_model, random_orders, save_task_model  # noqa: E402
from nbody_sim import (  # noqa: E402
    coulomb_forces,
    generate_dataset,
    initial_state,
    momentum,
    simulate,
    simulate_egnn,
    total_energy,
)
from paper_models import SequenceModel, uniform_ptr  # noqa: E402

from hyenamd.surrogate.local_block import Edges  # noqa: E402
from hyenamd.testing import perturb_parameters  # noqa: E402

CHECKPOINT = (
    pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "nbody_ghyena.safetensors"
)


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


def test_ear_training_batches_are_fresh_every_step():
    a, b = train_batch(0, 8, "random", 0, 6), train_batch(1, 8, "random", 0, 6)
    assert a["tokens"].shape == (6, 9, 3) and a["target"].shape == (6, 3)
    assert not torch.allclose(a["tokens"], b["tokens"])
    torch.testing.assert_close(train_batch(1, 8, "random", 0, 6)["tokens"], b["tokens"])  # seeded
    # random: vocabularies differ between steps (key magnitudes are a vocabulary's fingerprint)
    mags = [set(np.round(d["tokens"][:, 0:8:2].norm(dim=-1).flatten().numpy(), 6)) for d in (a, b)]
    assert not mags[0] & mags[1]
    # fixed: one vocabulary for every step (at most V = 4 key magnitudes over both steps)
    f = [train_batch(k, 8, "fixed", 0, 6) for k in (0, 1)]
    keys = torch.cat([d["tokens"][:, 0:8:2].norm(dim=-1).flatten() for d in f])
    assert len(set(np.round(keys.numpy(), 6))) <= 4
    np.testing.assert_allclose(
        recall_oracle(f[1]["tokens"].double().numpy(), atol=1e-5), f[1]["target"], atol=1e-5
    )


def test_attention_memory_estimate():
    assert attention_bytes(31, 16) == 3 * 3 * 16 * 32 * 32 * 4
    lim = memory_limits(16, {"small": 1e6, "large": 1e9})
    assert lim["small"]["first_n_over"] < lim["large"]["first_n_over"]
    for v in lim.values():
        assert (
            attention_bytes(v["first_n_over"], 16)
            > v["budget_bytes"]
            >= attention_bytes(v["last_n_fitting"], 16)
        )


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


def test_nbody_generator_settings_charges_and_shapes():
    x, v, q = initial_state(200, seed=4)
    assert set(np.unique(q)) == {-1.0, 1.0}
    np.testing.assert_allclose(np.linalg.norm(v, axis=-1), 0.5, rtol=1e-12)
    assert abs(x.std() - 1.0) < 0.1  # loc_std 1
    d = generate_dataset(6, seed=1, t_in=2, t_out=3, sample_every=10)
    assert {k: a.shape for k, a in d.items()} == {
        "x": (6, 5, 3),
        "v": (6, 5, 3),
        "q": (6, 5),
        "target": (6, 5, 3),
    }
    with pytest.raises(ValueError, match="scheme"):
        generate_dataset(2, scheme="rk4")


def test_egnn_scheme_repeats_the_egnn_loop_and_frame_numbering():
    x, v, q = initial_state(3, seed=6)
    xs, vs = simulate_egnn(x, v, q, frames=(0, 2), sample_every=7, dt=1e-3)
    # the loop written out: a full kick, then (drift, record, kick); frame k after 7 (k + 1) drifts
    xx, vv = x.copy(), v + 1e-3 * coulomb_forces(x, q, max_force=100.0)
    rec = {}
    for i in range(1, 22):
        xx = xx + 1e-3 * vv
        rec[i] = (xx.copy(), vv.copy())
        vv = vv + 1e-3 * coulomb_forces(xx, q, max_force=100.0)
    np.testing.assert_allclose(xs[:, 0], rec[7][0], atol=1e-13)
    np.testing.assert_allclose(vs[:, 1], rec[21][1], atol=1e-13)
    np.testing.assert_allclose(xs[:, 1], rec[21][0], atol=1e-13)


def test_egnn_scheme_conserves_momentum_and_bounds_energy_without_clipping():
    x, v, q = initial_state(16, seed=1)
    xs, vs = simulate_egnn(x, v, q, frames=(4,), sample_every=100, max_force=None)
    # pairwise forces cancel: every kick conserves momentum exactly (round-off only)
    np.testing.assert_allclose(momentum(vs[:, 0]), momentum(v), atol=1e-10)
    # symplectic Euler read at the half-step velocity: a first-order energy error, halved with dt
    e0 = total_energy(x, v, q)
    err = [
        np.abs(total_energy(a[:, 0], b[:, 0], q) - e0).max()
        for a, b in (
            (xs, vs),
            simulate_egnn(x, v, q, frames=(4,), sample_every=200, dt=5e-4, max_force=None),
        )
    ]
    assert err[0] / np.abs(e0).max() < 0.05
    assert 0.4 < err[1] / err[0] < 0.6


def test_learned_linear_recovers_t():
    rng = np.random.default_rng(0)
    x, v = rng.normal(size=(50, 5, 3)), rng.normal(size=(50, 5, 3))
    d = {"x": x, "v": v, "q": np.ones((50, 5)), "target": x + 0.73 * v}
    assert abs(fit_linear_tv(to_tokens(d, dtype=torch.float64)) - 0.73) < 1e-12


# ---------------------------------------------------------------- n-body model
def _nbody_inputs(n_sys=3, p=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x, v = (
        torch.randn(n_sys, p, 3, generator=g, dtype=torch.float64),
        torch.randn(n_sys, p, 3, generator=g, dtype=torch.float64),
    )
    q = torch.randint(0, 2, (n_sys, p), generator=g).double() * 2 - 1
    d = {"x": x.numpy(), "v": v.numpy(), "q": q.numpy(), "target": x.numpy()}
    return to_tokens(d, dtype=torch.float64)


@pytest.mark.parametrize("pattern", ["LGLG", "AA", "LL", "EGEG"])
def test_nbody_model_is_equivariant(pattern):
    torch.manual_seed(0)
    # zero-initialised residual branches and output: perturb so every path is non-trivial
    m = perturb_parameters(NBodyNet(pattern, n_scalar=8, n_vector=4).double(), std=0.2)
    t = _nbody_inputs()
    q = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64))[0]  # orthogonal, det ±1
    out = m(t["s0"], t["v0"], t["x"], 5)
    assert float(out.abs().max()) > 1e-3
    shift = torch.tensor([1.5, -2.0, 0.3], dtype=torch.float64)
    rot = m(t["s0"], t["v0"] @ q.T, t["x"] @ q.T + shift, 5)  # x - x̄ in v0 is translation invariant
    torch.testing.assert_close(rot, out @ q.T, atol=1e-10, rtol=1e-9)


def test_nbody_local_blocks_are_permutation_equivariant_and_global_blocks_see_the_order():
    torch.manual_seed(1)
    t = _nbody_inputs(n_sys=2)
    order = random_orders(2, 5, torch.Generator().manual_seed(3))
    perm = order  # relabel tokens within each system
    loc = perturb_parameters(NBodyNet("LL", n_scalar=8, n_vector=4).double(), std=0.2)
    torch.testing.assert_close(
        loc(t["s0"][perm], t["v0"][perm], t["x"][perm], 5), loc(t["s0"], t["v0"], t["x"], 5)[perm]
    )
    glob = perturb_parameters(NBodyNet("LGLG", n_scalar=8, n_vector=4).double(), std=0.2)
    a, b = glob(t["s0"], t["v0"], t["x"], 5), glob(t["s0"], t["v0"], t["x"], 5, order)
    assert float((a - b).abs().max()) > 1e-8
    i, j = complete_graph(2, 5)
    assert i.numel() == 2 * 20 and bool((i != j).all()) and bool((i // 5 == j // 5).all())


def test_nbody_edge_blocks_are_permutation_equivariant_and_see_the_charge_product():
    torch.manual_seed(4)
    t = _nbody_inputs(n_sys=2)
    perm = random_orders(2, 5, torch.Generator().manual_seed(5))
    m = perturb_parameters(NBodyNet("EE", n_scalar=8, n_vector=4).double(), std=0.2)
    out = m(t["s0"], t["v0"], t["x"], 5)
    torch.testing.assert_close(m(t["s0"][perm], t["v0"][perm], t["x"][perm], 5), out[perm])
    # the pair attribute is q_i q_j: flipping every charge leaves it (and nothing else) unchanged
    s_flip = t["s0"].clone()
    s_flip[:, 0] = -s_flip[:, 0]
    e = m.blocks[0]
    i, j = complete_graph(2, 5)
    edges = Edges(i, j, t["x"][j] - t["x"][i])
    s, v = m.embed_s(t["s0"]), m.embed_v(t["v0"])
    q = t["s0"][:, 0]
    a = e(s, v, edges, (q[i] * q[j]).unsqueeze(-1))[1]
    b = e(s, v, edges, -(q[i] * q[j]).unsqueeze(-1))[1]
    assert float((a - b).abs().max()) > 1e-6
    with pytest.raises(ValueError, match="attr"):
        e(s, v, edges, q.unsqueeze(-1))


def test_nbody_dropout_is_equivariant_and_off_in_eval():
    t = _nbody_inputs()
    m = perturb_parameters(NBodyNet("EGLG", n_scalar=8, n_vector=4, dropout=0.3).double(), std=0.2)
    q = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(6), dtype=torch.float64))[0]
    m.train()
    torch.manual_seed(7)
    out = m(t["s0"], t["v0"], t["x"], 5)
    torch.manual_seed(7)  # the same masks: they are drawn per channel, not per component
    rot = m(t["s0"], t["v0"] @ q.T, t["x"] @ q.T, 5)
    torch.testing.assert_close(rot, out @ q.T, atol=1e-10, rtol=1e-9)
    torch.manual_seed(8)
    assert float((m(t["s0"], t["v0"], t["x"], 5) - out).abs().max()) > 1e-8  # masks differ per call
    m.eval()
    torch.testing.assert_close(m(t["s0"], t["v0"], t["x"], 5), m(t["s0"], t["v0"], t["x"], 5), rtol=0, atol=0)
    with pytest.raises(ValueError, match="dropout"):
        NBodyNet("EG", dropout=1.0)


def test_task_checkpoint_roundtrip_and_refusals(tmp_path):
    torch.manual_seed(2)
    m = perturb_parameters(NBodyNet("LGLG", n_scalar=8, n_vector=4), std=0.2)
    path = save_task_model(m, tmp_path / "m.safetensors", variant="test", seed=0)
    m2, summary = load_task_model(path)
    assert summary == {"variant": "test", "seed": 0}
    t = _nbody_inputs()
    args = (t["s0"].float(), t["v0"].float(), t["x"].float(), 5)
    torch.testing.assert_close(m2(*args), m.eval()(*args), rtol=0, atol=0)
    with pytest.raises(ValueError, match="safetensors"):
        save_task_model(m, tmp_path / "m.pt")
    with pytest.raises(FileNotFoundError):
        load_task_model(tmp_path / "missing.safetensors")
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not an n-body task checkpoint"):
        load_task_model(tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="pattern"):
        NBodyNet("LX")


# ---------------------------------------------------------------- task models
@pytest.mark.parametrize("kind", ["ghyena", "eqattn"])
def test_equivariant_sequence_models_are_equivariant(kind):
    torch.manual_seed(0)
    for readout in ("pool", "token"):
        m = SequenceModel(kind, s_in=3, v_in=2, n_scalar=8, n_vector=4, n_blocks=2, readout=readout)
        m = perturb_parameters(m.double(), std=0.2)  # zero-initialised residual branches
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
        from ear import LEARNING_RATES

        # each model trains at its own learning rate unless --lr sets one for all
        assert {r["model"]: r["lr"] for r in data["runs"]} == LEARNING_RATES
    elif script == "nbody.py":
        assert set(data["summary"]) == {
            "linear_tv",
            "linear_eq",
            "ghyena_lg_aug",
            "ghyena_lg_aug+avg2",
            "eqattn",
        }
        assert "EGNN" in data["table"] and "published" in data["table"]
        assert all(np.isfinite(v["test_mse_mean"]) for v in data["summary"].values())
    else:
        assert data["analysis"]["ratios"], "no size where both blocks ran"
        assert {r["mode"] for r in data["results"]} == {"global", "attention_naive", "attention_chunked"}


def _evaluate(path, *extra, n_test=12):
    res = subprocess.run(
        [
            sys.executable,
            str(BENCH / "nbody.py"),
            "--evaluate",
            str(path),
            "--data-seed",
            "5",
            "--n-test",
            "12",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_nbody_evaluate_prints_one_json_line_last(tmp_path):
    torch.manual_seed(0)
    path = save_task_model(
        NBodyNet("LGLG", n_scalar=8, n_vector=4), tmp_path / "m.safetensors", variant="ghyena_lg_aug"
    )
    out = _evaluate(path, "--n-train", "30")
    assert set(out) == {"test_mse", "linear_test_mse", "data_seed", "n_test"}
    assert out["data_seed"] == 5 and out["n_test"] == 12
    assert np.isfinite(out["test_mse"]) and 0 < out["linear_test_mse"] < 1.0
    # fresh data is seeded: the same call gives the same numbers
    assert _evaluate(path, "--n-train", "30") == out


def test_committed_nbody_checkpoint_evaluates():
    out = _evaluate(CHECKPOINT, "--n-train", "100", n_test=100)
    _, summary = load_task_model(CHECKPOINT)
    assert summary["variant"].startswith("ghyena") and out["test_mse"] < out["linear_test_mse"]


# ---------------------------------------------------------------- hyenamd bench
def test_bench_cli_lists_and_rejects():
    from hyenamd.cli import main
    from hyenamd.workflows.bench import available

    names = available()
    assert {"ear", "nbody", "scaling"} <= set(names) and not {"paper_models", "nbody_model"} & set(names)
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


def test_nbody_merge_keys_keep_non_default_options_apart():
    assert option_suffix({"epochs": 100, "dropout": 0.0, "wd": 0.0, "lr": 1e-3}) == ""
    assert option_suffix({"dropout": 0.1, "adamw": True, "n_scalar": 32}) == "~adamw=True~dropout=0.1"
    label = label_of("ghyena_eg_aug@200ep~dropout=0.1+avg32")
    assert label.startswith("G-Hyena EGNN-style") and "200 epochs, dropout 0.1, 32-order" in label
