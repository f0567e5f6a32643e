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
        for k in ("log_sigma_x", "log_sigma_v"):
            assert torch.allclose(rot[k], out[k], atol=1e-12)


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
