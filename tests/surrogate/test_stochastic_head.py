"""The stochastic large-step head: equivariant means, invariant log σ, the Gaussian NLL and its optimum."""

from __future__ import annotations

import math

import torch

from hyenamd.surrogate.stochastic_head import (
    StochasticDynamicsHead,
    gaussian_nll,
    noise_fraction,
    sample_stride,
)


def _orthogonal(seed: int, reflect: bool) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    if (torch.det(q) < 0) != reflect:
        q = q.clone()
        q[:, 0] = -q[:, 0]
    return q


def test_means_rotate_and_sigmas_are_invariant():
    torch.manual_seed(0)
    head = StochasticDynamicsHead(8, 4, horizon_fs=200.0, n_species=2).double()
    with torch.no_grad():  # non-trivial weights everywhere (no zero-initialised output)
        for p in head.parameters():
            p.add_(0.3 * torch.randn_like(p))
    g = torch.Generator().manual_seed(1)
    s = torch.randn(7, 8, generator=g, dtype=torch.float64)
    v = torch.randn(7, 4, 3, generator=g, dtype=torch.float64)
    u = 1e-3 * torch.randn(7, 3, generator=g, dtype=torch.float64)
    z = torch.tensor([0, 1, 0, 1, 1, 0, 0])
    out = head(s, v, u, z)
    assert out["log_sigma_x"].shape == (7,) and out["log_sigma_v"].shape == (7,)
    assert out["log_sigma_x"].std() > 0  # heteroscedastic: σ differs between atoms
    for reflect in (False, True):
        q = _orthogonal(2, reflect)
        rot = head(s, v @ q.T, u @ q.T, z)
        assert torch.allclose(rot["displacement"], out["displacement"] @ q.T, atol=1e-12)
        assert torch.allclose(rot["velocities"], out["velocities"] @ q.T, atol=1e-14)
        for k in ("log_sigma_x", "log_sigma_v", "rho_xv"):
            assert torch.allclose(rot[k], out[k], atol=1e-12)
    assert float(out["rho_xv"].detach().abs().max()) > 0


def test_nll_matches_torch_and_its_optimum_is_the_residual_variance():
    g = torch.Generator().manual_seed(3)
    mean = torch.randn(50, 3, generator=g, dtype=torch.float64)
    target = mean + 0.3 * torch.randn(50, 3, generator=g, dtype=torch.float64)
    ls = 0.2 * torch.randn(50, generator=g, dtype=torch.float64)
    ref = torch.nn.GaussianNLLLoss(full=False, reduction="mean")(
        mean, target, torch.exp(2 * ls).unsqueeze(-1).expand(50, 3)
    )
    assert torch.allclose(gaussian_nll(mean, target, ls), ref, atol=1e-12)
    # one shared log σ: the NLL is stationary (and minimal) at σ² = mean squared residual
    mse = float((target - mean).pow(2).mean())
    c = torch.tensor(0.5 * math.log(mse), dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(gaussian_nll(mean, target, c.expand(50)), c)
    assert abs(float(grad)) < 1e-12
    with torch.no_grad():
        at = gaussian_nll(mean, target, c.expand(50))
        for dc in (-0.05, 0.05):
            assert gaussian_nll(mean, target, (c + dc).expand(50)) > at


def test_noise_fraction_and_sampling():
    g = torch.Generator().manual_seed(4)
    target = torch.randn(20000, 3, generator=g, dtype=torch.float64)
    ls = torch.full((20000,), 0.5 * math.log(0.24), dtype=torch.float64)
    assert abs(float(noise_fraction(ls, target)) - 0.24) < 0.01
    out = {
        "displacement": torch.zeros(20000, 3, dtype=torch.float64),
        "velocities": torch.ones(20000, 3, dtype=torch.float64),
        "log_sigma_x": torch.full((20000,), math.log(0.5), dtype=torch.float64),
        "log_sigma_v": torch.full((20000,), math.log(0.1), dtype=torch.float64),
    }
    d, v = sample_stride(out, torch.Generator().manual_seed(5))
    assert abs(float(d.std()) - 0.5) < 0.01 and abs(float(v.mean()) - 1.0) < 0.005
    assert abs(float(v.std()) - 0.1) < 0.002
    out["rho_xv"] = torch.full((20000,), 0.7, dtype=torch.float64)  # correlated x–v noise
    d, v = sample_stride(out, torch.Generator().manual_seed(5))
    assert abs(float(v.std()) - 0.1) < 0.002 and abs(float(d.std()) - 0.5) < 0.01
    assert abs(float(torch.corrcoef(torch.stack([d.ravel(), v.ravel()]))[0, 1]) - 0.7) < 0.01


def test_joint_nll_is_the_bivariate_gaussian():
    """Marginal of Δx + conditional of v' | Δx = −log N₂((Δx, v'); μ, Σ) − log 2π, per component."""
    from hyenamd.surrogate.losses import stochastic_dynamics_loss

    g = torch.Generator().manual_seed(6)
    n = 40
    mx, mv, tx, tv = torch.randn(4, n, 3, generator=g, dtype=torch.float64)
    lsx, lsv = 0.3 * torch.randn(2, n, generator=g, dtype=torch.float64)
    rho = 0.9 * torch.tanh(torch.randn(n, generator=g, dtype=torch.float64))
    sx, sv = lsx.exp(), lsv.exp()
    cov = torch.stack(
        [torch.stack([sx * sx, rho * sx * sv], -1), torch.stack([rho * sx * sv, sv * sv], -1)], -2
    )  # [n, 2, 2]
    dist = torch.distributions.MultivariateNormal(
        torch.stack([mx, mv], -1), covariance_matrix=cov[:, None].expand(n, 3, 2, 2)
    )
    want = (-dist.log_prob(torch.stack([tx, tv], -1))).mean() - math.log(2 * math.pi)
    loss, parts = stochastic_dynamics_loss(
        mx, tx, mv, tv, lsx, lsv, rho,
        position_weight=1.0, velocity_weight=1.0, position_scale=1.0, velocity_scale=1.0,
    )  # fmt: skip
    assert torch.allclose(loss, want, atol=1e-12)
    assert torch.allclose(parts["xv_correlation"], rho.mean())
    # ρ = 0 (or no ρ): the product of the two marginals
    indep, _ = stochastic_dynamics_loss(
        mx, tx, mv, tv, lsx, lsv,
        position_weight=1.0, velocity_weight=1.0, position_scale=1.0, velocity_scale=1.0,
    )  # fmt: skip
    assert torch.allclose(indep, gaussian_nll(mx, tx, lsx) + gaussian_nll(mv, tv, lsv), atol=1e-14)


# --------------------------------------------------------------------------- in the model
def _stochastic_model(seed: int = 7):
    from hyenamd.surrogate import GHyena, GHyenaConfig
    from hyenamd.testing import perturb_parameters

    cfg = GHyenaConfig(
        species=(1, 8, 18), cutoff=4.0, n_scalar=8, n_vector=4, n_rbf=4, pattern=("local", "global"),
        heads=("energy", "stochastic_dynamics"), dynamics_horizon_fs=20.0, dtype="float64", seed=seed,
    )  # fmt: skip
    return perturb_parameters(GHyena(cfg), std=0.2, seed=seed)


def _batch():
    from hyenamd import Batch
    from hyenamd.testing import lj_argon, maxwell_boltzmann, water_trimer

    systems = [water_trimer(), lj_argon(2, rattle=0.2, seed=2)]
    return Batch.from_systems([maxwell_boltzmann(s, 300.0, seed=k) for k, s in enumerate(systems)])


def test_model_head_option_outputs_and_reference():
    """heads: [energy, stochastic_dynamics]: means and log σ per atom, equal to the O(N²) reference."""
    import pytest

    from hyenamd.surrogate import GHyenaConfig
    from hyenamd.surrogate.reference import reference_forward

    with pytest.raises(ValueError, match="not both"):
        GHyenaConfig(species=(18,), heads=("energy", "dynamics", "stochastic_dynamics"))
    m, b = _stochastic_model(), _batch()
    assert isinstance(m.dynamics_head, StochasticDynamicsHead) and m.cfg.has_dynamics
    with torch.no_grad():
        fast, ref = m(b), reference_forward(m, b)
    assert {"displacement", "velocities", "log_sigma_x", "log_sigma_v", "rho_xv"} <= fast.keys()
    assert fast.keys() == ref.keys()
    for k in fast:
        scale = max(1.0, float(ref[k].abs().max()))
        assert (fast[k] - ref[k]).abs().max() <= 1e-10 * scale, k
    assert fast["log_sigma_v"].shape == (b.n_atoms,) and float(fast["log_sigma_v"].std()) > 0


def test_model_sigmas_invariant_means_equivariant():
    """Fresh evaluations of the whole model: means rotate/reflect, log σ is invariant (and re-wrap)."""
    from hyenamd.testing import assert_equivariant, lj_argon, maxwell_boltzmann

    m = _stochastic_model()
    system = maxwell_boltzmann(lj_argon(2, rattle=0.2, seed=2), 300.0, seed=1)
    names = ["displacement", "velocities", "log_sigma_x", "log_sigma_v", "rho_xv"]
    kinds = {
        "displacement": "vector",
        "velocities": "vector",
        "log_sigma_x": "scalar",
        "log_sigma_v": "scalar",
        "rho_xv": "scalar",
    }
    assert_equivariant(m, system, outputs=names, kinds=kinds)


def test_checkpoint_round_trip(tmp_path):
    from hyenamd.surrogate import describe_checkpoint, load_model, save_model

    m, b = _stochastic_model(), _batch()
    path = save_model(m, tmp_path / "stoch.safetensors", task="dynamics")
    back = load_model(path)
    assert isinstance(back.dynamics_head, StochasticDynamicsHead)
    with torch.no_grad():
        a, c = m(b), back(b)
    for k in a:
        assert torch.equal(a[k], c[k]), k
    assert "stochastic_dynamics (horizon 20.0 fs)" in describe_checkpoint(path)
