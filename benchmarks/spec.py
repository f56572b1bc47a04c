"""Benchmark specs: which tasks, methods, seeds and budget schedule to run.

A spec is a YAML file (the shipped ones live in `benchmarks/specs/`); every
field can be overridden from the command line with `--set key=value`, where
value is YAML (`--set seeds=[0]`, `--set config.seiko-ucb.kl_weight=0.1`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from algorithms.registry import METHODS, merge_settings, resolve_config
from domains.base import UnknownName
from domains.tasks import list_tasks

SPECS = Path(__file__).parent / "specs"
DEFAULT_SPECS = ["protein", "images"]  # one per domain: `seiko-bench run` with no spec runs them all


class SpecError(ValueError):
    """A spec that cannot be run as written."""


@dataclass
class Spec:
    """One benchmark: every (task, method, seed) cell spends the same budget."""

    name: str
    """Names the results folder: <out>/<name>/<task>/<method>/seed<N>/."""
    tasks: list[str]
    """Task names (`seiko-bench list`)."""
    methods: list[str]
    """Method names (`seiko-bench list`)."""
    seeds: list[int]
    """Method seeds; the task (oracle, pretrained model) is the same for all."""
    rounds: list[int]
    """Queries per round (SEIKO doubles them: 1024, 2048, 4096, 8192 for images)."""
    budget: int | None = None
    """Total queries per cell; defaults to, and must equal, sum(rounds)."""
    eval_samples: int = 256
    """Held-out samples scored (uncharged) after every round: SEIKO's 'Value'."""
    auc_freq: int = 100
    """Queries between points of the top-10 curve in the AUC (PMO: 100)."""
    config: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per-method (or per-variant) settings laid over the method's defaults."""
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Named variants of a method for ablations, usable in `methods`:
    `ucb-c0.1: {method: seiko-ucb, config: {bonus: {bonus_scale: 0.1}}}`."""
    description: str = ""
    """One line for the report."""

    def __post_init__(self) -> None:
        for name in ("tasks", "methods", "seeds", "rounds"):
            value = getattr(self, name)
            if not isinstance(value, list) or not value:
                raise SpecError(f"spec {self.name!r}: {name} must be a non-empty list, got {value!r}")
        if any(type(n) is not int or n < 1 for n in self.rounds):
            raise SpecError(f"spec {self.name!r}: rounds must be positive integers, got {self.rounds}")
        if self.budget is None:
            self.budget = sum(self.rounds)
        elif self.budget < self.rounds[0]:
            raise SpecError(f"spec {self.name!r}: budget {self.budget} is smaller than one round ({self.rounds[0]} queries)")
        elif self.budget != sum(self.rounds):
            raise SpecError(f"spec {self.name!r}: rounds {self.rounds} sum to {sum(self.rounds)} but budget is "
                            f"{self.budget}; set both so they agree")
        if self.eval_samples < 1 or self.auc_freq < 1:
            raise SpecError(f"spec {self.name!r}: eval_samples and auc_freq must be >= 1")
        tasks = list_tasks()
        for task in self.tasks:
            if task not in tasks:
                raise UnknownName("task", task, tasks)
        for name, variant in self.variants.items():
            if name in METHODS:
                raise SpecError(f"spec {self.name!r}: variant {name!r} shadows a method; give it another name")
            if not isinstance(variant, dict) or set(variant) - {"method", "config"} or "method" not in variant:
                raise SpecError(f"spec {self.name!r}: variant {name!r} must be {{method: NAME, config: {{...}}}}")
            if variant["method"] not in METHODS:
                raise UnknownName(f"method of variant {name!r}", variant["method"], METHODS)
        known = [*METHODS, *self.variants]
        for method in self.methods:
            if method not in known:
                raise UnknownName("method", method, known)
        for method in self.config:
            if method not in known:
                raise UnknownName("method in config", method, known)
        for method in {*self.methods, *self.config}:
            try:
                resolve_config(*self.method_settings(method))
            except (TypeError, ValueError) as err:
                raise SpecError(f"spec {self.name!r}: config of {method}: {err}") from None

    def method_settings(self, name: str) -> tuple[str, dict[str, Any]]:
        """(registered method, settings) of a method or variant name in this spec."""
        variant = self.variants.get(name, {"method": name, "config": {}})
        return variant["method"], merge_settings(variant.get("config") or {}, self.config.get(name) or {})

    def cells(self) -> list[tuple[str, str, int]]:
        return [(t, m, s) for t in self.tasks for m in self.methods for s in self.seeds]


def _set(tree: dict[str, Any], assignment: str) -> None:
    key, sep, raw = assignment.partition("=")
    if not sep or not key:
        raise SpecError(f"--set {assignment!r}: expected key=value, e.g. seeds=[0,1]")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as err:
        raise SpecError(f"--set {assignment!r}: value is not YAML ({err.problem})") from None
    *parents, leaf = key.split(".")
    node = tree
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise SpecError(f"--set {assignment!r}: {part} is not a mapping")
    node[leaf] = value


def load_spec(source: str | Path, overrides: list[str] = ()) -> Spec:
    """A spec from a shipped name ('protein') or a YAML path, with `--set` overrides."""
    path = Path(source)
    if not path.suffix and not path.exists():
        path = SPECS / f"{source}.yaml"
        if not path.exists():
            raise UnknownName("spec", str(source), [p.stem for p in SPECS.glob("*.yaml")])
    if not path.exists():
        raise SpecError(f"no spec file at {path}")
    try:
        tree = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise SpecError(f"malformed YAML in {path}{where}: {getattr(err, 'problem', err)}") from None
    if not isinstance(tree, dict):
        raise SpecError(f"spec {path} must be a YAML mapping of fields, got {type(tree).__name__}")
    tree.setdefault("name", path.stem)
    for assignment in overrides:
        _set(tree, assignment)
    known = {f.name for f in dataclasses.fields(Spec)}
    for key in tree:
        if key not in known:
            raise UnknownName("spec field", key, known)
    try:
        return Spec(**tree)
    except TypeError as err:
        raise SpecError(f"spec {path}: {err}") from None
