"""Radial basis and the C² cutoff envelope (float64)."""

from __future__ import annotations

import math

import pytest
import torch

from hyenamd.surrogate.radial import RadialEmbedding, bessel_basis, gaussian_basis, polynomial_envelope

DT = torch.float64


def derivatives(fn, r0: float):
    """Value, first and second derivative of a scalar function at r0 by autograd."""
    r = torch.tensor([r0], dtype=DT, requires_grad=True)
    y = fn(r).sum()
    (d1,) = torch.autograd.grad(y, r, create_graph=True)
    (d2,) = torch.autograd.grad(d1.sum(), r)
    return float(y.detach()), float(d1.detach()), float(d2)


@pytest.mark.parametrize("p", [2, 5, 6, 9])
def test_envelope_is_one_at_zero_and_c2_zero_at_cutoff(p):
    rc = 4.5
    assert float(polynomial_envelope(torch.tensor([0.0], dtype=DT), rc, p)) == 1.0
    for r0 in (rc - 1e-7, rc, rc + 0.3):
        y, d1, d2 = derivatives(lambda r: polynomial_envelope(r, rc, p), r0)
        assert abs(y) < 1e-12 and abs(d1) < 1e-10 and abs(d2) < 1e-5
    # inside: strictly decreasing from 1 to 0, values in [0, 1]
    r = torch.linspace(0, rc, 401, dtype=DT)
    u = polynomial_envelope(r, rc, p)
    assert bool((u[1:] <= u[:-1] + 1e-15).all()) and float(u.min()) >= 0.0 and float(u.max()) == 1.0


def test_envelope_derivative_matches_closed_form():
    rc, p = 5.0, 6
    for r0 in (0.7, 2.5, 4.4):
        d = r0 / rc
        _, d1, _ = derivatives(lambda r: polynomial_envelope(r, rc, p), r0)
        closed = -p * (p + 1) * (p + 2) / 2 * d ** (p - 1) * (1 - d) ** 2 / rc
        assert abs(d1 - closed) < 1e-12


def test_bessel_basis_formula_and_zero_at_cutoff():
    rc, k = 5.0, 7
    r = torch.tensor([0.3, 1.1, 2.9, 4.99], dtype=DT)
    b = bessel_basis(r, rc, k)
    assert b.shape == (4, k)
    for a, ra in enumerate(r.tolist()):
        for n in range(1, k + 1):
            want = math.sqrt(2 / rc) * math.sin(n * math.pi * ra / rc) / ra
            assert abs(float(b[a, n - 1]) - want) < 1e-13
    assert float(bessel_basis(torch.tensor([rc], dtype=DT), rc, k).abs().max()) < 1e-15


def test_gaussian_basis_centres_and_width():
    rc, k = 6.0, 4
    b = gaussian_basis(torch.tensor([0.0, 2.0, 4.0, 6.0], dtype=DT), rc, k)
    assert torch.allclose(b.diagonal(), torch.ones(4, dtype=DT))  # centre k sits at r = 2k
    assert abs(float(b[0, 1]) - math.exp(-0.5 * (2.0 / 1.5) ** 2)) < 1e-14


def test_radial_embedding_shapes_dtype_and_errors():
    emb = RadialEmbedding(5.0, 8, "gaussian")
    basis, env = emb(torch.rand(10, dtype=torch.float32) * 6 + 0.1)
    assert basis.shape == (10, 8) and env.shape == (10,) and basis.dtype == torch.float32
    with pytest.raises(ValueError, match="radial basis"):
        RadialEmbedding(5.0, 8, "chebyshev")
    with pytest.raises(ValueError, match="cutoff > 0"):
        RadialEmbedding(-1.0, 8)
    with pytest.raises(ValueError, match="p must be >= 2"):
        polynomial_envelope(torch.ones(1), 1.0, 1)
