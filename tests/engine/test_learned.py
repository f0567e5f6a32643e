"""LearnedPropagator: the O–Φ–O stride (exact OU half-steps, energy rescale), resume, batches, lazy imports."""

from __future__ import annotations

import math
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from hyenamd import Batch
from hyenamd.engine import CheckpointReporter, LearnedPropagator, Simulation
from hyenamd.engine.learned import energy_rescale_factor, ou_half_step
from hyenamd.engine.state import kinetic_energy
from hyenamd.surrogate import compute_forces
from hyenamd.units import BOLTZMANN_EV_PER_K, EV_PER_ANGSTROM_AMU_TO_ANGSTROM_PER_FS2

ACC = EV_PER_ANGSTROM_AMU_TO_ANGSTROM_PER_FS2


class IdentityMap(nn.Module):
    """Φ = identity on (x, v): a dynamics "model" whose map does nothing (the OU oracle's test bed)."""

    uses_order = False
    cutoff = 0.0

    def __init__(self, horizon_fs: float) -> None:
        super().__init__()
        self.dynamics_head = True
        self.cfg = SimpleNamespace(dynamics_horizon_fs=horizon_fs)

    def forward(self, batch, neighbors=None):
        e = (batch.positions * 0.0).sum(-1)
        energy = e.new_zeros(batch.n_systems).index_add(0, batch.batch, e)
        return {
            "energy": energy,
            "energies": e,
            "displacement": torch.zeros_like(batch.positions),
            "velocities": batch.velocities.clone(),
        }


def _gas(n: int, mass: float = 39.948) -> Batch:
    from hyenamd import System

    gen = torch.Generator().manual_seed(0)
    x = torch.rand(n, 3, generator=gen, dtype=torch.float64) * 30.0
    return Batch.from_system(
        System(
            positions=x,
            species=torch.full((n,), 18),
            masses=torch.full((n,), mass, dtype=torch.float64),
            cell=torch.eye(3, dtype=torch.float64) * 30.0,
            pbc=True,
        )
    )


def test_needs_a_dynamics_head_and_valid_settings(make_ghyena):
    with pytest.raises(ValueError, match="dynamics head"):
        LearnedPropagator(make_ghyena())
    dyn = make_ghyena(heads=("energy", "dynamics"))
    with pytest.raises(ValueError, match="energy_model"):
        LearnedPropagator(dyn, forces="conservative")
    with pytest.raises(ValueError, match="temperature_k"):
        LearnedPropagator(dyn, friction_per_fs=0.001)
    from hyenamd.engine.potentials import LennardJones

    with pytest.raises(ValueError, match="cutoff"):
        LearnedPropagator(dyn, energy_model=LennardJones(cutoff=8.5))


def test_ou_half_step_is_exact_maxwell_boltzmann_invariant():
    """Φ = identity: O–Φ–O strides keep N(0, k_BT/m) velocities N(0, k_BT/m), for any γΔτ."""
    t_k, gamma, tau, n = 90.0, 0.004, 200.0, 4000
    prop = LearnedPropagator(IdentityMap(tau), t_k, gamma, seed=3)
    state = prop.init(_gas(n), temperature_k=t_k)
    sd2 = BOLTZMANN_EV_PER_K * t_k * ACC / 39.948
    samples = []
    for _ in range(60):
        state = prop.step(state)
        samples.append(state.velocities)
    v = torch.stack(samples)  # [60, n, 3]: 720k components, a variance to ~0.2 %
    assert abs(float(v.pow(2).mean()) / sd2 - 1) < 0.01
    assert abs(float(v.mean()) / math.sqrt(sd2)) < 0.01
    kurt = float(v.pow(4).mean() / v.pow(2).mean() ** 2)
    assert abs(kurt - 3.0) < 0.05  # Gaussian, not just the right variance
    # from rest the variance after one stride is exactly sd² (1 − e^{−2·γΔτ/2·2}) = sd² (1 − e^{−2γΔτ})
    st0 = prop.init(_gas(n).replace(velocities=torch.zeros(n, 3, dtype=torch.float64)))
    var1 = float(prop.step(st0).velocities.pow(2).mean())
    assert abs(var1 / (sd2 * (1 - math.exp(-2 * gamma * tau))) - 1) < 0.05
    # the half-step itself: c₁ v + sqrt(1 − c₁²) sd ξ, element by element
    g = torch.Generator().manual_seed(0)  # seeded, float64 (unseeded float32 failed allclose by rounding)
    vv, xi = torch.randn(2, 5, 3, generator=g, dtype=torch.float64)
    sd = torch.rand(5, 1, generator=g, dtype=torch.float64)
    want = 0.3 * vv + math.sqrt(1 - 0.09) * sd * xi
    assert torch.allclose(ou_half_step(vv, 0.3, sd, xi), want, rtol=0, atol=1e-15)


def test_energy_rescale_conserves_total_energy_exactly(make_ghyena, water_like):
    """NVE mode: U(x') + K(v') = U(x) + K(v) after every stride (per system of a batch)."""
    dyn = make_ghyena(heads=("energy", "dynamics"), energy_scale=0.05, seed=1)
    ff = make_ghyena(energy_scale=0.05, seed=2)
    other = water_like.replace(positions=water_like.positions + 0.1)
    batch = Batch.from_systems([water_like, other])
    prop = LearnedPropagator(dyn, energy_model=ff)
    st = prop.init(batch, temperature_k=300.0, seed=4)
    with torch.no_grad():
        assert torch.allclose(st.energy, ff(st.as_batch().replace(velocities=None))["energy"], atol=1e-12)
    for _ in range(4):
        h0 = st.energy + st.kinetic_energy()
        with torch.no_grad():
            out = dyn(st.as_batch())
        new = prop.step(st)
        assert torch.allclose(new.positions, st.positions + out["displacement"], atol=1e-12)
        k_pred = kinetic_energy(st.masses, out["velocities"], st.batch, 2)
        assert bool((k_pred > 0).all()) and float(new.aux["rescale_guarded"].sum()) == 0
        with torch.no_grad():
            u_new = ff(new.as_batch().replace(velocities=None))["energy"]
        assert torch.allclose(new.energy, u_new, atol=1e-12)  # the state's U belongs to its positions
        h1 = new.energy + new.kinetic_energy()
        assert torch.allclose(h1, h0, rtol=0, atol=1e-10)
        assert torch.allclose(
            new.velocities, out["velocities"] * new.aux["alpha"][st.batch, None], atol=1e-12
        )
        st = new


def test_substeps_compose_phi_r_inside_one_stride(make_ghyena, water_like):
    """substeps=k: one stride of k·Δτ is k (Φ, R) pairs; in NVE it equals k strides of substeps=1,
    and with the OU steps only the two half-steps at the stride's ends are added."""
    dyn = make_ghyena(heads=("energy", "dynamics"), energy_scale=0.05, seed=1)
    ff = make_ghyena(energy_scale=0.05, seed=2)
    with pytest.raises(ValueError, match="substeps"):
        LearnedPropagator(dyn, energy_model=ff, substeps=0)
    one = LearnedPropagator(dyn, energy_model=ff)
    three = LearnedPropagator(dyn, energy_model=ff, substeps=3)
    assert three.dt_fs == 3 * one.dt_fs and three.describe()["substeps"] == 3
    st1 = one.init(water_like, temperature_k=300.0, seed=4)
    st3 = three.init(water_like, temperature_k=300.0, seed=4)
    h0 = st3.energy + st3.kinetic_energy()
    a = one.run(st1, 3)
    n0 = three.evaluator.n_evaluations
    b = three.step(st3)
    assert three.evaluator.n_evaluations - n0 == 3 * 2  # (Φ, U) per substep
    assert torch.allclose(b.positions, a.positions, rtol=0, atol=1e-12)
    assert torch.allclose(b.velocities, a.velocities, rtol=0, atol=1e-12)
    assert b.time_fs == a.time_fs and b.step == 1
    assert torch.allclose(b.energy + b.kinetic_energy(), h0, rtol=0, atol=1e-10)  # R after every Φ
    # R after the last Φ only: one energy evaluation per stride, H still kept exactly
    with pytest.raises(ValueError, match="rescale_every"):
        LearnedPropagator(dyn, energy_model=ff, rescale_every="step")
    once = LearnedPropagator(dyn, energy_model=ff, substeps=3, rescale_every="stride")
    st = once.init(water_like, temperature_k=300.0, seed=4)
    n0 = once.evaluator.n_evaluations
    c = once.step(st)
    assert once.evaluator.n_evaluations - n0 == 3 + 1
    assert torch.allclose(c.energy + c.kinetic_energy(), h0, rtol=0, atol=1e-10)
    free = LearnedPropagator(dyn, substeps=3).step(st)  # the same Φ Φ Φ without R
    assert torch.allclose(c.positions, free.positions, rtol=0, atol=1e-12)
    assert torch.allclose(c.velocities, free.velocities * c.aux["alpha"][st.batch, None], rtol=0, atol=1e-12)
    # Langevin: the same as O, then the NVE composite on the half-kicked velocities, then O
    lang = LearnedPropagator(dyn, 300.0, 0.002, energy_model=ff, substeps=3, seed=7)
    st = lang.init(water_like, seed=4)
    gen = lang._generator(st)
    sd = lang._noise_scale(st)
    xi1 = torch.randn(st.velocities.shape, generator=gen, dtype=st.velocities.dtype)
    xi2 = torch.randn(st.velocities.shape, generator=gen, dtype=st.velocities.dtype)
    mid = three.step(st.replace(velocities=ou_half_step(st.velocities, lang.c1, sd, xi1)))
    want = ou_half_step(mid.velocities, lang.c1, sd, xi2)
    got = lang.step(st)
    assert torch.allclose(got.positions, mid.positions, rtol=0, atol=1e-12)
    assert torch.allclose(got.velocities, want, rtol=0, atol=1e-12)


def test_energy_rescale_factor_guards():
    dof = torch.tensor([30.0, 30.0, 30.0, 30.0])
    u_new = torch.tensor([1.0, 5.0, 1.0, 1.0], dtype=torch.float64)
    k_new = torch.tensor([0.5, 0.5, 0.0, 0.5], dtype=torch.float64)
    total = torch.tensor([1.6, 1.0, 1.0, 1.0], dtype=torch.float64)
    alpha, guarded = energy_rescale_factor(u_new, k_new, total, dof, alpha_min=0.5, alpha_max=2.0)
    assert math.isclose(float(alpha[0]), math.sqrt(1.2))  # U' + α² K' = H
    assert float(alpha[1]) == 0.5 and float(alpha[2]) == 1.0  # U' > H: clamped; K' = 0: skipped
    assert float(alpha[3]) == 0.5  # H − U' = 0: α² = 0, clamped
    assert guarded.tolist() == [False, True, True, True]


def test_langevin_mode_with_forces(make_ghyena, water_like):
    dyn = make_ghyena(heads=("energy", "dynamics"), energy_scale=0.05, seed=1)
    ff = make_ghyena(energy_scale=0.05, seed=2)
    prop = LearnedPropagator(dyn, 300.0, 0.01, energy_model=ff, forces="conservative", seed=5)
    st = prop.run(prop.init(water_like), 2)
    ref = compute_forces(ff, st.as_batch().replace(velocities=None))
    assert torch.allclose(st.forces, ref["forces"], atol=1e-12)
    assert st.step == 2 and st.time_fs == 8.0
    again = prop.run(prop.init(water_like), 2)  # seeded: the same noise
    assert torch.equal(again.velocities, st.velocities)
    sim = Simulation(LearnedPropagator(dyn, energy_model=ff), water_like, temperature_k=300.0, profile=True)
    sim.run(2)
    t = sim.timing_summary()
    assert t["model"] > 0 and t["neighbors"] > 0 and t["model"] + t["neighbors"] <= t["integrator"]


def test_learned_resume_is_bit_identical(make_ghyena, water_like, tmp_path):
    dyn = make_ghyena(heads=("energy", "dynamics"), energy_scale=0.05, seed=1)
    ff = make_ghyena(energy_scale=0.05, seed=2)

    def prop():
        return LearnedPropagator(dyn, 300.0, 0.002, energy_model=ff, seed=1)

    full = Simulation(prop(), water_like, temperature_k=300.0, guard=None)
    full.run(6)
    ckpt = tmp_path / "lp.safetensors"
    part = Simulation(prop(), water_like, [CheckpointReporter(ckpt, 3)], temperature_k=300.0, guard=None)
    part.run(4)
    part.close()
    resumed = Simulation.from_checkpoint(ckpt, prop(), guard=None)
    assert resumed.state.step == 3 and set(resumed.state.aux) == {"alpha", "rescale_guarded"}
    resumed.run_to(6)
    assert torch.equal(resumed.state.positions, full.state.positions)
    assert torch.equal(resumed.state.velocities, full.state.velocities)
    assert torch.equal(resumed.state.energy, full.state.energy)
    assert torch.equal(resumed.state.order, full.state.order)


def _stochastic(make_ghyena, seed: int = 1):
    from hyenamd.testing import perturb_parameters

    return perturb_parameters(
        make_ghyena(heads=("energy", "stochastic_dynamics"), energy_scale=0.05, seed=seed), seed=seed
    )


def test_sampled_stride_is_the_heads_gaussian_draw(make_ghyena, water_like):
    """sample=True (NVE, no rescale): x' = x + μˣ + σˣ ζ₁, v' = μᵛ + σᵛ (ρ ζ₁ + √(1−ρ²) ζ₂), ζ from the state's RNG."""
    dyn = _stochastic(make_ghyena)
    with pytest.raises(ValueError, match="stochastic dynamics head"):
        LearnedPropagator(make_ghyena(heads=("energy", "dynamics")), sample=True)
    other = water_like.replace(positions=water_like.positions + 0.1)
    prop = LearnedPropagator(dyn, sample=True, seed=2)
    st = prop.init(Batch.from_systems([water_like, other]), temperature_k=300.0)
    gen = torch.Generator().set_state(st.rng_state)
    with torch.no_grad():
        out = dyn(st.as_batch())
    zeta = torch.randn((2, st.n_atoms, 3), generator=gen, dtype=torch.float64)
    new = prop.step(st)
    sx, sv = out["log_sigma_x"].exp()[:, None], out["log_sigma_v"].exp()[:, None]
    assert torch.allclose(new.positions, st.positions + out["displacement"] + sx * zeta[0], atol=1e-12)
    rho = out["rho_xv"][:, None]
    want_v = out["velocities"] + sv * (rho * zeta[0] + (1 - rho * rho).sqrt() * zeta[1])
    assert torch.allclose(new.velocities, want_v, atol=1e-14) and float(rho.abs().max()) > 0
    assert float((new.velocities - out["velocities"]).abs().max()) > 0  # a real draw
    assert torch.equal(new.rng_state, gen.get_state())
    means = LearnedPropagator(dyn, seed=2).step(st)  # the same model without sample: its means
    assert torch.allclose(means.velocities, out["velocities"], atol=1e-14)


def test_sampled_oo_splitting_is_seeded_and_keeps_energy(make_ghyena, water_like):
    dyn, ff = _stochastic(make_ghyena), make_ghyena(energy_scale=0.05, seed=2)
    prop = LearnedPropagator(dyn, energy_model=ff, sample=True, seed=3)  # NVE mode: rescale after the draw
    st = prop.init(water_like, temperature_k=300.0)
    new = prop.step(st)
    assert torch.allclose(new.energy + new.kinetic_energy(), st.energy + st.kinetic_energy(), atol=1e-10)
    lang = LearnedPropagator(dyn, 300.0, 0.002, energy_model=ff, sample=True, seed=3)
    a = lang.run(lang.init(water_like), 3)
    b = lang.run(lang.init(water_like), 3)
    assert torch.equal(a.positions, b.positions) and torch.equal(a.velocities, b.velocities)
    c = LearnedPropagator(dyn, 300.0, 0.002, energy_model=ff, sample=True, seed=4)
    assert not torch.equal(c.run(c.init(water_like), 3).velocities, a.velocities)


def test_sampled_resume_is_bit_identical(make_ghyena, water_like, tmp_path):
    dyn, ff = _stochastic(make_ghyena), make_ghyena(energy_scale=0.05, seed=2)
    other = water_like.replace(positions=water_like.positions + 0.1)
    batch = Batch.from_systems([water_like, other])

    def prop():
        return LearnedPropagator(dyn, 300.0, 0.002, energy_model=ff, sample=True, seed=1)

    full = Simulation(prop(), batch, temperature_k=300.0, guard=None)
    full.run(6)
    ckpt = tmp_path / "lps.safetensors"
    part = Simulation(prop(), batch, [CheckpointReporter(ckpt, 3)], temperature_k=300.0, guard=None)
    part.run(4)
    part.close()
    resumed = Simulation.from_checkpoint(ckpt, prop(), guard=None)
    assert resumed.state.step == 3
    resumed.run_to(6)
    assert torch.equal(resumed.state.positions, full.state.positions)
    assert torch.equal(resumed.state.velocities, full.state.velocities)
    assert torch.equal(resumed.state.energy, full.state.energy)


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
