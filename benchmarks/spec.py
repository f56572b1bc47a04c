"""Benchmark specs: which tasks, methods, seeds and budget schedule to run.

A spec is a YAML file (the shipped ones live in `benchmarks/specs/`); every
field can be overridden from the command line with `--set key=value`, where
value is YAML (`--set seeds=[0]`, `--set config.seiko-ucb.kl_weight=0.1`).
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from algorithms.config import merge
from algorithms.registry import METHODS, resolve_config
from domains.base import UnknownName
from domains.tasks import SAFE_NAME, TaskError, TaskRef, load_factory, task_ref

SPECS = Path(__file__).parent / "specs"
SUITES = {
    # `seiko-bench run` with no spec: a few methods that the full benchmark tells
    # apart, in minutes on two cores (issue 15: the README's main command).
    "quick": ["protein-quick", "dna-quick"],
    # `seiko-bench run reference`: one spec per domain, every method in each, and
    # a harder protein task with one or two methods of each family (issue 12).
    "reference": ["protein", "protein-hard", "images", "dna"],
}
DEFAULT_SUITE = "quick"
EVALUATIONS = ("task", "oracle", "off")


class SpecError(ValueError):
    """A spec that cannot be run as written."""


@dataclass(frozen=True)
class ResolvedMethod:
    """A method or variant of a spec, its config resolved once: what the cell
    runs, what its fingerprint hashes and what metrics.json stores."""

    label: str
    """The name in the spec (a registered method or a variant): names folders and leaderboard rows."""
    method: str
    """The registered method that runs it."""
    config: Any
    """The method's config dataclass."""
    written: dict[str, Any] = field(default_factory=dict)
    """The settings the spec writes for it (its variant's, with the spec's `config` over them),
    before the method's defaults fill the rest: what a cell's fingerprint hashes."""


@dataclass
class Spec:
    """One benchmark: every (task, method, seed) cell spends the same budget."""

    name: str
    """Names the results folder: <out>/<name>/<task>/<method>/seed<N>/."""
    tasks: list[Any]
    """Shipped task names (`seiko-bench list`), or a user's task factories by
    import path, `my_pkg.tasks:make_task`, or `{task: PATH, name: FOLDER, params: {...}}`."""
    methods: list[str]
    """Method names (`seiko-bench list`) or names of `variants`."""
    seeds: list[int]
    """Method seeds; the task (oracle, pretrained model) is the same for all."""
    rounds: list[int]
    """Queries per round (SEIKO doubles them: 1024, 2048, 4096, 8192 for images)."""
    budget: int | None = None
    """Total queries per cell; defaults to, and must equal, sum(rounds)."""
    eval_samples: int = 256
    """Held-out samples scored (uncharged, counted) after every round: SEIKO's 'Value'.
    0 is the same as `evaluation: off` (either sets both)."""
    evaluation: str | None = None
    """What scores them: "task" (the task's choice: its own oracle on the shipped,
    synthetic tasks), "oracle" (the task's oracle), "off" (no held-out evaluation),
    or `module:function` / `file.py:function` returning a separate `Oracle`.
    Left out: "task" when every task is a shipped one, else "off", because a
    user's oracle (an assay) is not free outside the budget unless they say so."""
    auc_freq: int = 100
    """Queries between points of the top-10 curve in the AUC (PMO: 100)."""
    config: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per-method (or per-variant) settings laid over the method's defaults."""
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Named variants of a method for ablations, usable in `methods`:
    `ucb-c0.1: {method: seiko-ucb, config: {bonus: {bonus_scale: 0.1}}}`."""
    resources: dict[str, float] = field(default_factory=lambda: {"cpus": 1, "gpus": 0})
    """What one cell reserves under `--executor ray` ({cpus: 1, gpus: 0}; a Stable Diffusion
    cell asks for a GPU). It cannot change a cell's numbers, so no cell's fingerprint holds it."""
    shards: int | None = None
    """Pieces every batch is cut into, each drawn with its own generator
    (`algorithms.parallel`): a cell's numbers depend on it, not on how many
    processes (`--processes`) compute them, so `--processes 4` and `--processes 1
    --set shards=4` give the same cell. None: as many as processes (1: one stream)."""
    description: str = ""
    """One line for the report."""
    root: str = ""
    """The spec file's folder, where relative `file.py:function` paths are found first (set by `load_spec`)."""

    def __post_init__(self) -> None:
        where = f"spec {self.name!r}"
        if not isinstance(self.name, str) or not SAFE_NAME.match(self.name):
            raise SpecError(f"spec name {self.name!r} must be letters, digits and . _ + - (it names a folder)")
        for name in ("tasks", "methods", "seeds", "rounds"):
            value = getattr(self, name)
            if not isinstance(value, list) or not value:
                raise SpecError(f"{where}: {name} must be a non-empty list, got {value!r}")
        if any(type(n) is not int or n < 1 for n in self.rounds):
            raise SpecError(f"{where}: rounds must be positive integers, got {self.rounds}")
        if any(type(s) is not int or s < 0 for s in self.seeds):
            raise SpecError(f"{where}: seeds must be integers >= 0, got {self.seeds}")
        if len(set(self.seeds)) != len(self.seeds):
            raise SpecError(f"{where}: seeds {self.seeds} repeat a seed; each cell runs once")
        if self.shards is not None and (type(self.shards) is not int or self.shards < 1):
            raise SpecError(f"{where}: shards must be an integer >= 1 (or left out), got {self.shards!r}")
        for name, low in (("eval_samples", 0), ("auc_freq", 1)):
            value = getattr(self, name)
            if type(value) is not int or value < low:
                raise SpecError(f"{where}: {name} must be an integer >= {low}, got {value!r}")
        if self.budget is None:
            self.budget = sum(self.rounds)
        elif type(self.budget) is not int:
            raise SpecError(f"{where}: budget must be an integer, got {self.budget!r}")
        elif self.budget < self.rounds[0]:
            raise SpecError(f"{where}: budget {self.budget} is smaller than one round ({self.rounds[0]} queries)")
        elif self.budget != sum(self.rounds):
            raise SpecError(f"{where}: rounds {self.rounds} sum to {sum(self.rounds)} but budget is "
                            f"{self.budget}; set both so they agree")
        if self.evaluation is None:
            own = any(":" in (entry.get("task", "") if isinstance(entry, dict) else str(entry)) for entry in self.tasks)
            self.evaluation = "off" if own else "task"
        if self.evaluation is False:  # YAML 1.1 reads a bare `off` as false
            self.evaluation = "off"
        if self.evaluation == "off" or self.eval_samples == 0:  # two ways to say it, one state for the cells
            self.evaluation, self.eval_samples = "off", 0
        if not isinstance(self.evaluation, str) or (self.evaluation not in EVALUATIONS and ":" not in self.evaluation):
            raise SpecError(f"{where}: evaluation must be one of {', '.join(EVALUATIONS)} or module:function "
                            f"returning an Oracle, got {self.evaluation!r}")
        if ":" in self.evaluation:
            try:
                load_factory(self.evaluation, self.root)
            except TaskError as err:
                raise SpecError(f"{where}: evaluation: {err}") from None
        resources = {"cpus": 1, "gpus": 0, **(self.resources if isinstance(self.resources, dict) else {"": None})}
        if set(resources) != {"cpus", "gpus"} or any(
                isinstance(v, bool) or not isinstance(v, int | float) or v < 0 for v in resources.values()):
            raise SpecError(f"{where}: resources must be {{cpus: N, gpus: M}} with numbers >= 0, got {self.resources!r}")
        if resources["cpus"] <= 0:
            raise SpecError(f"{where}: resources.cpus must be above 0, got {resources['cpus']!r}")
        self.resources = resources
        if not isinstance(self.description, str):
            raise SpecError(f"{where}: description must be a string")
        self._tasks = self._resolve_tasks()
        self._methods = self._resolve_methods()

    def _resolve_tasks(self) -> dict[str, TaskRef]:
        refs: dict[str, TaskRef] = {}
        for entry in self.tasks:
            try:
                ref = task_ref(entry, self.root)
                label = ref.name()
            except TaskError as err:
                raise SpecError(f"spec {self.name!r}: {err}") from None
            if label in refs:
                raise SpecError(f"spec {self.name!r}: two tasks are named {label!r}; give each a distinct `name`")
            refs[label] = ref
        return refs

    def _resolve_methods(self) -> dict[str, ResolvedMethod]:
        where = f"spec {self.name!r}"
        for key in ("config", "variants"):
            value = getattr(self, key)
            if not isinstance(value, dict) or any(not isinstance(v, dict) for v in value.values()):
                raise SpecError(f"{where}: {key} must map method names to mappings of settings, got {value!r}")
        for name, variant in self.variants.items():
            if name in METHODS:
                raise SpecError(f"{where}: variant {name!r} shadows a method; give it another name")
            if set(variant) - {"method", "config"} or "method" not in variant:
                raise SpecError(f"{where}: variant {name!r} must be {{method: NAME, config: {{...}}}}")
            if variant["method"] not in METHODS:
                raise UnknownName(f"method of variant {name!r}", variant["method"], METHODS)
        known = [*METHODS, *self.variants]
        if len(set(self.methods)) != len(self.methods):
            raise SpecError(f"{where}: methods {self.methods} name a method twice")
        for method in [*self.methods, *self.config]:
            if not isinstance(method, str):
                raise SpecError(f"{where}: method names must be strings, got {method!r}")
            if method not in known:
                raise UnknownName("method", method, known)
            if not SAFE_NAME.match(method):
                raise SpecError(f"{where}: method name {method!r} must be letters, digits and . _ + -")
        resolved = {}
        for label in self.methods:
            variant = self.variants.get(label, {"method": label, "config": {}})
            settings = merge(variant.get("config") or {}, self.config.get(label) or {})
            try:
                resolved[label] = ResolvedMethod(label, variant["method"], resolve_config(variant["method"], settings),
                                                 settings)
            except (TypeError, ValueError) as err:
                named = "" if label == variant["method"] else f"variant {label} of {variant['method']}: "
                raise SpecError(f"{where}: {named}{err}") from None
        return resolved

    def task(self, label: str) -> TaskRef:
        """The task behind a cell's task folder name."""
        return self._tasks[label]

    def method(self, label: str) -> ResolvedMethod:
        """The resolved method behind a cell's method name."""
        return self._methods[label]

    def task_names(self) -> list[str]:
        return list(self._tasks)

    def shards_for(self, processes: int) -> int:
        """The pieces a batch is cut into when each cell runs on `processes` processes."""
        shards = self.shards or processes
        if shards % processes:
            raise SpecError(f"spec {self.name!r}: shards={shards} cannot be split among {processes} processes; "
                            f"use a multiple of {processes}, or leave shards out")
        return shards

    def cells(self) -> list[tuple[str, str, int]]:
        return [(t, m, s) for t in self._tasks for m in self.methods for s in self.seeds]

    def as_dict(self) -> dict[str, Any]:
        """The spec as written (after overrides): what the manifest records."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "root"}


def _set(tree: dict[str, Any], assignment: str) -> None:
    key, sep, raw = assignment.partition("=")
    if not sep or not key:
        raise SpecError(f"--set {assignment!r}: expected key=value, e.g. seeds=[0,1]")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as err:
        raise SpecError(f"--set {assignment!r}: value is not YAML ({err.problem})") from None
    *parents, leaf = key.split(".")
    node: Any = tree
    for part in parents:
        node = node[_index(node, part, assignment)] if isinstance(node, list) else node.setdefault(part, {})
        if not isinstance(node, (dict, list)):
            raise SpecError(f"--set {assignment!r}: {part} is not a mapping or a list")
    node[_index(node, leaf, assignment) if isinstance(node, list) else leaf] = value


def unshared(node: Any) -> Any:
    """A YAML tree in which every mapping and list is an object of its own. YAML
    anchors (`seiko-ucb: &protein {...}`, `greedy: *protein`) load as one shared
    object, so `--set config.greedy.kl_weight=0.1` would change every method that
    names the anchor; `copy.deepcopy` keeps such sharing, so the tree is rebuilt."""
    if isinstance(node, dict):
        return {key: unshared(value) for key, value in node.items()}
    if isinstance(node, list):
        return [unshared(value) for value in node]
    return node


def _check_method_named(tree: dict[str, Any], assignment: str) -> None:
    """`--set config.M.key=v` must name a method (or variant) that the spec runs:
    a setting for another one would change nothing, without a word."""
    parts = assignment.partition("=")[0].split(".")
    if parts[0] != "config" or len(parts) < 2:
        return
    runs = [m for m in tree.get("methods") or [] if isinstance(m, str)]
    if parts[1] not in runs:
        close = difflib.get_close_matches(parts[1], runs, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; it runs {', '.join(runs)}"
        raise SpecError(f"--set {assignment!r}: spec {tree.get('name', '?')!r} does not run method {parts[1]!r}{hint}")


def _index(node: list, part: str, assignment: str) -> int:
    """`tasks.0.params.reward=...` sets a field of a list's entry, named by its index."""
    if not part.isdigit() or int(part) >= len(node):
        raise SpecError(f"--set {assignment!r}: {part!r} is not an index of a list of {len(node)}")
    return int(part)


def expand_suites(names: list[str]) -> list[str]:
    """Spec names and paths with every suite name (`SUITES`) replaced by its specs, in order, once each."""
    specs: list[str] = []
    for name in names:
        for spec in SUITES.get(name, [name]):
            if spec not in specs:
                specs.append(spec)
    return specs


def load_spec(source: str | Path, overrides: list[str] = ()) -> Spec:
    """A spec from a shipped name ('protein') or a YAML path, with `--set` overrides."""
    path = Path(source)
    if not path.suffix and not path.exists():
        path = SPECS / f"{source}.yaml"
        if not path.exists():
            raise UnknownName("spec", str(source), [p.stem for p in SPECS.glob("*.yaml")])
    if not path.exists():
        raise SpecError(f"no spec file at {path}")
    if path.is_dir():
        raise SpecError(f"{path} is a folder, not a spec file (a .yaml)")
    try:
        tree = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise SpecError(f"malformed YAML in {path}{where}: {getattr(err, 'problem', err)}") from None
    if not isinstance(tree, dict):
        raise SpecError(f"spec {path} must be a YAML mapping of fields, got {type(tree).__name__}")
    tree = unshared(tree)
    tree.setdefault("name", path.stem)
    tree["root"] = str(path.resolve().parent)
    for assignment in overrides:
        _check_method_named(tree, assignment)
        _set(tree, assignment)
    known = {f.name for f in dataclasses.fields(Spec)}
    for key in tree:
        if key not in known:
            raise UnknownName("spec field", key, known)
    try:
        return Spec(**tree)
    except TypeError as err:
        raise SpecError(f"spec {path}: {err}") from None
