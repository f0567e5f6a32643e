"""The order-sensitivity measures of ``benchmarks/ordering.py`` (issue #12 item 3) on tiny systems.

Oracles: a model without global blocks is order-free (every difference and jump exactly 0); the
K-order sets are the documented rows of ``order_samples``; batched order copies equal single
evaluations; one jump origin equals the plain refresh jump. No training, no timing.
"""

from __future__ import annotations

import importlib.util
import pathlib

import pytest
import torch

from hyenamd.surrogate import GHyena, GHyenaConfig
from hyenamd.surrogate.ordering import order_samples
from hyenamd.surrogate.training import Sample
from hyenamd.testing import lj_argon, perturb_parameters

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("ordering_bench", ROOT / "benchmarks" / "ordering.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _model(pattern, pair_cutoff=None, seed=0) -> GHyena:
    cfg = GHyenaConfig(
        species=(18,), cutoff=4.0, n_scalar=8, n_vector=4, n_rbf=4, avg_neighbors=12.0, pattern=pattern,
        filter_order=4, filter_bands=2, dtype="float64", seed=seed, ordering="hilbert", pair_cutoff=pair_cutoff,
    )  # fmt: skip
    return perturb_parameters(GHyena(cfg), std=0.1, seed=seed)


def _frames(n: int = 3):
    return [lj_argon(2, a=5.4, rattle=0.3, seed=s) for s in range(n)]


def test_order_free_model_gives_zero_differences_and_jumps(bench):
    model = _model(("local",), pair_cutoff=5.0)
    frames = _frames()
    fs = bench.force_sensitivity(model, frames, 1.0, ks=(1, 2, 4))
    for k, row in fs["by_k"].items():
        for name, value in row.items():
            assert value == pytest.approx(0.0, abs=1e-14), (k, name)
    traj = [f.positions.numpy() for f in frames]
    jumps = bench.refresh_jumps(
        model, frames[0], {"0ps": traj[0], "1ps": traj[1], "10ps": traj[2]}, ks=(1, 3)
    )
    assert all(v == pytest.approx(0.0, abs=1e-14) for k in jumps["by_k"].values() for v in k.values())


def test_order_sets_are_the_documented_rows(bench):
    model = _model(("local", "global"))
    s = _frames(1)[0]
    rows = order_samples(s, "hilbert", 4)
    e, f = bench.evaluate_orders(model, s, rows, chunk=3)  # two chunks: 3 + 1 copies
    for j in range(4):  # batched copies == one evaluation per order
        e1, f1 = bench.evaluate(model, s, rows[j])
        assert float(e[j]) == pytest.approx(e1, rel=1e-12, abs=1e-12)
        torch.testing.assert_close(f[j], f1, rtol=1e-10, atol=1e-12)
    assert float((f[1] - f[0]).abs().max()) > 0  # an order-sensitive model: the test has teeth
    fs = bench.force_sensitivity(model, [s], 2.0, ks=(1, 2))
    want_k1 = float((f[1] - f[0]).pow(2).mean().sqrt()) / 2.0
    want_k2 = float((f[2:4].mean(0) - f[:2].mean(0)).pow(2).mean().sqrt()) / 2.0
    assert fs["variant_rel_rms"] == pytest.approx(want_k1, rel=1e-10)
    assert fs["by_k"]["2"]["variant_rel_rms"] == pytest.approx(want_k2, rel=1e-10)
    e_want = abs(float(e[2:4].mean() - e[:2].mean())) / s.n_atoms
    assert fs["by_k"]["2"]["variant_energy_ev_per_atom"] == pytest.approx(e_want, rel=1e-10)
    # accuracy of the K-averaged model (set A) against reference samples
    ref = Sample(s, 1.5, torch.ones(s.n_atoms, 3, dtype=torch.float64))
    acc = bench.force_sensitivity(model, [s], 2.0, ks=(2,), samples=[ref])
    assert acc["energy_mae_ev_per_atom"] == pytest.approx(
        abs(float(e[:2].mean()) - 1.5) / s.n_atoms, rel=1e-10
    )
    assert acc["force_rmse_rel"] == pytest.approx(
        float((f[:2].mean(0) - 1).pow(2).mean().sqrt()) / 2.0, rel=1e-10
    )


def test_jump_of_k_orders_and_one_origin(bench):
    model = _model(("local", "global"))
    frames = _frames(3)
    traj = [f.positions.numpy() for f in frames]
    jumps = bench.refresh_jumps(model, frames[0], {"0ps": traj[0], "1ps": traj[2]}, ks=(1, 2))
    kept, fresh = order_samples(frames[0], "hilbert", 2), order_samples(frames[2], "hilbert", 2)
    e_old, _ = bench.evaluate_orders(model, frames[2], kept)
    e_new, _ = bench.evaluate_orders(model, frames[2], fresh)
    assert jumps["1ps"] == pytest.approx(abs(float(e_new[0] - e_old[0])) / 32, rel=1e-10)
    assert jumps["by_k"]["2"]["1ps"] == pytest.approx(abs(float(e_new.mean() - e_old.mean())) / 32, rel=1e-10)
    # trajectory "frames" 1000 fs apart: lags of 1 ps; one origin reproduces the plain jump
    origins = bench.jumps_over_origins(model, frames[0], traj, 1000.0, 1, ks=(1, 2))
    plain = bench.refresh_jumps(model, frames[0], bench.trajectory_frames(traj, 1000.0), ks=(1, 2))
    assert origins["2"]["1ps"]["values"] == [plain["by_k"]["2"]["1ps"]]
    assert origins["1"]["1ps"]["rms"] == pytest.approx(plain["1ps"])
