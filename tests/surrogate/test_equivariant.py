"""Scale-relative norms and zero-init: a fresh model's vector path is alive on a real water box."""

from __future__ import annotations

import math
import pathlib

import numpy as np
import pytest
import torch

from hyenamd import Batch, System
from hyenamd.config import load_config
from hyenamd.surrogate import GHyena, GHyenaConfig, compute_forces
from hyenamd.surrogate import global_block as gb
from hyenamd.surrogate.equivariant import GatedEquivariantMLP, SmoothNorm, vector_norm

ROOT = pathlib.Path(__file__).resolve().parents[2]


def water_box(n: int = 4, seed: int = 0) -> System:
    """``n³`` rigid-geometry waters on a rattled cubic grid (3.10 Å: 1 g/cm³), random orientations."""
    rng = np.random.default_rng(seed)
    r_oh, ang, a = 0.9572, math.radians(104.52), 3.104
    mol = np.array([[0, 0, 0], [r_oh, 0, 0], [r_oh * math.cos(ang), r_oh * math.sin(ang), 0]])
    pos = [
        mol @ np.linalg.qr(rng.normal(size=(3, 3)))[0].T + a * (np.array(ix) + 0.5) + rng.normal(0, 0.1, 3)
        for ix in np.ndindex(n, n, n)
    ]
    x = torch.tensor(np.concatenate(pos))
    return System(x, [8, 1, 1] * n**3, cell=torch.eye(3, dtype=x.dtype) * n * a, pbc=True)


def test_smooth_norm_is_smooth_at_zero_and_linear_above_its_floor():
    norm = SmoothNorm(2, eps_init=1e-3).double()
    v = torch.zeros(1, 2, 3, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(norm(v).sum(), v)
    assert float(g.abs().max()) == 0.0  # no cone at 0
    big = torch.tensor([[[3.0, 0.0, 4.0], [0.0, 0.1, 0.0]]], dtype=torch.float64)
    assert torch.allclose(norm(big), torch.tensor([[5.0, 0.1]], dtype=torch.float64), atol=2e-3)
    assert torch.allclose(
        vector_norm(big, torch.tensor([1.0, 1.0], dtype=torch.float64)), vector_norm(big, 1.0)
    )


def test_fresh_gated_mlp_is_the_identity():
    mlp = GatedEquivariantMLP(6, 3).double()
    s, v = torch.randn(5, 6, dtype=torch.float64), torch.randn(5, 3, 3, dtype=torch.float64)
    so, vo = mlp(s, v)
    assert torch.equal(so, s) and torch.equal(vo, v)


@pytest.mark.parametrize("conv", ["linear", "circular"])
def test_vector_path_is_alive_at_initialisation_on_a_water_box(conv):
    """Median slope d⟨w⟩/d|w| ≥ 0.1 in every smooth norm (0.0018 under the old ε = 1) and the
    global vector pre-norm output RMS in [0.3, 3] (5e-3 before), preset S, fresh weights."""
    cfg = load_config(ROOT / "configs" / "surrogate" / "S.yaml", GHyenaConfig, [f"conv={conv}"])
    model = GHyena(cfg)
    slopes: dict[str, list[torch.Tensor]] = {}

    def hook(name):
        def record(mod, inputs, out):
            n = inputs[0].detach().norm(dim=-1)
            eps = mod.eps().detach()
            slopes.setdefault(name, []).append((n / torch.sqrt(n * n + eps * eps)).flatten())

        return record

    handles = [
        m.register_forward_hook(hook(k)) for k, m in model.named_modules() if isinstance(m, SmoothNorm)
    ]
    prenorm_rms = []
    original = gb.vector_rms_norm

    def spy(v, eps=1.0, gain=None):
        out = original(v, eps, gain)
        prenorm_rms.append(float(out.detach().pow(2).sum(-1).mean().sqrt()))
        return out

    gb.vector_rms_norm = spy
    try:
        out = compute_forces(model, Batch.from_system(water_box(4)).to(dtype=torch.float32))
    finally:
        gb.vector_rms_norm = original
        for h in handles:
            h.remove()
    assert len(slopes) == 2 + 2 + 2  # local updates, global ⟨p⟩, gated MLPs of the two global blocks
    for name, vals in slopes.items():
        assert float(torch.cat(vals).median()) >= 0.1, name
    assert len(prenorm_rms) == 2 and all(0.3 <= r <= 3.0 for r in prenorm_rms), prenorm_rms
    assert float(out["forces"].abs().max()) > 1e-4  # a fresh model is a non-trivial potential


@pytest.mark.parametrize("lead", [(), (7,), (2, 5)])
def test_vector_linear_equals_the_channel_contraction(lead):
    from hyenamd.surrogate.equivariant import vector_linear, vector_linear_pair

    g = torch.Generator().manual_seed(len(lead))
    v = torch.randn(*lead, 4, 3, dtype=torch.float64, generator=g).requires_grad_(True)
    w = torch.randn(6, 4, dtype=torch.float64, generator=g)
    out = vector_linear(v, w)
    ref = torch.einsum("oc,...cx->...ox", w, v)
    assert out.shape == (*lead, 6, 3) and torch.allclose(out, ref, rtol=0, atol=1e-14)
    assert torch.autograd.gradcheck(lambda x: vector_linear(x, w), (v,))
    w2 = torch.randn(2, 4, dtype=torch.float64, generator=g)
    a, b = vector_linear_pair(v, w, w2)
    assert torch.allclose(a, out, rtol=0, atol=1e-14)
    assert torch.allclose(b, vector_linear(v, w2), rtol=0, atol=1e-14)
