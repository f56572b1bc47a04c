"""Method configs built from plain settings: one merge, one conversion by declared type.

A method's settings arrive as YAML mappings (a spec, `--set`, a variant's
defaults). They are laid over each other with `merge` (the one merge), then
`build` turns the result into the config dataclass once, converting each value
by the type its field declares: numbers from YAML 1.1 strings (`1e-3` reads as
a string there), `Literal` fields checked against their choices, nested configs
laid over the field's own default (so a method's default for a nested config,
e.g. guidance's single reward network, survives a partial override). Every
error names the field and says what would be accepted.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Literal, Union


class ConfigError(ValueError):
    """A setting that the config cannot take as written."""


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` laid over `base`, mappings merged key by key, anything else replaced."""
    out = dict(base)
    for key, value in over.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def build(config_cls: type, settings: dict[str, Any] | None, where: str, base: Any = None) -> Any:
    """An instance of `config_cls` from `settings`, laid over `base` (an instance) or the defaults."""
    if settings is None:
        settings = {}
    if not isinstance(settings, dict):
        raise ConfigError(f"{where} must be a mapping of settings, got {settings!r}")
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    hints = typing.get_type_hints(config_cls)
    values: dict[str, Any] = {}
    for key, value in settings.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.5)
            hint = (f"did you mean {close[0]!r}?" if close else f"known: {', '.join(fields)}" if fields
                    else "it takes no settings")
            raise ConfigError(f"{where}: unknown setting {key!r}; {hint}")
        values[key] = _convert(hints[key], value, f"{where}.{key}", _default(fields[key], base))
    try:
        if base is not None:
            return dataclasses.replace(base, **values)
        return config_cls(**values)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: {err}") from None


def _default(f: dataclasses.Field, base: Any) -> Any:
    if base is not None:
        return getattr(base, f.name)
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None if f.default is dataclasses.MISSING else f.default


def _convert(kind: Any, value: Any, where: str, default: Any) -> Any:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (kind,) = [a for a in args if a is not type(None)]  # Optional[X]: the configs use no other unions
        return _convert(kind, value, where, default)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where} must be one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if dataclasses.is_dataclass(kind):
        if isinstance(value, kind):
            return value
        base = default if isinstance(default, kind) else None
        return build(kind, value, where, base=base)
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if kind is int:
        if type(value) is not int:
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if kind is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where} must be a number, got {value!r}") from None
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    return value


def plain(config: Any) -> dict[str, Any]:
    """The config as plain data (what a fingerprint hashes and metrics.json stores)."""
    return dataclasses.asdict(config)
