"""Simulation driver: report scheduling, CSV, trajectory store, exact resume, blow-up guard."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from torch import nn

from hyenamd.engine import (
    BlowUpError,
    BlowUpGuard,
    CheckpointReporter,
    LangevinBAOAB,
    Simulation,
    StateDataReporter,
    TrajectoryReporter,
    VelocityVerlet,
)
from hyenamd.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from hyenamd.engine.reporters import Reporter, ReportRequest
from hyenamd.io import open_store


class Recorder(Reporter):
    """Keeps every snapshot it is given (foreground or background)."""

    def __init__(self, interval, include=(), background=False, report_initial=False):
        super().__init__(interval, report_initial=report_initial)
        self.include = frozenset(include)
        self.background = background
        self.snaps = []

    def report(self, sim, snap):
        self.snaps.append(snap)


def test_reporters_get_data_only_when_due(lj, argon108):
    a = Recorder(7, include=("positions",))
    b = Recorder(5, include=("velocities", "forces"), background=True, report_initial=True)
    sim = Simulation(VelocityVerlet(lj, 4.0), argon108, [a, b], temperature_k=50.0, seed=2)
    states = {}
    orig_step = sim.integrator.step

    def spy(state):
        new = orig_step(state)
        states[new.step] = new
        return new

    sim.integrator.step = spy
    sim.run(30)
    sim.close()
    assert [s.step for s in a.snaps] == [7, 14, 21, 28]
    assert [s.step for s in b.snaps] == [0, 5, 10, 15, 20, 25, 30]
    assert all(s.velocities is None and s.forces is None for s in a.snaps)
    assert all(s.positions is None for s in b.snaps)
    for s in a.snaps:
        assert np.array_equal(s.positions, states[s.step].positions.numpy())
        assert s.time_fs == pytest.approx(4.0 * s.step)
    for s in b.snaps[1:]:
        assert np.array_equal(s.forces, states[s.step].forces.numpy())
        assert np.allclose(s.temperature, states[s.step].temperature().numpy())


def test_state_data_csv_and_progress(tmp_path, lj, argon108, capsys, monkeypatch):
    monkeypatch.setenv("HYENAMD_PROGRESS", "lines")  # captured stderr is not a terminal: off by default
    path = tmp_path / "md.csv"
    rep = StateDataReporter(path, 10, progress=True)
    with Simulation(VelocityVerlet(lj, 4.0), argon108, [rep], temperature_k=80.0, seed=1) as sim:
        sim.run(50)
        final = sim.state
    rows = list(csv.DictReader(open(path)))
    assert [int(r["step"]) for r in rows] == [0, 10, 20, 30, 40, 50]
    assert list(rows[0]) == list(StateDataReporter.COLUMNS)
    last = rows[-1]
    assert float(last["potential_energy_ev"]) == float(final.energy[0])
    assert float(last["kinetic_energy_ev"]) == pytest.approx(float(final.kinetic_energy()[0]), rel=1e-14)
    e = np.array([float(r["total_energy_ev"]) for r in rows])
    assert np.abs(e - e[0]).max() < 1e-4 * abs(e[0])
    assert np.isnan(float(rows[0]["ns_per_day"])) and float(last["ns_per_day"]) > 0
    assert "step" in capsys.readouterr().err  # the progress lines


def test_trajectory_store_holds_the_frames(tmp_path, lj, argon108):
    path = tmp_path / "traj.h5"
    rec = Recorder(10, include=("positions", "velocities", "forces"), report_initial=True)
    with Simulation(
        VelocityVerlet(lj, 4.0), argon108, [TrajectoryReporter(path, 10), rec], temperature_k=80.0, seed=1
    ) as sim:
        sim.run(40)
    with open_store(path) as store:
        assert len(store) == 5
        assert list(store.steps) == [0, 10, 20, 30, 40]
        for k, snap in enumerate(rec.snaps):
            frame = store[k]
            assert np.array_equal(frame.positions.numpy(), snap.positions)
            # HDF5 stores keep forces in kJ/mol/Å (MDAnalysis' unit): eV/Å back within one ulp
            np.testing.assert_allclose(store.read(k, "forces"), snap.forces, rtol=1e-15, atol=0)
            assert np.array_equal(store.read(k, "velocities"), snap.velocities)
            assert store.read(k, "potential_energy") == pytest.approx(
                float(snap.potential_energy[0]), rel=1e-15
            )
            assert store.read(k, "time") == pytest.approx(snap.time_fs)
        assert store.units["potential_energy"] == "eV"


def test_batch_trajectory_needs_one_store_per_system(tmp_path, lj, argon108):
    from hyenamd import Batch

    batch = Batch.from_systems([argon108, argon108])
    with pytest.raises(ValueError, match="{system}"):
        Simulation(VelocityVerlet(lj, 4.0), batch, [TrajectoryReporter(tmp_path / "t.h5", 5)]).run(5)
    with Simulation(
        VelocityVerlet(lj, 4.0), batch, [TrajectoryReporter(tmp_path / "t_{system}.h5", 5)]
    ) as sim:
        sim.run(10)
    for k in range(2):
        with open_store(tmp_path / f"t_{k}.h5") as s:
            assert len(s) == 3 and s.n_atoms == argon108.n_atoms


def _langevin(lj):
    return LangevinBAOAB(lj, 4.0, 90.0, friction_per_fs=0.01, seed=7)


def test_resume_is_bit_identical(tmp_path, lj, argon108):
    # the uninterrupted run
    full = Simulation(_langevin(lj), argon108, [TrajectoryReporter(tmp_path / "full.h5", 10)])
    full.run(60)
    full.close()
    # the interrupted run: checkpoints every 20 steps, "crashes" after step 30
    ckpt = tmp_path / "md.ckpt.safetensors"
    reps = [
        TrajectoryReporter(tmp_path / "part.h5", 10),
        CheckpointReporter(ckpt, 20),
        StateDataReporter(tmp_path / "p.csv", 10, progress=False),
    ]
    part = Simulation(_langevin(lj), argon108, reps)
    part.run(30)
    part.close()
    assert load_checkpoint(ckpt)[0].step == 20
    # resume with fresh objects (a new process would do the same)
    reps = [
        TrajectoryReporter(tmp_path / "part.h5", 10),
        CheckpointReporter(ckpt, 20),
        StateDataReporter(tmp_path / "p.csv", 10, progress=False),
    ]
    resumed = Simulation.from_checkpoint(ckpt, _langevin(lj), reps)
    assert resumed.state.step == 20
    resumed.run_to(60)
    resumed.close()
    for name in ("positions", "velocities", "forces", "energy", "rng_state"):
        assert torch.equal(getattr(resumed.state, name), getattr(full.state, name)), name
    assert resumed.state.time_fs == full.state.time_fs
    with open_store(tmp_path / "full.h5") as a, open_store(tmp_path / "part.h5") as b:
        assert list(a.steps) == list(b.steps) == [0, 10, 20, 30, 40, 50, 60]
        for k in range(len(a)):
            for f in ("positions", "velocities", "forces"):
                assert np.array_equal(a.read(k, f), b.read(k, f)), (k, f)
    steps = [int(r["step"]) for r in csv.DictReader(open(tmp_path / "p.csv"))]
    assert steps == [0, 10, 20, 30, 40, 50, 60]  # no duplicated rows after the resume


def test_checkpoint_checks(tmp_path, lj, argon108):
    lg = _langevin(lj)
    st = lg.run(lg.init(argon108), 3)
    path = save_checkpoint(tmp_path / "c.safetensors", st, integrator=lg)
    back, meta = load_checkpoint(path)
    assert meta["integrator"]["temperature_k"] == 90.0 and back.step == 3
    assert torch.equal(back.rng_state, st.rng_state) and torch.equal(back.positions, st.positions)
    with pytest.raises(CheckpointError, match="other settings"):
        Simulation.from_checkpoint(path, LangevinBAOAB(lj, 4.0, 300.0, 0.01, seed=7))
    Simulation.from_checkpoint(path, LangevinBAOAB(lj, 4.0, 300.0, 0.01, seed=7), strict=False)
    other = tmp_path / "other.safetensors"
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(other), metadata={"hyenamd": '{"format": "hyenamd.model"}'})
    with pytest.raises(CheckpointError, match="not an engine checkpoint"):
        load_checkpoint(other)
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "junk.safetensors")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.safetensors")


class NaNAfter(nn.Module):
    """Wraps a potential; its forces become NaN from the n-th evaluation on."""

    uses_order = False

    def __init__(self, potential, n):
        super().__init__()
        self.potential, self.n, self.calls = potential, n, 0
        self.cutoff = potential.cutoff

    def energy_and_forces(self, batch, neighbors=None):
        self.calls += 1
        out = self.potential.energy_and_forces(batch, neighbors)
        if self.calls > self.n:
            out["forces"] = out["forces"].clone()
            out["forces"][3] = float("nan")
        return out

    def forward(self, batch, neighbors=None):  # pragma: no cover - the fast path is used
        return self.potential(batch, neighbors)


def test_blow_up_guard_fires_and_keeps_frames(tmp_path, lj, argon108):
    path = tmp_path / "traj.h5"
    pot = NaNAfter(lj, 25)  # evaluation 1 is init, so step 25 is the first with NaN forces
    sim = Simulation(
        VelocityVerlet(pot, 4.0), argon108, [TrajectoryReporter(path, 4)], guard=BlowUpGuard(check_every=10)
    )
    # checked every 10 steps and on every report step (every 4): first seen at step 28
    with pytest.raises(BlowUpError, match=r"step 28 .*forces are not finite.*first atom 3") as e:
        sim.run(100)
    assert e.value.step == 28 and e.value.last_good_step == 24 and e.value.system == 0
    # with check_every=1 the guard names the very step
    sim1 = Simulation(VelocityVerlet(NaNAfter(lj, 25), 4.0), argon108, guard=BlowUpGuard(check_every=1))
    with pytest.raises(BlowUpError, match=r"step 25 .*forces are not finite.*first atom 3"):
        sim1.run(100)
    with open_store(path) as store:  # every frame before the blow-up, and only those
        assert list(store.steps) == [0, 4, 8, 12, 16, 20, 24]
        assert np.isfinite(store.read(6, "forces")).all()
    with pytest.raises(RuntimeError, match="closed"):
        sim.run(1)


def test_blow_up_guard_temperature_and_force(lj, argon108):
    hot = argon108.replace(velocities=torch.full((argon108.n_atoms, 3), 0.5, dtype=torch.float64))
    with pytest.raises(BlowUpError, match="temperature .* exceeds max_temperature_k"):
        Simulation(VelocityVerlet(lj, 1.0), hot, guard=BlowUpGuard(check_every=1)).run(3)
    x = argon108.positions.clone()
    x[1] = x[0] + torch.tensor([2.0, 0.0, 0.0], dtype=torch.float64)  # 2 Å apart: ~ 2e3 eV/Å
    with pytest.raises(BlowUpError, match=r"force .* on atom (0|1) exceeds max_force"):
        Simulation(
            VelocityVerlet(lj, 0.01), argon108.replace(positions=x), guard=BlowUpGuard(check_every=1)
        ).run(2)
    with pytest.raises(ValueError, match="check_every"):
        BlowUpGuard(check_every=-1)


def test_background_errors_surface(lj, argon108):
    class Broken(Reporter):
        background = True

        def report(self, sim, snap):
            raise OSError("disk full")

    sim = Simulation(VelocityVerlet(lj, 4.0), argon108, [Broken(2)])
    with pytest.raises(RuntimeError, match="disk full"):
        sim.run(10)
        sim.flush()


def test_custom_reporter_protocol_duck_typed(lj, argon108):
    class Every3:
        def __init__(self):
            self.steps = []

        def describe_next_report(self, sim):
            return ReportRequest(3 - sim.state.step % 3, frozenset({"positions"}))

        def report(self, sim, snap):
            self.steps.append(snap.step)

    r = Every3()
    Simulation(VelocityVerlet(lj, 4.0), argon108, [r], guard=None).run(10)
    assert r.steps == [3, 6, 9]
