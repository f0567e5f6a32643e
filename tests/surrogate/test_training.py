"""Training loop: loss goes down on a tiny synthetic data set; resuming is bit-identical (float64, CPU)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from hyenamd.engine.potentials import LennardJones
from hyenamd.surrogate import GHyena, GHyenaConfig, compute_forces, load_model
from hyenamd.surrogate.losses import energy_least_squares_shifts
from hyenamd.surrogate.schedule import EMA, cosine_lr
from hyenamd.surrogate.training import Sample, Trainer, TrainSettings, split_by_segment
from hyenamd.system import Batch, System

DT = torch.float64


def _lj_samples(n: int = 8, seed: int = 0) -> list[Sample]:
    """Rattled 2×2×2 fcc argon (32 atoms) labelled by the engine's torch LJ potential."""
    g = torch.Generator().manual_seed(seed)
    a = 5.4
    base = torch.tensor([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]], dtype=DT)
    cells = torch.stack(torch.meshgrid(*(torch.arange(2, dtype=DT),) * 3, indexing="ij"), -1).reshape(
        -1, 1, 3
    )
    x0 = ((cells + base).reshape(-1, 3)) * a
    cell = torch.eye(3, dtype=DT) * 2 * a
    lj = LennardJones(sigma=3.405, epsilon=0.010323, cutoff=5.0, switch_on=4.5)
    out = []
    for k in range(n):
        x = x0 + 0.15 * torch.randn(x0.shape, generator=g, dtype=DT)
        v = 0.002 * torch.randn(x0.shape, generator=g, dtype=DT)
        s = System(positions=x, species=torch.full((32,), 18), cell=cell, pbc=True, velocities=v)
        r = compute_forces(lj, Batch.from_systems([s]))
        out.append(Sample(s, float(r["energy"][0]), r["forces"].detach(), segment=k // 2))
    return out


def _model(**kw) -> GHyena:
    cfg = dict(
        species=(18,),
        cutoff=5.0,
        n_scalar=8,
        n_vector=4,
        n_rbf=4,
        avg_neighbors=20.0,
        pattern=("local", "global"),
        filter_order=4,
        dtype="float64",
    )
    cfg.update(kw)
    return GHyena(GHyenaConfig(**cfg))


def test_schedule_warmup_and_cosine() -> None:
    lrs = [cosine_lr(s, base=1.0, total=100, warmup=10, min_lr_ratio=0.1) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(b <= a + 1e-12 for a, b in itertools.pairwise(lrs[10:]))  # monotone decay after warm-up
    assert cosine_lr(100, base=1.0, total=100, warmup=10, min_lr_ratio=0.1) == pytest.approx(0.1)


def test_ema_converges_to_constant_weights() -> None:
    m = torch.nn.Linear(2, 2)
    ema = EMA(m, decay=0.9)
    with torch.no_grad():
        m.weight.fill_(3.0)
    for _ in range(200):
        ema.update(m)
    assert torch.allclose(ema.shadow["weight"], torch.full((2, 2), 3.0), atol=1e-6)


def test_least_squares_shifts_exact() -> None:
    counts = torch.tensor([[2.0, 1.0], [1.0, 3.0], [4.0, 0.0]])
    mu = torch.tensor([-1.5, 0.25], dtype=DT)
    e = counts.double() @ mu
    assert torch.allclose(energy_least_squares_shifts(counts, e), mu, atol=1e-12)


def test_split_by_segment_keeps_segments_whole() -> None:
    samples = _lj_samples(8)
    tr, va = split_by_segment(samples, 0.25, seed=1)
    assert tr and va and len(tr) + len(va) == 8
    assert not ({s.segment for s in tr} & {s.segment for s in va})
    with pytest.raises(ValueError, match="segments"):
        split_by_segment([samples[0]], 0.5)


def test_force_field_training_reduces_loss_and_saves_best(tmp_path) -> None:
    samples = _lj_samples(8)
    tr, va = split_by_segment(samples, 0.25, seed=0)
    model = _model()
    settings = TrainSettings(epochs=10, batch_size=1, lr=1e-2, warmup_steps=2, ema_decay=0.5, progress=False)
    trainer = Trainer(model, tr, va, settings, out_dir=tmp_path, data_summary={"source": "LJ test"})
    first, _ = trainer.evaluate()
    res = trainer.fit()
    assert res.best_valid_loss < 0.6 * first, (first, res.history["valid_loss"])
    assert res.best_path.exists() and res.curve_path.exists() and res.state_path.exists()
    # the energy shift was fitted by least squares before training (mean energy per atom)
    mean_e = sum(s.energy for s in tr) / (32 * len(tr))
    loaded = load_model(res.best_path)
    assert float(loaded.energy_head.energy_shift[0]) == pytest.approx(mean_e, rel=1e-9)
    from hyenamd.surrogate.checkpoint import describe_checkpoint

    assert "LJ test" in describe_checkpoint(res.best_path)


def test_best_checkpoint_by_held_out_force_error(tmp_path) -> None:
    tr, va = split_by_segment(_lj_samples(8), 0.25, seed=0)
    settings = TrainSettings(
        epochs=3, batch_size=2, lr=1e-2, warmup_steps=1, ema_decay=0.5, progress=False, monitor="force_rmse"
    )
    res = Trainer(_model(), tr, va, settings, out_dir=tmp_path).fit()
    assert res.best_valid_loss == res.best_metrics["force_rmse"]  # the monitored value, eV/Å
    with pytest.raises(ValueError):
        TrainSettings(monitor="accuracy")


@pytest.mark.parametrize("head", ["dynamics", "stochastic_dynamics"])
def test_resume_is_bit_identical(tmp_path, head) -> None:
    samples = _lj_samples(6)
    tr, va = split_by_segment(samples, 0.34, seed=0)
    settings = TrainSettings(
        task="dynamics",
        epochs=4,
        batch_size=2,
        lr=3e-3,
        warmup_steps=1,
        progress=False,
        noise_std=0.01,
        neighbor_skin=0.5,
    )
    dyn = []
    for s in tr + va:  # a synthetic large-step target: ballistic motion
        dyn.append(
            Sample(
                s.system,
                displacement=s.system.velocities * 20.0,
                next_velocities=s.system.velocities,
                segment=s.segment,
            )
        )
    tr, va = dyn[: len(tr)], dyn[len(tr) :]
    heads = ("energy", head)
    full = Trainer(
        _model(heads=heads, dynamics_horizon_fs=20.0), tr, va, settings, out_dir=tmp_path / "a"
    ).fit()
    part = Trainer(_model(heads=heads, dynamics_horizon_fs=20.0), tr, va, settings, out_dir=tmp_path / "b")
    part.fit(until_epoch=2)
    del part
    resumed_t = Trainer(
        _model(heads=heads, dynamics_horizon_fs=20.0), tr, va, settings, out_dir=tmp_path / "b", resume=True
    )
    assert resumed_t.epoch == 2
    resumed = resumed_t.fit()
    assert resumed.history["train_loss"] == full.history["train_loss"]
    assert resumed.history["valid_loss"] == full.history["valid_loss"]
    a, b = load_model(full.best_path), load_model(resumed.best_path)
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), k
    assert math.isfinite(resumed.best_valid_loss)


def test_bad_inputs_raise_before_work(tmp_path) -> None:
    samples = _lj_samples(4)
    with pytest.raises(ValueError, match="dynamics head"):
        Trainer(
            _model(),
            samples[:2],
            samples[2:],
            TrainSettings(task="dynamics", progress=False),
            out_dir=tmp_path,
        )
    with pytest.raises(ValueError, match="training and validation"):
        Trainer(_model(), samples, [], TrainSettings(progress=False), out_dir=tmp_path)
    with pytest.raises(ValueError, match="neighbor_skin"):
        TrainSettings(noise_std=0.1, neighbor_skin=0.5)


@pytest.mark.parametrize(
    ("ordering", "augment", "expect"), [("hilbert", None, True), ("hilbert", False, False)]
)
def test_order_augmentation_draws_valid_orders_for_training_batches(
    tmp_path, ordering, augment, expect
) -> None:
    from hyenamd.surrogate.ordering import canonical_order

    samples = _lj_samples(4)
    train, valid = split_by_segment(samples, 0.5, seed=0)
    settings = TrainSettings(epochs=1, batch_size=2, progress=False, order_augment=augment)
    tr = Trainer(_model(ordering=ordering), train, valid, settings, out_dir=tmp_path, echo=lambda *_: None)
    assert tr.order_augment is expect
    items = tr._prepared[:2]
    canonical = torch.cat([canonical_order(x.system, ordering) + 32 * k for k, x in enumerate(items)])
    assert torch.equal(tr._batch(items, noise=False)[0].order, canonical)  # validation: canonical order
    orders = [tr._batch(items, noise=True)[0].order for _ in range(3)]
    for o in orders:
        assert torch.equal(torch.sort(o[:32]).values, torch.arange(32))  # a valid order per structure
        assert torch.equal(torch.sort(o[32:]).values, torch.arange(32, 64))
    assert any(not torch.equal(o, canonical) for o in orders) is expect


def _noisy_strides(samples: list[Sample], sx: float, sv: float, seed: int = 1) -> list[Sample]:
    """Synthetic Langevin-like strides: the ballistic step plus Gaussian noise of σ_x Å, σ_v Å/fs."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for s in samples:
        v = s.system.velocities
        out.append(
            Sample(
                s.system,
                displacement=v * 20.0 + sx * torch.randn(v.shape, generator=g, dtype=DT),
                next_velocities=v + sv * torch.randn(v.shape, generator=g, dtype=DT),
                segment=s.segment,
            )
        )
    return out


def test_stochastic_head_training_reduces_nll_towards_the_noise(tmp_path) -> None:
    """Gaussian NLL training: the held-out NLL falls and σ moves to the data's noise level."""
    from hyenamd.surrogate.stochastic_head import StochasticDynamicsHead

    sx, sv = 0.02, 3e-4
    tr, va = split_by_segment(_noisy_strides(_lj_samples(8), sx, sv), 0.25, seed=0)
    heads = ("energy", "stochastic_dynamics")
    settings = TrainSettings(
        task="dynamics", epochs=6, batch_size=2, lr=0.05, warmup_steps=0, progress=False, fit_shifts=False
    )
    model = _model(heads=heads, dynamics_horizon_fs=20.0)
    assert isinstance(model.dynamics_head, StochasticDynamicsHead)
    trainer = Trainer(model, tr, va, settings, out_dir=tmp_path)
    before, _ = trainer.evaluate()
    result = trainer.fit()
    assert result.best_valid_loss < before - 1.0
    best = load_model(result.best_path)
    assert isinstance(best.dynamics_head, StochasticDynamicsHead)
    b = Batch.from_systems([x.system for x in va])
    with torch.no_grad():
        out = best(b)
    sig_v = float(torch.exp(out["log_sigma_v"]).pow(2).mean().sqrt())
    start = 1e-3  # the head's default σ_v (fit_shifts off)
    assert abs(math.log(sig_v / sv)) < 0.5 * abs(math.log(start / sv))
    assert {"velocity_noise_fraction", "velocity_sigma2"} <= result.best_metrics.keys()
    assert (tmp_path / "loss_curve.png").exists()  # a linear axis: the NLL is negative here


def test_stochastic_head_log_sigma_starts_at_the_ballistic_residual(tmp_path) -> None:
    sx, sv = 0.02, 3e-4
    tr, va = split_by_segment(_noisy_strides(_lj_samples(8), sx, sv), 0.25, seed=0)
    model = _model(heads=("energy", "stochastic_dynamics"), dynamics_horizon_fs=20.0)
    trainer = Trainer(model, tr, va, TrainSettings(task="dynamics", progress=False), out_dir=tmp_path)
    rx = torch.cat([x.displacement - x.system.velocities * 20.0 for x in tr])
    rv = torch.cat([x.next_velocities - x.system.velocities for x in tr])
    shift = model.dynamics_head.noise_shift.detach()
    assert math.isclose(float(shift[0, 0]), 0.5 * math.log(float(rx.pow(2).mean())), rel_tol=1e-12)
    assert math.isclose(float(shift[0, 1]), 0.5 * math.log(float(rv.pow(2).mean())), rel_tol=1e-12)
    assert trainer.scales["log_sigma_v0"] == [float(shift[0, 1])]
    from hyenamd.surrogate.stochastic_head import RHO_MAX

    corr = float((rx * rv).mean() / (rx.pow(2).mean() * rv.pow(2).mean()).sqrt())
    assert math.isclose(RHO_MAX * math.tanh(float(shift[0, 2])), corr, rel_tol=1e-9)
