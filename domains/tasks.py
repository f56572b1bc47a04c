"""Every task by name, and a user's own tasks by import path: the runner's only way into the domains.

A spec names a task in one of three ways:

    tasks:
      - ehrlich-l32-c2-k4                               # a shipped task (`seiko-bench list`)
      - my_package.my_tasks:make_task                   # a factory returning a `domains.base.Task`
      - {task: ./my_tasks.py:make_task, name: hydro-64, params: {length: 64}}

A factory is found by module path (importable: installed, or under the folder
`seiko-bench` runs from) or by file path, and called with `params`. The task's
results folder is `name`, or else the `Task.name` the factory returns.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import inspect
import re
import sys
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from types import ModuleType
from typing import Any

from domains.base import DomainModule, Task, UnknownName

# The shipped domain modules, each a `domains.base.DomainModule`: the `tasks`
# module of every package under domains/, found rather than listed, so that a
# new domain leaves this file, and with it the other domains' results, as they
# were (this file is part of every cell's code hash). A module may also list in
# EXTRA_PRETRAIN other artefacts its pretrain(name) makes (a classifier).
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
"""Names that become folders (tasks, specs, methods): nothing in them escapes the results folder."""
_DOMAINS = Path(__file__).resolve().parent
CODE_SUFFIXES = (".py", ".safetensors", ".json")


class TaskError(ValueError):
    """A task reference that cannot be resolved to a task."""


def _domain_modules() -> list[DomainModule]:
    packages = sorted(p.name for p in _DOMAINS.iterdir() if (p / "tasks.py").is_file())
    return [import_module(f"domains.{name}.tasks") for name in packages]


def _registry() -> dict[str, DomainModule]:
    """task name -> its domain module."""
    return {name: module for module in _domain_modules() for name in module.TASKS}


def list_tasks() -> dict[str, str]:
    """task name -> domain."""
    return {name: module.DOMAIN for name, module in _registry().items()}


def get_task(name: str, **params: Any) -> Task:
    registry = _registry()
    if name not in registry:
        raise UnknownName("task", name, registry)
    build = registry[name].build
    if params and not any(p.kind is p.VAR_KEYWORD for p in inspect.signature(build).parameters.values()):
        raise TaskError(f"task {name!r} takes no parameters, got {', '.join(params)}")
    try:
        return build(name, **params)
    except TypeError as err:
        raise TaskError(f"task {name!r}: {err}") from None


def pretrain(name: str, **kwargs: Any) -> dict[str, Any]:
    """Pretrain a task's model, or another artefact a domain names in EXTRA_PRETRAIN."""
    for module in _domain_modules():
        if name in getattr(module, "EXTRA_PRETRAIN", ()):
            return module.pretrain(name, **kwargs)
    registry = _registry()
    if name not in registry:
        raise UnknownName("task", name, registry)
    return registry[name].pretrain(name, **kwargs)


@dataclass(frozen=True)
class TaskRef:
    """A task as a spec names it: a shipped name or a factory's import path, with parameters."""

    source: str
    """A shipped task name, or `module.path:function` / `path/to/file.py:function`."""
    params: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the task's factory (or of a shipped task's `build`)."""
    label: str | None = None
    """The results folder's name; default: the `Task.name` that the factory returns."""
    root: str = ""
    """Where a relative `file.py:function` path is found first (the spec's folder), then the working folder."""

    @property
    def is_factory(self) -> bool:
        return ":" in self.source

    def build(self) -> Task:
        """The task (a fresh one: factories are called in each cell's own process)."""
        if not self.is_factory:
            return get_task(self.source, **self.params)
        factory = load_factory(self.source, self.root)
        try:
            task = factory(**self.params)
        except TypeError as err:
            raise TaskError(f"task {self.source}: {err}") from None
        if not isinstance(task, Task):
            raise TaskError(f"task {self.source} returned a {type(task).__name__}, not a domains.base.Task")
        return task

    def name(self) -> str:
        """The folder name of this task's cells, checked to stay inside the results folder.
        A factory is called here, so that a spec whose factory fails or returns no task is
        refused before any cell runs."""
        built = self.build().name if self.is_factory else self.source
        name = self.label or built
        if not SAFE_NAME.match(name):
            raise TaskError(f"task name {name!r} must be letters, digits and . _ + - (it names a folder)")
        return name

    def code_files(self) -> list[Path]:
        """The task's own code, part of a cell's code version: a shipped task's whole
        domain package (modules and checkpoints), or a factory's module (its package,
        when the factory lives in one of the shipped domains)."""
        if self.is_factory:
            module = _module(self.source.rpartition(":")[0], self.source, self.root)
        else:
            module = _registry()[self.source]
        if not getattr(module, "__file__", None):
            return []
        path = Path(module.__file__).resolve()
        own = package_files(path.parent) if path.parent.parent == _DOMAINS else [path]
        return own + sorted(imported_domain_modules(own) - set(own))


def imported_modules(path: Path, package: Path) -> set[Path]:
    """The modules of `package` (a folder of the project, imported by its folder
    name) that the module at `path` imports: `from package.a import b` is the
    module a/b.py if there is one, else a.py (or a/__init__.py)."""
    def files(dotted: str) -> list[Path]:
        base = package.joinpath(*dotted.split(".")[1:])
        return [f for f in (base.with_suffix(".py"), base / "__init__.py") if f.is_file()][:1]

    found: set[Path] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == package.name:
            named = [f for alias in node.names for f in files(f"{node.module}.{alias.name}")]
            found |= set(named if len(named) == len(node.names) else files(node.module) + named)
        elif isinstance(node, ast.Import):
            found |= {f for a in node.names if a.name.split(".")[0] == package.name for f in files(a.name)}
    return found


def imported_domain_modules(files: list[Path]) -> set[Path]:
    """Every module of a domain package that `files` import, transitively: a DNA
    task runs the sequence domain's masked model, so its cells' code version
    covers that model's module and what it imports, not the protein checkpoint.
    (The top-level modules of domains/ are in every code version already.)"""
    seen: set[Path] = set()
    todo = [f for f in files if f.suffix == ".py"]
    while todo:
        for module in imported_modules(todo.pop(), _DOMAINS) - seen:
            if module.parent != _DOMAINS:
                seen.add(module)
                todo.append(module)
    return seen


def package_files(folder: Path) -> list[Path]:
    """A package's code and shipped checkpoints, in a stable order."""
    return sorted(p for p in folder.rglob("*") if p.suffix in CODE_SUFFIXES and "__pycache__" not in p.parts)


def task_ref(entry: Any, root: str = "") -> TaskRef:
    """A spec's task entry (a string or {task, name, params}) as a `TaskRef`."""
    if isinstance(entry, str):
        ref = TaskRef(entry, root=root)
    elif isinstance(entry, dict):
        unknown = set(entry) - {"task", "name", "params"}
        if unknown or "task" not in entry:
            raise TaskError(f"task entry {entry!r} must be a name or {{task: NAME or module:function, "
                            f"name: FOLDER, params: {{...}}}}" + (f"; unknown keys {sorted(unknown)}" if unknown else ""))
        params = entry.get("params") or {}
        if not isinstance(entry["task"], str) or not isinstance(params, dict):
            raise TaskError(f"task entry {entry!r}: task must be a string and params a mapping")
        label = entry.get("name")
        if label is not None and not isinstance(label, str):
            raise TaskError(f"task entry {entry!r}: name must be a string")
        ref = TaskRef(entry["task"], params, label, root)
    else:
        raise TaskError(f"task entry {entry!r} must be a task name or a mapping {{task: ..., params: ...}}")
    if not ref.is_factory:
        registry = _registry()
        if ref.source not in registry:
            raise UnknownName("task", ref.source, registry)
    return ref


def _module(module_path: str, source: str, root: str = "") -> ModuleType:
    if module_path.endswith(".py"):
        path = Path(module_path)
        if not path.is_absolute() and root and (Path(root) / path).is_file():
            path = Path(root) / path
        path = path.resolve()
        if not path.is_file():
            raise TaskError(f"task {source}: no file {path}")
        # One module per file, named by its path, so that every process imports the same one once.
        name = "seiko_user_task_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
        if name in sys.modules:
            return sys.modules[name]
        if str(path.parent) not in sys.path:  # as `python my_tasks.py` would: modules beside it import
            sys.path.append(str(path.parent))
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as err:
            del sys.modules[name]
            raise TaskError(f"task {source}: {path} does not import: {type(err).__name__}: {err}") from None
        return module
    if str(Path.cwd()) not in sys.path and "" not in sys.path:
        sys.path.append(str(Path.cwd()))  # as `python -m` would: the user's package beside the spec
    try:
        return import_module(module_path)
    except Exception as err:
        raise TaskError(f"task {source}: module {module_path!r} does not import: {type(err).__name__}: {err}") from None


def load_factory(source: str, root: str = ""):
    """The function that `module.path:function` or `path/to/file.py:function` names."""
    module_path, _, attr = source.rpartition(":")
    if not module_path or not attr:
        raise TaskError(f"task {source!r}: expected module.path:function or path/to/file.py:function")
    module = _module(module_path, source, root)
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise TaskError(f"task {source}: {module_path} has no function {attr!r}")
    return factory
