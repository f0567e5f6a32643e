"""The demo reuses a reference store only when it was made with the same settings (its provenance)."""

from __future__ import annotations

import dataclasses
import pathlib

from hyenamd.config import load_config
from hyenamd.workflows.demo import DemoConfig
from hyenamd.workflows.demo_stages import reference_stage

TINY = pathlib.Path(__file__).resolve().parents[2] / "configs" / "demo_tiny.yaml"


def test_reference_is_reused_only_with_the_same_settings(tmp_path):
    cfg = load_config(
        TINY, DemoConfig, [f"output_dir={tmp_path}", "reference.n_steps=200", "heldout_steps=100"]
    )
    said: list[str] = []
    reference_stage(cfg, tmp_path, echo=said.append)
    said.clear()
    reference_stage(cfg, tmp_path, echo=said.append)
    assert sum("reusing" in m for m in said) == 2
    hotter = dataclasses.replace(
        cfg, reference=dataclasses.replace(cfg.reference, melt_temperature_k=200.0, melt_steps=20)
    )
    said.clear()
    reference_stage(hotter, tmp_path, echo=said.append)
    assert not any("reusing" in m for m in said)
    assert sum("other settings" in m for m in said) == 2
