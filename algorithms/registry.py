"""Every method by name: the variants each method module declares beside itself.

A name maps to a `Variant` (class, config class, the defaults that make the
variant); `resolve_config` lays a spec's settings over those defaults once
(`algorithms.config`), and `build_method` runs the class on the result.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import Any

from algorithms.config import build, merge
from algorithms.method import Context, Method, Variant
from domains.base import UnknownName

# The method modules: every module of algorithms/methods/ (each declares VARIANTS),
# found rather than listed, so that adding a method edits no shared file and leaves
# the other methods' results current (a cell's code hash covers the shared
# modules and its own method's, `benchmarks.code_version.method_files`).
_MODULES = [import_module(f"algorithms.methods.{path.stem}")
            for path in sorted((Path(__file__).parent / "methods").glob("*.py")) if path.stem != "__init__"]
METHODS: dict[str, Variant] = {name: variant for module in _MODULES for name, variant in
                               getattr(module, "VARIANTS", {}).items()}


def resolve_config(name: str, settings: dict[str, Any] | None = None) -> Any:
    """The config a method runs with: its variant's defaults, then `settings`."""
    if name not in METHODS:
        raise UnknownName("method", name, METHODS)
    variant = METHODS[name]
    return build(variant.config_cls, merge(variant.defaults, settings or {}), name)


def build_method(name: str, context: Context, settings: dict[str, Any] | None = None, label: str | None = None,
                 *, config: Any = None) -> Method:
    """Method `name` with `settings` (or an already resolved `config`); `label`
    (default: name) is what logs and results call it."""
    if config is None:
        config = resolve_config(name, settings)
    elif name not in METHODS:
        raise UnknownName("method", name, METHODS)
    return METHODS[name].cls(config, context, name=label or name)
