"""The end-to-end demo with the tiny config: every stage runs and the reports hold the metrics."""

from __future__ import annotations

import json
import pathlib

import pytest

from hyenamd.config import load_config
from hyenamd.workflows.demo import DemoConfig, run_demo

pytest.importorskip("openmm")
ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_demo_tiny_end_to_end(tmp_path) -> None:
    cfg = load_config(ROOT / "configs" / "demo_tiny.yaml", DemoConfig, [f"output_dir={tmp_path}"])
    lines: list[str] = []
    summary = run_demo(cfg, echo=lines.append)
    text = "\n".join(lines)
    for stage in ("[0/5]", "[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]"):
        assert stage in text
    assert (tmp_path / "summary.json").exists()
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["openmm"]["simulated_fs_per_wall_s"] > 0
    for name in ("force_field_md", "large_step"):
        rep = tmp_path / "report" / name
        assert (rep / "report.md").exists() and (rep / "report.html").exists()
        metrics = json.loads((rep / "metrics.json").read_text())
        names = {m["name"] for m in metrics["metrics"]}
        assert "rdf_mae[Ar-Ar]" in names and "blowup_time" in names
        assert "rdf_mae[Ar-Ar]" in (rep / "report.md").read_text()
    assert "force_rel_rmse" in summary["validation"]["force_field_md"]["metrics"]
    for name in ("force_field_md", "large_step"):  # an exact run of the rollout's length, judged alike
        assert "rdf_mae[Ar-Ar]" in summary["validation"][name]["baseline_run"]
        assert (tmp_path / f"baseline_{name}.h5").exists()
    assert "baseline run" in text
    assert "group" in text and "rdf_mae[Ar-Ar]" in text  # the printed metrics table
    assert (tmp_path / "force_field" / "best.safetensors").exists()
    assert (tmp_path / "dynamics" / "loss_curve.png").exists()


def test_demo_config_rejects_unknown_keys(tmp_path) -> None:
    from hyenamd.config import ConfigError

    with pytest.raises(ConfigError):
        load_config(ROOT / "configs" / "demo_tiny.yaml", DemoConfig, ["no_such_key=1"])


def test_shipped_configs_parse() -> None:
    from hyenamd.workflows.train import TrainConfig

    # configs/demo.yaml spells out the defaults (make demo runs without --config)
    assert load_config(ROOT / "configs" / "demo.yaml", DemoConfig) == DemoConfig()
    for path in sorted((ROOT / "configs" / "train").glob("*.yaml")):
        load_config(path, TrainConfig)
