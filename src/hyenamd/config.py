"""Typed configuration: YAML (safe-loaded) into frozen dataclasses.

Each component owns a frozen dataclass (``GHyenaConfig``, ``ReferenceConfig``, ...) whose fields
map 1:1 onto a YAML file under ``configs/``. :func:`load_config` reads the file with
``yaml.safe_load`` (no Python tags, no code), applies ``key.sub=value`` overrides from the
command line and builds the dataclass, checking every value against the field's type.

Errors are :class:`ConfigError` (a ``ValueError``) naming the key, the file and — for an
unknown key — the valid keys. Configs never name import paths: a field that selects an
implementation is a ``Literal`` of known names, mapped to code by the component itself.

Supported field types: ``bool``, ``int``, ``float`` (ints accepted), ``str``, ``pathlib.Path``,
``None``, ``Literal[...]``, ``X | None`` and other unions, ``tuple[X, ...]``, ``tuple[X, Y]``,
``list[X]``, ``dict[str, X]`` and nested dataclasses.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import pathlib
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeVar, Union

from hyenamd.errors import HyenaError

__all__ = [
    "ConfigError",
    "add_config_args",
    "check_config_args",
    "from_dict",
    "load_config",
    "load_yaml",
    "to_dict",
]

T = TypeVar("T")


class ConfigError(HyenaError, ValueError):
    """A configuration value is unknown, missing or of the wrong type."""


def _where(source: str, key: str) -> str:
    return f"'{key}' in {source}" if key else source


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, key: str, source: str) -> Any:
    """Check/convert ``value`` to type ``tp``; raise ConfigError naming ``key`` and ``source``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    where = _where(source, key)

    if tp is Any:
        return value
    if tp is type(None) or tp is None:
        if value is not None:
            raise ConfigError(f"{where} must be null, got {value!r}")
        return None
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(value, a, key, source)
            except ConfigError:
                pass
        raise ConfigError(f"{where} must be {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where} must be one of {list(args)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(
                f"{where} must be a mapping of {tp.__name__} fields, got {type(value).__name__}"
            )
        return from_dict(tp, value, source=source, prefix=key)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            # YAML 1.1 reads 1e-3 as a string: accept numeric strings for floats
            if isinstance(value, str):
                try:
                    value = float(value)
                except ValueError:
                    raise ConfigError(f"{where} must be a number, got {value!r}") from None
            else:
                raise ConfigError(f"{where} must be a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{where} must be a finite number, got {value}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    if tp is pathlib.Path:
        if not isinstance(value, str | pathlib.Path):
            raise ConfigError(f"{where} must be a path string, got {value!r}")
        return pathlib.Path(value)
    if origin in (tuple, list):
        if isinstance(value, str | bytes) or not isinstance(value, Sequence):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise ConfigError(f"{where} must have {len(args)} items, got {len(value)}")
            items = [_convert(v, a, f"{key}[{k}]", source) for k, (v, a) in enumerate(zip(value, args))]
        else:
            item_tp = args[0] if args else Any
            items = [_convert(v, item_tp, f"{key}[{k}]", source) for k, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} must be a mapping, got {value!r}")
        kt, vt = args if args else (Any, Any)
        return {
            _convert(k, kt, f"{key}.{k}", source): _convert(v, vt, f"{key}.{k}", source)
            for k, v in value.items()
        }
    raise ConfigError(f"{where}: unsupported field type {_type_name(tp)}")  # a bug in the dataclass


def _field_default(f: dataclasses.Field) -> Any:
    """The value a field takes when absent (``dataclasses.MISSING`` for a required field)."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def from_dict(
    cls: type[T], data: Mapping[str, Any], *, source: str = "<dict>", prefix: str = "", base: Any = None
) -> T:
    """Build dataclass ``cls`` from a mapping, checking keys and types (see module doc).

    A nested section given in part (``dynamics: {epochs: 20}`` or ``--set dynamics.epochs=20``)
    changes only the keys it names: the others keep the *parent's* default for that section
    (its ``default_factory`` instance, e.g. the demo's dynamics settings), not the nested
    class's own defaults. ``base``: an instance of ``cls`` whose values fill absent keys.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    if not isinstance(data, Mapping):
        raise ConfigError(f"{_where(source, prefix)} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    if unknown:
        full = ".".join(p for p in (prefix, str(unknown[0])) if p)
        raise ConfigError(
            f"unknown key '{full}' in {source} ({cls.__name__}); valid keys: {', '.join(sorted(fields))}"
        )
    kwargs = {}
    for name, f in fields.items():
        key = f"{prefix}.{name}" if prefix else name
        default = getattr(base, name) if base is not None else dataclasses.MISSING
        if name in data:
            if _is_default_infinity(data[name], f):  # e.g. max_temperature: .inf (no limit)
                kwargs[name] = float(data[name])
                continue
            if default is dataclasses.MISSING and dataclasses.is_dataclass(hints[name]):
                default = _field_default(f)
            if dataclasses.is_dataclass(default) and isinstance(data[name], Mapping):
                kwargs[name] = from_dict(type(default), data[name], source=source, prefix=key, base=default)
                continue
            kwargs[name] = _convert(data[name], hints[name], key, source)
        elif default is not dataclasses.MISSING:
            kwargs[name] = default
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing required key '{key}' in {source} ({cls.__name__})")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:  # __post_init__ checks of the dataclass
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"invalid {cls.__name__} in {source}: {e}") from e


def _is_default_infinity(value: Any, f: dataclasses.Field) -> bool:
    """An infinite value is accepted only for a field whose default is that same infinity."""
    return (
        isinstance(value, float) and math.isinf(value) and isinstance(f.default, float) and f.default == value
    )


def to_dict(cfg: Any) -> Any:
    """A dataclass (recursively) as plain YAML/JSON-able data (tuples become lists, paths strings)."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, tuple | list):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, dict):
        return {k: to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, pathlib.Path):
        return str(cfg)
    return cfg


def _safe_loader() -> type:
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (YAML keeps the last)."""
    import yaml

    class _UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    hash(key)
                except TypeError:
                    continue  # the base class reports unhashable keys
                if key in seen:
                    raise ConfigError(
                        f"duplicate key {key!r} (line {seen[key] + 1} and line "
                        f"{key_node.start_mark.line + 1}); give each key once"
                    )
                seen[key] = key_node.start_mark.line
            return super().construct_mapping(node, deep=deep)

    return _UniqueKeyLoader


def _parse_yaml(text: str, what: str) -> Any:
    import yaml

    try:
        return yaml.load(text, Loader=_safe_loader())  # a SafeLoader subclass: no Python tags
    except ConfigError as e:
        raise ConfigError(f"{what}: {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{what} is not valid YAML: {' '.join(str(e).split())}") from None


def load_yaml(path: str | pathlib.Path) -> dict[str, Any]:
    """Read a YAML mapping with a safe loader; a clear error if it is not a mapping.

    Refuses duplicate keys, files that are not files (directories), and undecodable text.
    """
    path = pathlib.Path(path)
    if path.is_dir():
        raise ConfigError(f"config {path} is a directory, not a YAML file")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config {path}: {e}") from None
    data = _parse_yaml(text, str(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of keys, got {type(data).__name__}")
    return data


def _apply_override(data: dict[str, Any], override: str, source: str) -> None:
    if "=" not in override:
        raise ConfigError(f"override {override!r} must look like key.sub=value")
    key, raw = override.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override {override!r}: the key {key.strip()!r} has an empty part")
    node = data
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {override!r}: '{p}' in {source} is not a mapping")
    node[parts[-1]] = _parse_yaml(raw, f"override {override!r}")


def load_config(path: str | pathlib.Path | None, cls: type[T], overrides: Sequence[str] = ()) -> T:
    """Load ``cls`` from a YAML file (or defaults when ``path`` is None) plus ``key=value`` overrides."""
    source = str(path) if path is not None else "defaults"
    data = load_yaml(path) if path is not None else {}
    for o in overrides:
        _apply_override(data, o, source + " (with overrides)")
    return from_dict(cls, data, source=source)


class _PositionalConfig(argparse.Action):
    """CONFIG and ``--config FILE`` set one value; absent leaves it alone, two different ones are an error."""

    def __call__(self, parser, namespace, values, option_string=None):
        if values is None:
            return
        given = getattr(namespace, self.dest, None)
        if given is not None and given != values:
            parser.error(f"two configs given ({given} and {values}); pass one")
        setattr(namespace, self.dest, values)


def add_config_args(
    p: Any, *, positional: bool = False, required: bool = False, config_cls: type | None = None,
    example: str | None = None,
) -> None:  # fmt: skip
    """The common ``[CONFIG | --config FILE] [--set KEY=VALUE ...]`` arguments.

    ``--config FILE`` works for every subcommand; ``positional`` also accepts the file as the
    first positional argument (``hyenamd reference configs/reference/argon.yaml``).
    ``required``: one of them must be given (checked by :func:`check_config_args`).
    ``config_cls``/``example``: the ``--set`` help names real keys of that config.
    """
    what = "YAML config file" + ("" if required else " (default: built-in defaults)")
    if positional:
        p.add_argument("config_file", nargs="?", default=None, action=_PositionalConfig, metavar="CONFIG",
                       help=f"{what}; same as --config")  # fmt: skip
        p.add_argument(
            "--config", dest="config_file", default=None, metavar="FILE", action=_PositionalConfig, help=what
        )
    else:
        p.add_argument("--config", dest="config_file", default=None, metavar="FILE", help=what)
    keys = [f.name for f in dataclasses.fields(config_cls)] if config_cls is not None else []
    if example is None and keys:
        example = f"{keys[0]}=..."
    help_ = "override a config value (repeatable; dotted keys reach nested sections)"
    if example:
        help_ += f", e.g. --set {example}"
    if keys:
        help_ += f"; keys: {', '.join(keys)}"
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help_)
    p.set_defaults(_config_required=required)


def check_config_args(args: Any, parser: Any) -> None:
    """After parsing: ``args.config`` is the config path (positional or ``--config``); a
    subcommand that needs one and got none ends with a usage error naming both spellings."""
    if not hasattr(args, "config_file"):
        return
    args.config = args.config_file
    if args.config is None and getattr(args, "_config_required", False):
        parser.error(f"{args.command} needs a config: hyenamd {args.command} CONFIG (or --config CONFIG)")
