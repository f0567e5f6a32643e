"""The fast/chunked/lean memory regimes of energy + forces: fixed thresholds, the "auto" rule, the estimate."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from hyenamd import Batch
from hyenamd.surrogate import GHyena, GHyenaConfig, compute_forces
from hyenamd.surrogate.memory_policy import (
    AUTO_MEMORY_FRACTION,
    AUTO_MIN_ATOMS,
    available_memory,
    memory_regime,
    peak_bytes,
)
from hyenamd.workflows.demo import liquid_like_system

S = {"n_scalar": 32, "n_vector": 8, "n_blocks": 4, "pair_chunk": 65536}
SHAPE = (32, 8, 4, 65536)


def test_an_integer_threshold_is_the_fixed_rule():
    assert memory_regime(100, 100, 700, **S) == "lean" and memory_regime(100, 99, 700, **S) == "chunked"
    assert memory_regime(0, 1, 0, **S) == "lean"
    assert memory_regime(-1, 10**7, 10**8, **S) == "chunked"


def test_auto_is_fast_for_small_batches_whatever_the_memory():
    assert memory_regime("auto", AUTO_MIN_ATOMS - 1, 10**6, **S, available=1) == "fast"


def test_auto_takes_the_fast_regime_when_it_fits_its_share_of_memory_else_lean():
    """Fast and chunked run the same code since the fused pair messages: one estimate."""
    n, p = 10**6, 7 * 10**6
    fast = peak_bytes("fast", n, p, *SHAPE)
    assert peak_bytes("chunked", n, p, *SHAPE) == fast
    edge = int(fast / AUTO_MEMORY_FRACTION)
    assert memory_regime("auto", n, p, **S, available=edge - 1000) == "lean"
    assert memory_regime("auto", n, p, **S, available=edge + 1000) == "fast"


def test_the_estimates_are_linear_and_bracket_the_measured_peaks():
    a = peak_bytes("fast", 10**5, 7 * 10**5, *SHAPE)
    assert peak_bytes("fast", 2 * 10**5, 14 * 10**5, *SHAPE) == pytest.approx(2 * a)
    assert peak_bytes("fast", 10**5, 7 * 10**5, 64, 16, 4, 65536) > a
    assert peak_bytes("fast", 10**5, 7 * 10**5, 32, 8, 8, 65536) > a
    assert peak_bytes("lean", 10**5, 7 * 10**5, *SHAPE) == 0
    # preset S, 10⁵ atoms (BENCHMARKS.md, "Fused pair messages"; the largest of the runs): fast
    # 16.6 kB/atom at 7 pairs/atom, 27.4 at 34.5; each estimate above the measurement, < 1.5×
    for pairs, measured in ((7.0, 16_600), (34.5, 27_400)):
        est = peak_bytes("fast", 10**5, int(pairs * 10**5), *SHAPE) / 10**5
        assert measured < est < 1.5 * measured, (pairs, est)


def test_available_memory_is_a_positive_byte_count():
    got = available_memory()
    assert got is None or got > 0
    if got is not None:
        assert available_memory("cpu") == pytest.approx(got, rel=0.5)  # the host's, read again
    assert available_memory("meta") is None  # a device without a memory query: unknown


def test_auto_plans_against_the_memory_of_the_calls_device():
    """The regime is chosen against the memory where the call's tensors live: 10⁹ atoms do not fit
    in this host's memory (lean), while a device whose memory is unknown counts as plenty (fast)."""
    n, p = 10**9, 7 * 10**9
    assert memory_regime("auto", n, p, **S) == "lean"
    assert memory_regime("auto", n, p, **S, device="cpu") == "lean"
    assert memory_regime("auto", n, p, **S, device="meta") == "fast"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_available_memory_on_cuda_is_the_devices():
    total = torch.cuda.get_device_properties(0).total_memory
    before = available_memory("cuda")
    x = torch.empty(1 << 28, dtype=torch.uint8, device="cuda")  # 256 MiB held
    held = available_memory("cuda")
    del x  # back to torch's cache: available again
    assert 0 < held < before <= total
    assert before - held == pytest.approx(1 << 28, rel=0.1)
    assert available_memory("cuda") == pytest.approx(before, rel=0.01)


def test_every_regime_gives_the_same_forces():
    """The regime changes what is kept for the backward pass, never a value (fresh evaluations):
    auto (fast: fused pair chunks), 0 (lean: blocks and plain-op chunks recomputed), -1 (chunked)."""
    torch.manual_seed(0)
    system = liquid_like_system(200, 0.021, seed=3)
    base = GHyenaConfig(
        species=(18,), n_scalar=8, n_vector=4, dtype="float64", residual_init="default", pair_chunk=300
    )
    batch = Batch.from_system(system).to(dtype=torch.float64)
    outs = []
    for ckpt in ("auto", 0, -1):
        model = GHyena(dataclasses.replace(base, checkpoint_atoms=ckpt))
        outs.append(compute_forces(model, batch))
    assert float(outs[0]["forces"].abs().max()) > 1e-6
    for other in outs[1:]:
        torch.testing.assert_close(other["forces"], outs[0]["forces"], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(other["energy"], outs[0]["energy"], rtol=1e-12, atol=0)


@pytest.mark.parametrize("bad", [-2, "fast", 1.5, True])
def test_bad_values_are_refused(bad):
    with pytest.raises(ValueError, match="checkpoint_atoms"):
        GHyenaConfig(checkpoint_atoms=bad)


@pytest.mark.slow
def test_a_batch_above_the_auto_threshold_gives_the_same_forces_in_every_regime():
    """20 000 atoms, several pair chunks: "auto" (which reads the available memory here) agrees
    with the forced lean and chunked regimes (float64, fresh evaluations)."""
    system = liquid_like_system(AUTO_MIN_ATOMS, 0.021, seed=5)
    base = GHyenaConfig(
        species=(18,),
        n_scalar=4,
        n_vector=2,
        n_rbf=4,
        dtype="float64",
        residual_init="default",
        pair_chunk=40_000,
    )
    batch = Batch.from_system(system).to(dtype=torch.float64)
    outs = [
        compute_forces(GHyena(dataclasses.replace(base, checkpoint_atoms=c)), batch) for c in ("auto", 0, -1)
    ]
    assert float(outs[0]["forces"].abs().max()) > 1e-6
    for other in outs[1:]:
        torch.testing.assert_close(other["forces"], outs[0]["forces"], rtol=1e-10, atol=1e-12)
