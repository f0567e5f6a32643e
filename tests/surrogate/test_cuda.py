"""The G-Hyena model and its kernels on a CUDA device give the CPU's numbers (float64).

Skipped where no CUDA device is present (CI); run on a GPU machine as part of the device check
(``benchmarks/gpu_scale.py`` runs this file first). Fresh evaluations throughout: every call
builds its own neighbour list and order.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from hyenamd import Batch
from hyenamd.surrogate import GHyena, GHyenaConfig, compute_forces
from hyenamd.surrogate import fftconv as fc
from hyenamd.surrogate.geometric_conv import geometric_convs_cf
from hyenamd.workflows.demo import liquid_like_system

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

DT = torch.float64
BASE = GHyenaConfig(species=(18,), n_scalar=8, n_vector=4, dtype="float64", residual_init="default")


@pytest.mark.parametrize("conv", ["circular", "linear"])
@pytest.mark.parametrize("sizes", [[40], [300], [120, 77]], ids=["dft-path", "fft-path", "padded-batch"])
def test_energy_forces_stress_equal_the_cpus(conv, sizes):
    torch.manual_seed(0)
    model = GHyena(dataclasses.replace(BASE, conv=conv))
    systems = [liquid_like_system(n, 0.021, seed=k) for k, n in enumerate(sizes)]
    batch = Batch.from_systems(systems).to(dtype=DT)
    cpu = compute_forces(model, batch, stress=True)
    gpu = compute_forces(model.to("cuda"), batch.to("cuda"), stress=True)
    assert float(cpu["forces"].abs().max()) > 1e-6
    for key in ("energy", "forces", "stress"):
        torch.testing.assert_close(gpu[key].cpu(), cpu[key], rtol=1e-10, atol=1e-12)


def test_every_memory_regime_gives_the_same_forces_on_cuda():
    torch.manual_seed(1)
    batch = Batch.from_system(liquid_like_system(300, 0.021, seed=2)).to(device="cuda", dtype=DT)
    outs = [
        compute_forces(
            GHyena(dataclasses.replace(BASE, checkpoint_atoms=c, pair_chunk=500)).to("cuda"), batch
        )
        for c in ("auto", 0, -1)
    ]
    for other in outs[1:]:
        torch.testing.assert_close(other["forces"], outs[0]["forces"], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("circular", [False, True], ids=["linear", "circular"])
def test_geometric_convs_equal_the_direct_oracles_on_cuda(circular):
    gen = torch.Generator().manual_seed(3)
    lengths = torch.tensor([23, 10, 17])
    b, length, f, c = 3, 23, 5, 3
    mask = fc.sequence_mask(lengths, length).to(DT)
    r = lambda *s: torch.randn(b, length, *s, dtype=DT, generator=gen) * mask.view(b, length, *([1] * len(s)))  # noqa: E731
    q_s, k_s, q_m, q_v, k_v = r(f), r(f), r(c), r(c, 3), r(c, 3)
    cf = [q_s.mT, k_s.mT, q_m.mT, q_v.permute(0, 2, 3, 1), k_v.permute(0, 2, 3, 1)]
    outs = geometric_convs_cf(*[x.contiguous().cuda() for x in cf], lengths.cuda(), circular=circular)
    kw = {"circular": circular}
    refs = (
        fc.direct_scalar_conv(q_s, k_s, lengths, **kw).mT,
        fc.direct_cross_conv(q_v, k_v, lengths, **kw).permute(0, 2, 3, 1),
        fc.direct_scalar_vector_conv(q_m, k_v, lengths, **kw).permute(0, 2, 3, 1),
        fc.direct_dot_conv(q_v, k_v, lengths, **kw).mT,
    )
    for out, ref in zip(outs, refs):
        torch.testing.assert_close(out.cpu(), ref, rtol=1e-10, atol=1e-12)
