"""Bad configs and command lines: one line on stderr naming the problem and the file, exit 2,
nothing written (``--debug`` shows the traceback)."""

from __future__ import annotations

import pytest

from hyenamd.cli import main
from hyenamd.config import ConfigError, load_config
from hyenamd.engine.reference import ReferenceConfig
from hyenamd.workflows.train import TrainConfig

from .conftest import tree_hash

YAML_CASES = {
    # name: (file text, words the message must contain)
    "temperature NaN": ("temperature_k: .nan\n", "temperature_k"),
    "dt inf": ("dt_fs: .inf\n", "dt_fs"),
    "dt -inf": ("dt_fs: -.inf\n", "finite"),
    "dt NaN string": ("dt_fs: nan\n", "finite"),
    "duplicate key": ("n_steps: 10\nn_steps: 20\n", "duplicate key 'n_steps'"),
    "duplicate nested-free key": ("system: argon\nseed: 1\nsystem: water\n", "duplicate key 'system'"),
    "unknown key": ("n_step: 10\n", "unknown key 'n_step'"),
    "wrong type": ("n_steps: ten\n", "n_steps"),
    "bool for int": ("n_steps: true\n", "n_steps"),
    "bad literal": ("system: neon\n", "system"),
    "not a mapping": ("- 1\n- 2\n", "must hold a mapping"),
    "invalid YAML": ("n_steps: [1,\n", "not valid YAML"),
    "python tag": ("n_steps: !!python/object/apply:os.system ['true']\n", "not valid YAML"),
}


@pytest.mark.parametrize("name", list(YAML_CASES))
def test_bad_yaml_config_is_refused_at_load(tmp_path, name):
    text, words = YAML_CASES[name]
    p = tmp_path / "cfg.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(p, ReferenceConfig)
    assert words in str(e.value) and str(p) in str(e.value)


def test_infinite_default_may_be_given_explicitly(tmp_path):
    """A field whose default is +inf (no limit) accepts .inf; every other float must be finite."""
    import dataclasses

    @dataclasses.dataclass(frozen=True)
    class Limits:
        max_temperature: float = float("inf")

    p = tmp_path / "l.yaml"
    p.write_text("max_temperature: .inf\n")
    assert load_config(p, Limits).max_temperature == float("inf")


def test_undecodable_config_file(tmp_path):
    p = tmp_path / "cfg.yaml"
    p.write_bytes(b"\xff\xfe\x00garbage\x80")
    with pytest.raises(ConfigError, match="cfg.yaml"):
        load_config(p, ReferenceConfig)


def test_directory_as_config(tmp_path):
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path, ReferenceConfig)


OVERRIDE_CASES = {
    "typo key": ("n_step=5", "unknown key 'n_step'"),
    "no equals": ("n_steps", "must look like key.sub=value"),
    "bad YAML value": ("n_steps=[1,", "not valid YAML"),
    "empty key part": ("a..b=1", "empty part"),
    "NaN value": ("temperature_k=.nan", "finite"),
    "override into a scalar": ("seed.x=1", "'seed'"),
    "override through a given scalar": ("n_steps.x=1", "not a mapping"),
    "duplicate in value": ("seed={a: 1, a: 2}", "duplicate key"),
}


@pytest.mark.parametrize("name", list(OVERRIDE_CASES))
def test_bad_set_override_is_one_line(tmp_path, capsys, name):
    override, words = OVERRIDE_CASES[name]
    cfg = tmp_path / "ref.yaml"
    cfg.write_text(f"output: {tmp_path / 'out.h5'}\nn_steps: 2\n")
    rc = main(["reference", str(cfg), "--set", override])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and words in err and "Traceback" not in err
    assert not (tmp_path / "out.h5").exists()


CLI_FILE_CASES = {
    "NaN temperature leaves no store": ("temperature_k: .nan\n", "temperature_k"),
    "inf dt leaves no store": ("dt_fs: .inf\n", "dt_fs"),
    "duplicate keys": ("n_steps: 1\nn_steps: 2\n", "duplicate key"),
}


@pytest.mark.parametrize("name", list(CLI_FILE_CASES))
def test_cli_config_errors_are_one_line_and_leave_nothing(tmp_path, capsys, name):
    text, words = CLI_FILE_CASES[name]
    cfg = tmp_path / "ref.yaml"
    cfg.write_text(f"output: {tmp_path / 'out.h5'}\n" + text)
    rc = main(["reference", str(cfg)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert words in err and str(cfg) in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ref.yaml"]


def test_cli_missing_config_file(tmp_path, capsys):
    rc = main(["reference", str(tmp_path / "nope.yaml")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "nope.yaml" in err


def test_cli_directory_as_config(tmp_path, capsys):
    rc = main(["train", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "is a directory" in err


def test_cli_debug_shows_the_traceback(tmp_path):
    cfg = tmp_path / "ref.yaml"
    cfg.write_text("n_step: 1\n")
    with pytest.raises(ConfigError):
        main(["--debug", "reference", str(cfg)])
    with pytest.raises(ConfigError):
        main(["reference", str(cfg), "--debug"])


def _train_cfg(tmp_path, out):
    cfg = tmp_path / "train.yaml"
    cfg.write_text(f"output_dir: {out}\ndata:\n  stores: [{tmp_path / 'missing.h5'}]\n")
    return cfg


def test_train_refuses_a_non_empty_output_dir(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "best.safetensors").write_bytes(b"previous model")
    (out / "history.json").write_text("{}")
    before = tree_hash(out)
    rc = main(["train", str(_train_cfg(tmp_path, out))])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "is not empty" in err and str(out) in err and "--overwrite" in err
    assert tree_hash(out) == before


def test_train_overwrite_passes_the_output_check(tmp_path, capsys):
    """--overwrite gets past the output-dir check (then fails on the missing data, not the dir)."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "best.safetensors").write_bytes(b"previous model")
    rc = main(["train", str(_train_cfg(tmp_path, out)), "--overwrite"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "not empty" not in err and "missing.h5" in err


def test_train_output_dir_that_is_a_file(tmp_path, capsys):
    out = tmp_path / "run"
    out.write_text("a file")
    rc = main(["train", str(_train_cfg(tmp_path, out))])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "is a file" in err and out.read_text() == "a file"


def test_train_config_class_refuses_nan_learning_rate(tmp_path):
    p = tmp_path / "t.yaml"
    p.write_text("training:\n  lr: .nan\n")
    with pytest.raises(ConfigError, match="training.lr"):
        load_config(p, TrainConfig)


def test_inspect_missing_file_is_one_line(tmp_path, capsys):
    rc = main(["inspect", str(tmp_path / "none.h5")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "none.h5" in err
