"""The YAML presets of configs/validate/ load into ValidateConfig; unknown keys and bad values fail."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from hyenamd.config import ConfigError, load_config, to_dict
from hyenamd.validate import Thresholds, ValidateConfig

PRESETS = sorted((Path(__file__).parents[2] / "configs" / "validate").glob("*.yaml"))


def test_presets_exist():
    assert {p.stem for p in PRESETS} >= {"default", "water", "protein", "tiny"}


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_preset_loads(path):
    cfg = load_config(path, ValidateConfig)
    assert isinstance(cfg.thresholds, Thresholds)


def test_default_preset_is_the_dataclass_default():
    cfg = load_config(PRESETS[[p.stem for p in PRESETS].index("default")], ValidateConfig)
    assert to_dict(cfg) == to_dict(ValidateConfig())


def test_overrides_and_errors():
    cfg = load_config(None, ValidateConfig, ["thresholds.max_rdf_mae=0.02", "rdf_pairs=[O-O]"])
    assert cfg.thresholds.max_rdf_mae == 0.02 and cfg.rdf_pairs == ("O-O",)
    assert load_config(None, ValidateConfig, ["thresholds.max_vacf_mae=null"]).thresholds.max_vacf_mae is None
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(None, ValidateConfig, ["thresholds.max_rdf=1"])
    with pytest.raises(ConfigError, match="rmsf_selection"):
        load_config(None, ValidateConfig, ["rmsf_selection=everything"])
    with pytest.raises(ConfigError, match="msd_origins"):
        load_config(None, ValidateConfig, ["msd_origins=0"])
    assert dataclasses.is_dataclass(ValidateConfig) and ValidateConfig.__dataclass_params__.frozen
