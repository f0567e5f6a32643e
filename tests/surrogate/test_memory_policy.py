"""The fast/lean memory regime of energy + forces: fixed thresholds, the "auto" rule, the estimate."""

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
    fast_peak_bytes,
    use_lean_memory,
)
from hyenamd.workflows.demo import liquid_like_system

S = {"n_scalar": 32, "n_vector": 8, "n_blocks": 4}


def test_an_integer_threshold_is_the_old_rule():
    assert use_lean_memory(100, 100, 700, **S) and not use_lean_memory(100, 99, 700, **S)
    assert use_lean_memory(0, 1, 0, **S)
    assert not use_lean_memory(-1, 10**7, 10**8, **S)


def test_auto_is_fast_for_small_batches_whatever_the_memory():
    assert not use_lean_memory("auto", AUTO_MIN_ATOMS - 1, 10**6, **S, available=1)


def test_auto_goes_lean_exactly_when_the_estimate_exceeds_its_share_of_memory():
    n, p = 10**6, 7 * 10**6
    need = fast_peak_bytes(n, p, 32, 8, 4)
    edge = int(need / AUTO_MEMORY_FRACTION)
    assert use_lean_memory("auto", n, p, **S, available=edge - 1000)
    assert not use_lean_memory("auto", n, p, **S, available=edge + 1000)


def test_the_estimate_is_linear_in_atoms_and_pairs_and_grows_with_width():
    a = fast_peak_bytes(10**5, 7 * 10**5, 32, 8, 4)
    assert fast_peak_bytes(2 * 10**5, 14 * 10**5, 32, 8, 4) == pytest.approx(2 * a)
    assert fast_peak_bytes(10**5, 35 * 10**5, 32, 8, 4) > a
    assert fast_peak_bytes(10**5, 7 * 10**5, 64, 16, 4) > a
    assert fast_peak_bytes(10**5, 7 * 10**5, 32, 8, 8) > a
    # preset S at argon density, 10⁵ atoms: measured 16.5 kB/atom; the estimate keeps a margin
    assert 16_500 * 10**5 < a < 2 * 16_500 * 10**5


def test_available_memory_is_a_positive_byte_count():
    got = available_memory()
    assert got is None or got > 0


def test_auto_and_fixed_thresholds_give_the_same_forces():
    """The regime changes what is kept for the backward pass, never a value (fresh evaluations):
    auto (fast: chunks kept), 0 (blocks and chunks recomputed), -1 (chunks recomputed)."""
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
