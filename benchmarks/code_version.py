"""A cell's code version: which code decides its numbers, hashed so that it sees code, not text.

A finished cell records the code version that made it (`metrics.json`, `code`);
it is *current* while that equals the version of today's code for the same
(task, method), and *stale* otherwise (`benchmarks.status`). Stale is a state
the report shows, not a failure: a change to shared code lands first and its
cells are regenerated after it, committed as they finish.

What is hashed: the modules of `algorithms/` that the cell's method runs
(`method_files`: its own module and what it imports, transitively, so editing
one method stales that method's cells only); the protocols and shared modules
of `domains/` with the shared samplers; the task's own code, with the modules
of other domains it imports and the checkpoints it ships (`TaskRef.code_files`);
and the modules that turn a run into the numbers of its files (`CELL_MODULES`:
the cell, its checkpoint, and `reports/metrics.py`, which computes the AUC,
best and top-10 of every metrics.json). Not the scheduler, the CLI, the specs
(a cell's settings are fingerprinted apart), the report, or this module.

How: a Python module counts by its syntax tree without docstrings (`ast.dump`
of the parsed module, every bare string statement dropped), so comments,
docstrings, blank lines and line breaks leave every cell current, while a
changed constant, name or statement stales the cells that run it. Any other
file (a checkpoint, a JSON config) counts by its bytes.
"""

from __future__ import annotations

import ast
import hashlib
import sys
from functools import cache, lru_cache
from importlib import metadata
from pathlib import Path

from algorithms.registry import METHODS
from benchmarks.spec import Spec
from domains.tasks import imported_modules, package_files

PROJECT = Path(__file__).resolve().parent.parent
_ALGORITHMS = PROJECT / "algorithms"
_DOMAINS = PROJECT / "domains"
CELL_MODULES = (PROJECT / "benchmarks" / "cell.py", PROJECT / "benchmarks" / "checkpoint.py",
                PROJECT / "reports" / "metrics.py")
"""The modules outside `algorithms/` and `domains/` whose code writes a figure of a
cell's files: `benchmarks.cell.run_cell` and what it calls to write metrics.json."""


def source(path: Path) -> bytes:
    """A file's bytes as hashed (one place to read them, which the tests replace)."""
    return path.read_bytes()


def _without_docstrings(tree: ast.AST) -> ast.AST:
    """`tree` with every statement that is a bare string dropped: module, class and
    function docstrings, and the attribute docstrings under constants and fields.
    Such a statement does nothing when run."""
    for node in ast.walk(tree):
        for name in ("body", "orelse", "finalbody"):
            block = getattr(node, name, None)
            if isinstance(block, list):
                setattr(node, name, [s for s in block if not (isinstance(s, ast.Expr)
                                                              and isinstance(s.value, ast.Constant)
                                                              and isinstance(s.value.value, str))])
    return tree


@lru_cache(maxsize=1024)
def normalised_python(text: bytes) -> bytes:
    """What a module's code is, for the hash: its syntax tree without docstrings,
    positions or comments (`ast.dump` leaves out line numbers and the parser drops comments)."""
    return ast.dump(_without_docstrings(ast.parse(text))).encode()


@cache
def _file_bytes_digest(path: Path, mtime_ns: int, size: int) -> bytes:
    return hashlib.sha256(source(path)).digest()


def file_digest(path: Path) -> bytes:
    """The digest of one file as a code version counts it (see the module's docstring)."""
    if path.suffix == ".py":
        return hashlib.sha256(normalised_python(source(path))).digest()
    stat = path.stat()  # a checkpoint of megabytes: read once per modification, not once per cell
    return _file_bytes_digest(path, stat.st_mtime_ns, stat.st_size)


@cache
def method_files(method: str) -> tuple[Path, ...]:
    """The modules of `algorithms/` whose code a cell of `method` (a registered
    name) runs: its own module and the modules the cell's modules import (the loop,
    the budgeted oracle, the registry), with everything they import from
    `algorithms/`, transitively (large-scale RL runs DDPO's update, SEIKO the
    reward models). The registry finds method modules at run time, unseen here,
    so another method's module is never part of it."""
    own = Path(sys.modules[METHODS[method].cls.__module__].__file__).resolve()
    files, todo = set(), [own, *(m for cell in CELL_MODULES for m in imported_modules(cell, _ALGORITHMS))]
    while todo:
        path = todo.pop().resolve()
        if path not in files:
            files.add(path)
            todo += imported_modules(path, _ALGORITHMS)
    return tuple(sorted(files | {_ALGORITHMS / "__init__.py"}))


def hashed_files(task_files: list[Path] = (), method: str | None = None) -> list[Path]:
    """Every file a code version covers, in the order it is hashed."""
    algorithms = package_files(_ALGORITHMS) if method is None else list(method_files(method))
    shared = [*sorted(_DOMAINS.glob("*.py")), *package_files(_DOMAINS / "diffusion")]
    return [*algorithms, *shared, *CELL_MODULES, *task_files]


def code_version(task_files: list[Path] = (), method: str | None = None) -> dict[str, str]:
    """The project's version and a hash of the code that produces a cell of
    `method` (every method's code when None) on a task whose own code is
    `task_files`: a cell finished under another hash is stale."""
    digest = hashlib.sha256()
    for path in hashed_files(task_files, method):
        name = path.relative_to(PROJECT) if path.is_relative_to(PROJECT) else path.name
        digest.update(str(name).encode() + b"\0" + file_digest(path) + b"\0")
    try:
        version = metadata.version("seiko-bench")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return {"version": version, "hash": digest.hexdigest()[:16]}


def cell_code(spec: Spec, task: str, method: str) -> dict[str, str]:
    """The code version of a spec's cell: its task's code and its method's."""
    return code_version(spec.task(task).code_files(), spec.method(method).method)
