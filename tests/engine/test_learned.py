"""LearnedPropagator (dynamics head), the canonical order kept in the state, and lazy imports."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from hyenamd import Batch
from hyenamd.engine import CheckpointReporter, LearnedPropagator, Simulation
from hyenamd.surrogate import compute_forces
from hyenamd.surrogate.ordering import batch_order


def test_needs_a_dynamics_head(make_ghyena):
    with pytest.raises(ValueError, match="dynamics head"):
        LearnedPropagator(make_ghyena())
    with pytest.raises(ValueError, match="direct_forces"):
        LearnedPropagator(make_ghyena(heads=("energy", "dynamics")), forces="direct")


def test_steps_follow_the_dynamics_head(make_ghyena, water_like):
    model = make_ghyena(heads=("energy", "dynamics"), energy_scale=0.1)
    lp = LearnedPropagator(model)
    assert lp.dt_fs == 4.0
    st = lp.init(water_like, temperature_k=300.0, seed=2)
    order0 = st.order.clone()
    assert torch.equal(order0, batch_order(Batch.from_system(water_like), model.cfg.ordering))
    n0 = lp.evaluator.n_evaluations
    for _ in range(3):
        x, v = st.positions, st.velocities
        with torch.no_grad():
            out = model(st.as_batch(x).replace(velocities=v))
        new = lp.step(st)
        assert torch.allclose(new.positions, x + out["displacement"], atol=1e-12)
        assert torch.allclose(new.velocities, out["velocities"], atol=1e-12)
        with torch.no_grad():  # the state's energy belongs to its positions and velocities
            e_new = model(new.as_batch())["energy"]
        assert torch.allclose(new.energy, e_new, atol=1e-12)
        st = new
    assert lp.evaluator.n_evaluations - n0 == 3  # one model evaluation per step
    assert st.step == 3 and st.time_fs == 12.0
    assert torch.equal(st.order, order0)  # the order is kept, although atoms moved


def test_conservative_forces_option(make_ghyena, water_like):
    model = make_ghyena(heads=("energy", "dynamics"))
    lp = LearnedPropagator(model, forces="conservative")
    st = lp.step(lp.init(water_like, temperature_k=300.0))
    ref = compute_forces(model, st.as_batch())
    assert torch.allclose(st.forces, ref["forces"], atol=1e-12)
    sim = Simulation(LearnedPropagator(model), water_like, temperature_k=300.0, profile=True, guard=None)
    sim.run(2)
    t = sim.timing_summary()
    assert t["model"] > 0 and t["neighbors"] > 0 and t["model"] + t["neighbors"] <= t["integrator"]


def test_learned_resume_is_bit_identical(make_ghyena, water_like, tmp_path):
    model = make_ghyena(heads=("energy", "dynamics"), energy_scale=0.1)
    full = Simulation(LearnedPropagator(model), water_like, temperature_k=300.0, seed=1, guard=None)
    full.run(6)
    ckpt = tmp_path / "lp.safetensors"
    part = Simulation(
        LearnedPropagator(model),
        water_like,
        [CheckpointReporter(ckpt, 3)],
        temperature_k=300.0,
        seed=1,
        guard=None,
    )
    part.run(4)
    part.close()
    resumed = Simulation.from_checkpoint(ckpt, LearnedPropagator(model), guard=None)
    assert resumed.state.step == 3 and set(resumed.state.aux) == {"displacement", "next_velocities"}
    resumed.run_to(6)
    assert torch.equal(resumed.state.positions, full.state.positions)
    assert torch.equal(resumed.state.velocities, full.state.velocities)
    assert torch.equal(resumed.state.order, full.state.order)


def test_import_engine_is_light():
    code = (
        "import sys, hyenamd.engine, hyenamd.engine.integrators, hyenamd.engine.simulation;"
        "print(','.join(m for m in ('ase', 'openmm', 'ray', 'h5py', 'zarr') if m in sys.modules));"
        "from hyenamd.engine import HyenaCalculator, Simulation, VelocityVerlet, LangevinBAOAB, LearnedPropagator;"
        "print('ase' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True"]  # nothing heavy until the calculator is asked for
    with pytest.raises(AttributeError):
        import hyenamd.engine

        _ = hyenamd.engine.NoSuchThing
