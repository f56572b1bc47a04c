"""Every task of every domain, by name; the runner's only way into the domains."""

from __future__ import annotations

from importlib import import_module
from typing import Any

from domains.base import Task, UnknownName

# Modules that each hold DOMAIN, TASKS (name -> parameters), build(name) and pretrain(name, ...),
# and optionally EXTRA_PRETRAIN: names of other artefacts their pretrain(name) makes (a classifier).
_MODULES = ["domains.sequences.tasks", "domains.images.tasks"]


def _registry() -> dict[str, tuple[str, str]]:
    """task name -> (domain, module)."""
    out = {}
    for module_name in _MODULES:
        module = import_module(module_name)
        for name in module.TASKS:
            out[name] = (module.DOMAIN, module_name)
    return out


def list_tasks() -> dict[str, str]:
    """task name -> domain."""
    return {name: domain for name, (domain, _) in _registry().items()}


def _module(name: str):
    registry = _registry()
    if name not in registry:
        raise UnknownName("task", name, registry)
    return import_module(registry[name][1])


def get_task(name: str) -> Task:
    return _module(name).build(name)


def pretrain(name: str, **kwargs: Any) -> dict[str, Any]:
    """Pretrain a task's model, or another artefact a domain names in EXTRA_PRETRAIN."""
    for module_name in _MODULES:
        module = import_module(module_name)
        if name in getattr(module, "EXTRA_PRETRAIN", ()):
            return module.pretrain(name, **kwargs)
    return _module(name).pretrain(name, **kwargs)
