"""GHyenaConfig.residual_init / norm_eps / learn_norm_eps: what they set, and the oracle still holds."""

from __future__ import annotations

import math

import pytest
import torch

from hyenamd import Batch
from hyenamd.surrogate import GHyena, GHyenaConfig, load_model, save_model
from hyenamd.surrogate.equivariant import SmoothNorm
from hyenamd.testing import assert_matches_reference, lj_argon, rattled_cu, water_trimer

OPTS = dict(residual_init="default", norm_eps=1.0, learn_norm_eps=False)


def cfg(**kw) -> GHyenaConfig:
    base = dict(
        species=(1, 8, 18, 29),
        cutoff=4.0,
        n_scalar=8,
        n_vector=4,
        n_rbf=5,
        avg_neighbors=6.0,
        pattern=("local", "global", "local", "global"),
        filter_order=8,
        filter_w_init=16.0,
        filter_w_cap=64.0,
        dtype="float64",
    )
    return GHyenaConfig(**{**base, **kw})


def test_defaults_are_zero_residuals_and_learned_floors():
    m = GHyena(cfg())
    assert not m.blocks[0].update_mlp[-1].weight.any() and not m.blocks[1].out_s.weight.any()
    norms = [x for x in m.modules() if isinstance(x, SmoothNorm)]
    assert norms and all(x.log_eps.requires_grad for x in norms)
    assert all(torch.allclose(x.eps(), torch.tensor(1e-3, dtype=torch.float64)) for x in norms)


def test_options_set_random_residuals_and_frozen_absolute_floors():
    m = GHyena(cfg(**OPTS))
    assert m.blocks[0].update_mlp[-1].weight.any() and m.blocks[1].out_s.weight.any()
    assert m.blocks[1].mlp.mlp[-1].weight.any()
    assert m.blocks[1].prenorm_eps == 1.0
    frozen = {n for n, p in m.named_parameters() if not p.requires_grad}
    assert frozen and all(n.endswith("log_eps") for n in frozen)
    assert all(math.isclose(float(x.eps().max()), 1.0) for x in m.modules() if isinstance(x, SmoothNorm))
    # the same seed gives the same weights
    assert all(
        torch.equal(a, b) for a, b in zip(m.state_dict().values(), GHyena(cfg(**OPTS)).state_dict().values())
    )


@pytest.mark.parametrize("bad", [dict(residual_init="small"), dict(norm_eps=0.0)])
def test_bad_options_are_refused(bad):
    with pytest.raises(ValueError):
        cfg(**bad)


def test_reference_oracle_with_the_options():
    b = Batch.from_systems([water_trimer(), rattled_cu(seed=1), lj_argon(2, rattle=0.2, seed=2)])
    assert_matches_reference(GHyena(cfg(**OPTS)), b)


def test_checkpoint_keeps_the_options(tmp_path):
    m = GHyena(cfg(**OPTS))
    back = load_model(save_model(m, tmp_path / "m.safetensors"))
    assert back.cfg.residual_init == "default" and back.blocks[1].prenorm_eps == 1.0
    assert not any(p.requires_grad for n, p in back.named_parameters() if n.endswith("log_eps"))
