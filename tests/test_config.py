"""YAML configs into frozen dataclasses, with errors that name the key and the file."""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Literal

import pytest

from hyenamd.config import ConfigError, from_dict, load_config, to_dict


@dataclasses.dataclass(frozen=True)
class Inner:
    width: int = 8
    act: Literal["silu", "tanh"] = "silu"


@dataclasses.dataclass(frozen=True)
class Outer:
    name: str
    lr: float = 1e-3
    sizes: tuple[int, ...] = (1, 2)
    inner: Inner = Inner()
    out: pathlib.Path | None = None
    tags: dict[str, float] = dataclasses.field(default_factory=dict)
    flag: bool = False

    def __post_init__(self):
        if self.lr <= 0:
            raise ValueError("lr must be positive")


def write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_load_full_config(tmp_path):
    p = write(
        tmp_path,
        "name: run\nlr: 1e-4\nsizes: [3, 4]\ninner: {width: 16, act: tanh}\nout: x/y\ntags: {a: 1}\n",
    )
    cfg = load_config(p, Outer)
    assert cfg == Outer("run", 1e-4, (3, 4), Inner(16, "tanh"), pathlib.Path("x/y"), {"a": 1.0})
    assert to_dict(cfg)["sizes"] == [3, 4] and to_dict(cfg)["out"] == "x/y"
    assert from_dict(Outer, to_dict(cfg)) == cfg


def test_overrides(tmp_path):
    p = write(tmp_path, "name: run\n")
    cfg = load_config(p, Outer, ["inner.width=32", "flag=true", "sizes=[5]"])
    assert cfg.inner.width == 32 and cfg.flag is True and cfg.sizes == (5,)


@dataclasses.dataclass(frozen=True)
class Parent:
    inner: Inner = dataclasses.field(default_factory=lambda: Inner(width=64, act="tanh"))
    deep: Outer = dataclasses.field(default_factory=lambda: Outer("d", lr=0.5, inner=Inner(4, "tanh")))


def test_partial_section_keeps_the_parents_defaults(tmp_path):
    """``--set inner.width=3`` (or a YAML section naming only some keys) changes those keys only:
    the rest stay the parent's default for that section, not the nested class's own defaults."""
    assert load_config(None, Parent, ["inner.width=3"]).inner == Inner(3, "tanh")
    cfg = load_config(None, Parent, ["deep.inner.act=silu", "deep.flag=true"])
    assert cfg.deep == Outer("d", lr=0.5, inner=Inner(4, "silu"), flag=True)
    assert load_config(write(tmp_path, "inner: {act: silu}\n"), Parent).inner == Inner(64, "silu")
    assert load_config(None, Parent) == Parent()
    with pytest.raises(ConfigError, match=r"unknown key 'deep\.inner\.wdth'"):
        load_config(None, Parent, ["deep.inner.wdth=1"])
    with pytest.raises(ConfigError, match=r"'deep\.lr' .* must be a number"):
        load_config(None, Parent, ["deep.lr=fast"])


def test_demo_overrides_keep_the_demo_section_defaults():
    """The bug this guards: ``--set dynamics.epochs=20`` without a YAML reset the demo's
    dynamics settings (noise 0.05 Å, task dynamics) to TrainSettings' class defaults."""
    from hyenamd.workflows.demo import DemoConfig

    base = DemoConfig()
    cfg = load_config(None, DemoConfig, ["dynamics.epochs=20", "reference.n_steps=40000"])
    assert cfg.dynamics == dataclasses.replace(base.dynamics, epochs=20)
    assert cfg.reference == dataclasses.replace(base.reference, n_steps=40000)
    assert cfg.reference.segments == "nve" and cfg.dynamics.noise_std == base.dynamics.noise_std


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("name: a\nlrr: 1\n", r"unknown key 'lrr' in .*c\.yaml \(Outer\); valid keys: flag, inner, lr, name"),
        ("name: a\ninner: {widht: 3}\n", r"unknown key 'inner\.widht' .*valid keys: act, width"),
        ("lr: 0.1\n", r"missing required key 'name' in .*c\.yaml"),
        ("name: a\nlr: fast\n", r"'lr' in .*c\.yaml must be a number"),
        ("name: a\ninner: {width: 2.5}\n", r"'inner\.width' .* must be an integer"),
        ("name: a\ninner: {width: true}\n", r"'inner\.width' .* must be an integer"),
        ("name: a\ninner: {act: relu}\n", r"'inner\.act' .* must be one of \['silu', 'tanh'\]"),
        ("name: a\nsizes: 3\n", r"'sizes' .* must be a list"),
        ("name: a\nsizes: [1, x]\n", r"'sizes\[1\]' .* must be an integer"),
        ("name: a\nflag: 1\n", r"'flag' .* must be true or false"),
        ("name: 3\n", r"'name' .* must be a string"),
        ("name: a\nlr: -1\n", r"invalid Outer in .*c\.yaml: lr must be positive"),
        ("- 1\n- 2\n", r"must hold a mapping"),
        ("name: [unclosed\n", r"is not valid YAML"),
        ("!!python/object:os.system {}\n", r"is not valid YAML"),
    ],
)
def test_bad_configs_name_key_and_file(tmp_path, text, match):
    with pytest.raises(ConfigError, match=match):
        load_config(write(tmp_path, text), Outer)


def test_missing_file_and_bad_override(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml", Outer)
    with pytest.raises(ConfigError, match="key.sub=value"):
        load_config(write(tmp_path, "name: a\n"), Outer, ["justakey"])


def test_cli_config_spellings_and_help_name_real_keys(capsys):
    """``--config FILE`` works for every subcommand, CONFIG positional is its alias, and the
    ``--set`` help names keys the subcommand accepts (no made-up ``n_atoms``)."""
    import dataclasses

    import pytest as _pytest

    from hyenamd.cli import COMMANDS, build_parser, main
    from hyenamd.cluster.cli import RolloutConfig

    parser = build_parser()
    a = parser.parse_args(["rollout", "--config", "x.yaml", "--set", "replicas=2"])
    b = parser.parse_args(["rollout", "x.yaml", "--set", "replicas=2"])
    from hyenamd.config import check_config_args

    check_config_args(a, parser)
    check_config_args(b, parser)
    assert a.config == b.config == "x.yaml" and a.overrides == b.overrides == ["replicas=2"]
    with _pytest.raises(SystemExit):
        parser.parse_args(["rollout", "a.yaml", "--config", "b.yaml"])
    capsys.readouterr()
    with _pytest.raises(SystemExit):
        main(["reference"])
    assert (
        "reference needs a config: hyenamd reference CONFIG (or --config CONFIG)" in capsys.readouterr().err
    )
    sub = next(x for x in parser._actions if x.dest == "command").choices
    for name in COMMANDS:
        text = sub[name].format_help()
        assert "n_atoms" not in text, name
        if name in ("reference", "train", "rollout", "validate", "demo"):
            assert "--config" in text and "keys:" in text, name
    rollout_help = " ".join(sub["rollout"].format_help().split())
    assert all(f.name in rollout_help for f in dataclasses.fields(RolloutConfig))
