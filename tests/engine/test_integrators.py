"""Integrators: energy conservation, analytic harmonic motion, Δt² scaling, thermostat, batches."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hyenamd import Batch, System
from hyenamd.engine.integrators import LangevinBAOAB, VelocityVerlet
from hyenamd.engine.potentials import Harmonic, LennardJones
from hyenamd.engine.reference_systems import lj_fluid_system
from hyenamd.units import EV_PER_ANGSTROM_AMU_TO_ANGSTROM_PER_FS2


def _total_energy(state) -> float:
    return float((state.energy + state.kinetic_energy()).sum())


def _nve_energies(potential, system, dt, t_total, temperature_k=80.0, seed=1):
    vv = VelocityVerlet(potential, dt)
    st = vv.init(system, temperature_k=temperature_k, seed=seed)
    e = [_total_energy(st)]
    for _ in range(round(t_total / dt)):
        st = vv.step(st)
        e.append(_total_energy(st))
    return np.array(e), st, vv


def test_nve_lj_conserves_energy(lj, argon108):
    e, st, vv = _nve_energies(lj, argon108, 4.0, 4000.0)
    assert len(e) == 1001
    rel = np.abs(e - e[0]).max() / abs(e[0])
    assert rel <= 1e-4, rel
    assert st.step == 1000 and st.time_fs == pytest.approx(4000.0)
    # the Verlet list was reused: far fewer builds than steps
    assert 1 <= vv.evaluator.n_builds < 200
    # and the motion was real (atoms moved by more than the skin)
    assert float((st.positions - argon108.positions).norm(dim=1).max()) > 1.0


def test_energy_error_scales_as_dt_squared(lj, argon108):
    errors = []
    for dt in (8.0, 4.0):
        e, _, _ = _nve_energies(lj, argon108, dt, 800.0)
        errors.append(np.abs(e - e[0]).max())
    ratio = errors[0] / errors[1]
    assert 4.0 * 0.8 <= ratio <= 4.0 * 1.2, ratio


def test_harmonic_oscillator_matches_analytic_solution():
    n = 5
    g = torch.Generator().manual_seed(3)
    anchors = torch.randn(n, 3, generator=g, dtype=torch.float64)
    x0 = anchors + 0.3 * torch.randn(n, 3, generator=g, dtype=torch.float64)
    v0 = 0.01 * torch.randn(n, 3, generator=g, dtype=torch.float64)
    masses = torch.tensor([12.011, 15.999, 39.948, 14.007, 18.998], dtype=torch.float64)
    k = 1.5  # eV/Å²
    s = System(x0, [6, 8, 18, 7, 9], masses=masses, velocities=v0)
    omega = torch.sqrt(k * EV_PER_ANGSTROM_AMU_TO_ANGSTROM_PER_FS2 / masses).unsqueeze(-1)  # rad/fs
    dt = 0.005 / float(omega.max())  # ω Δt ≤ 0.005: phase error ≈ ω t (ω Δt)²/24 < 1e-4
    vv = VelocityVerlet(Harmonic(k, anchors), dt)
    st = vv.init(s)
    n_steps = round(2 * math.pi / float(omega.min()) / dt)  # one period of the slowest atom
    st = vv.run(st, n_steps)
    t = st.time_fs
    d0 = x0 - anchors
    x_exact = anchors + d0 * torch.cos(omega * t) + v0 / omega * torch.sin(omega * t)
    v_exact = -d0 * omega * torch.sin(omega * t) + v0 * torch.cos(omega * t)
    amp = torch.sqrt(d0**2 + (v0 / omega) ** 2)
    assert float(((st.positions - x_exact).abs() / amp).max()) < 1e-4
    assert float(((st.velocities - v_exact).abs() / (amp * omega)).max()) < 1e-4
    # halving Δt quarters the error (second order)
    err = []
    for h in (4 * dt, 2 * dt):
        vv = VelocityVerlet(Harmonic(k, anchors), h)
        sth = vv.run(vv.init(s), round(n_steps * dt / h))
        xe = anchors + d0 * torch.cos(omega * sth.time_fs) + v0 / omega * torch.sin(omega * sth.time_fs)
        err.append(float((sth.positions - xe).abs().max()))
    assert 3.2 <= err[0] / err[1] <= 4.8


def test_langevin_temperature_1000_atoms():
    s = lj_fluid_system(7, 0.0212, seed=4)  # 1372 atoms
    assert s.n_atoms >= 1000
    target = 100.0
    lj = LennardJones(cutoff=6.0, switch_on=5.0)  # a shorter cutoff keeps this test quick
    lg = LangevinBAOAB(lj, 5.0, target, friction_per_fs=0.05, seed=11)
    st = lg.init(s)
    st = lg.run(st, 100)  # equilibrate
    temps = []
    for _ in range(200):
        st = lg.step(st)
        temps.append(float(st.temperature()))
    n_dof = 3 * s.n_atoms
    tol = 4.4 * math.sqrt(2.0 / n_dof)
    assert abs(np.mean(temps) / target - 1.0) <= tol, (np.mean(temps), tol)


def test_langevin_is_deterministic_and_functional(lj, argon108):
    lg = LangevinBAOAB(lj, 4.0, 90.0, 0.01, seed=5)
    a = lg.run(lg.init(argon108), 20)
    b = lg.run(lg.init(argon108), 20)
    assert torch.equal(a.positions, b.positions) and torch.equal(a.velocities, b.velocities)
    # stepping the same state twice gives the same state (the RNG state lives in the state)
    s1, s2 = lg.step(a), lg.step(a)
    assert torch.equal(s1.positions, s2.positions)
    c = LangevinBAOAB(lj, 4.0, 90.0, 0.01, seed=6)
    assert not torch.equal(c.run(c.init(argon108), 20).positions, a.positions)


def test_batch_of_three_equals_three_runs(lj):
    systems = [
        lj_fluid_system(3, 0.0212, seed=0),
        lj_fluid_system(3, 0.0200, seed=1, rattle=0.1),
        System(lj_fluid_system(2, 0.0212, seed=2).positions[:25], [18] * 25),  # open cluster
    ]
    vels = [
        0.002 * torch.randn(s.n_atoms, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(k))
        for k, s in enumerate(systems)
    ]
    systems = [s.replace(velocities=v) for s, v in zip(systems, vels)]
    vv = VelocityVerlet(lj, 4.0)
    batched = vv.run(vv.init(Batch.from_systems(systems)), 150)
    for k, s in enumerate(systems):
        vk = VelocityVerlet(lj, 4.0)
        single = vk.run(vk.init(s), 150)
        sl = slice(int(batched.ptr[k]), int(batched.ptr[k + 1]))
        assert float((batched.positions[sl] - single.positions).abs().max()) <= 1e-12
        assert float((batched.velocities[sl] - single.velocities).abs().max()) <= 1e-12
        assert abs(float(batched.energy[k] - single.energy[0])) <= 1e-12


def test_com_removal_and_wrapping(lj, argon108):
    v = 0.003 * torch.ones(argon108.n_atoms, 3, dtype=torch.float64)
    s = argon108.replace(velocities=v)
    vv = VelocityVerlet(lj, 4.0, remove_com=True)
    st = vv.init(s)
    assert float((st.masses[:, None] * st.velocities).sum(0).abs().max()) < 1e-12
    assert float(st.dof[0]) == 3 * argon108.n_atoms - 3
    # wrapped and unwrapped trajectories differ only by lattice vectors
    free = VelocityVerlet(lj, 4.0)
    wrapped = VelocityVerlet(lj, 4.0, wrap=True)
    s2 = argon108.replace(
        velocities=0.02
        * torch.randn(argon108.n_atoms, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    )
    a = free.run(free.init(s2), 60)
    b = wrapped.run(wrapped.init(s2), 60)
    frac = torch.linalg.solve(argon108.cell.T, (b.positions - a.positions).T).T
    assert float((frac - frac.round()).abs().max()) < 1e-9
    assert float(frac.abs().max()) >= 1.0  # something was actually wrapped
    f_b = torch.linalg.solve(argon108.cell.T, b.positions.T).T
    assert bool(((f_b >= 0) & (f_b < 1)).all())


def test_bad_input_is_rejected(lj, argon108):
    with pytest.raises(ValueError, match="dt_fs"):
        VelocityVerlet(lj, 0.0)
    with pytest.raises(ValueError, match="temperature_k"):
        LangevinBAOAB(lj, 1.0, -5.0)
    with pytest.raises(ValueError, match="friction"):
        LangevinBAOAB(lj, 1.0, 300.0, friction_per_fs=-1.0)
    with pytest.raises(TypeError, match="cutoff"):
        VelocityVerlet(torch.nn.Linear(3, 3), 1.0)
    with pytest.raises(TypeError, match="System"):
        VelocityVerlet(lj, 1.0).init(argon108.positions)
    lg = LangevinBAOAB(LennardJones(), 1.0, [100.0, 200.0])
    with pytest.raises(ValueError, match="one per system"):
        lg.init(argon108)
