"""`seiko-bench status`: which cells of a results folder today's code would make, which older code made, which are missing.

A cell is *current* when it was finished with its spec's settings by today's
code version (`benchmarks.code_version`), *stale* when an older code version
or other settings made it, *missing* when it has no metrics.json yet (never
run, or killed: `seiko-bench run` resumes it), and *broken* when its files
cannot be read. Stale cells are a state, not an error: the report marks them,
the test suite passes with them, and `seiko-bench run SPEC` reruns exactly the
stale and missing ones. `status --strict` fails on anything not current: the
check before numbers are quoted as a release.

A spec folder's cells are checked against the spec its manifest recorded
(what was run there, `--set` overrides included), or against a spec named on
the command line. The test suite checks that every committed manifest records
its shipped spec as the YAML says today, so for `results/` the two agree.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from benchmarks.cell import cell_dir, cell_settings, fingerprint
from benchmarks.code_version import cell_code
from benchmarks.estimate import UNKNOWN_CELL_S, reference_seconds
from benchmarks.spec import SPECS, Spec, SpecError, load_spec

CURRENT, STALE, MISSING, BROKEN, EXTRA = "current", "stale", "missing", "broken", "not in the spec"
OTHER_SETTINGS = "finished with other settings than the spec's (run --rerun)"
"""Why a cell is stale whatever code made it: its spec's settings changed since (the runner refuses
to overwrite it unasked)."""


@dataclass(frozen=True)
class CellState:
    """One cell of a spec in a results folder, and what made it."""

    task: str
    method: str
    seed: int
    folder: Path
    state: str
    made_by: str = ""
    """Of a finished cell: the code version that made it, '0.1.0 7ba37965 (commit 98657c5)'."""
    problem: str = ""
    """Why a cell is broken, or stale for another reason than its code (other settings)."""
    wall_s: float | None = None

    @property
    def label(self) -> str:
        """What the report says of the cell's code: 'current', or what made a stale one."""
        if self.state == STALE:
            return f"stale: {self.problem or self.made_by}"
        return self.state


def made_by(metrics: dict) -> str:
    """'version hash (commit abc1234)' of a finished cell's metrics.json."""
    code, commit = metrics.get("code") or {}, (metrics.get("environment") or {}).get("git_commit")
    return f"{code.get('version', '?')} {code.get('hash', '?')}" + (f" (commit {commit[:7]})" if commit else "")


def _finished_state(spec: Spec, task: str, method: str, seed: int, folder: Path, current: dict[str, str]) -> CellState:
    cell = (task, method, seed, folder)
    try:
        metrics = json.loads((folder / "metrics.json").read_text())
    except (OSError, ValueError) as err:
        return CellState(*cell, BROKEN, problem=f"metrics.json cannot be read ({type(err).__name__}: {err})")
    if not isinstance(metrics, dict):
        return CellState(*cell, BROKEN, problem="metrics.json is not a mapping of fields")
    absent = [name for name in ("queries.csv", "evals.csv") if not (folder / name).is_file()]
    if absent:
        return CellState(*cell, BROKEN, problem=f"finished (metrics.json) but {' and '.join(absent)} missing")
    wall = metrics.get("wall_s")
    wall = float(wall) if isinstance(wall, (int, float)) else None
    if not (metrics.get("code") or {}).get("hash"):
        return CellState(*cell, BROKEN, problem="metrics.json records no code version", wall_s=wall)
    by = made_by(metrics)
    if metrics.get("fingerprint") != fingerprint(cell_settings(spec, task, method, seed)):
        return CellState(*cell, STALE, by, OTHER_SETTINGS, wall)
    if metrics["code"]["hash"] != current["hash"]:
        return CellState(*cell, STALE, by, wall_s=wall)
    return CellState(*cell, CURRENT, by, wall_s=wall)


def spec_states(spec: Spec, out: Path) -> list[CellState]:
    """Every cell of `spec` under `out`, and the finished cells there that the spec no longer names."""
    states, codes = [], {}
    for task, method, seed in spec.cells():
        folder = cell_dir(out, spec, task, method, seed)
        if not (folder / "metrics.json").exists():
            unfinished = (folder / "queries.csv").exists()
            states.append(CellState(task, method, seed, folder, MISSING,
                                    problem="unfinished: a run stopped in it" if unfinished else ""))
            continue
        if (task, method) not in codes:  # one hash per (task, method), not per seed
            codes[task, method] = cell_code(spec, task, method)
        states.append(_finished_state(spec, task, method, seed, folder, codes[task, method]))
    named = {s.folder for s in states}
    for path in sorted((out / spec.name).glob("*/*/seed*/metrics.json")):
        if path.parent not in named:
            task, method, seed = path.parts[-4], path.parts[-3], path.parts[-2].removeprefix("seed")
            states.append(CellState(task, method, int(seed) if seed.isdigit() else -1, path.parent, EXTRA))
    return states


def find_spec(name: str, out: Path, overrides: list[str] = ()) -> Spec:
    """The spec of the folder `out/<spec>`: the one its manifest recorded (what was run
    there, overrides included), else a shipped spec by name or a YAML path with
    `overrides`. Raises SpecError (or UnknownName) in one line."""
    manifest = out / name / "manifest.json"
    if overrides or Path(name).suffix in (".yaml", ".yml") or not manifest.exists():
        return load_spec(name, overrides)
    shipped = (SPECS / f"{name}.yaml").exists()
    try:
        recorded = json.loads(manifest.read_text())["spec"]
        return Spec(**recorded, root=str(SPECS if shipped else out / name))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise SpecError(f"{manifest}: cannot rebuild the spec it records ({err}); name the spec instead") from None


def spec_folders(out: Path) -> list[str]:
    """The spec folders of a results folder: those holding at least one cell."""
    return sorted(p.name for p in out.iterdir() if p.is_dir() and any(p.glob("*/*/seed*"))) if out.is_dir() else []


def regeneration_seconds(spec: Spec, states: list[CellState]) -> tuple[float, int]:
    """Seconds of work to remake the stale and missing cells, from each one's own
    recorded wall time, else the committed reference run's for its method on its
    task (`reference_seconds`); and how many of them had neither (not counted)."""
    seconds, unknown = 0.0, 0
    for s in states:
        if s.state not in (STALE, MISSING, BROKEN):
            continue
        known = s.wall_s if s.wall_s is not None else reference_seconds(spec, s.task, s.method)
        seconds += UNKNOWN_CELL_S if known is None else known
        unknown += known is None
    return seconds, unknown


def describe(spec: Spec, states: list[CellState], workers: int) -> list[str]:
    """The status of one spec's folder, a few lines: counts, who made the stale cells, the cost to remake them."""
    counts = Counter(s.state for s in states)
    named = sum(counts[k] for k in (CURRENT, STALE, MISSING, BROKEN))
    line = (f"{spec.name}: {named} cell{'s' * (named != 1)}, {counts[CURRENT]} current, {counts[STALE]} stale, {counts[MISSING]} missing"
            + (f", {counts[BROKEN]} broken" if counts[BROKEN] else "")
            + (f"; {counts[EXTRA]} finished cells the spec no longer names" if counts[EXTRA] else ""))
    lines = [line]
    stale = [s for s in states if s.state == STALE]
    for why, n in Counter(s.problem for s in stale if s.problem).most_common():
        lines.append(f"  stale: {n} {why}")
    by_code = [s for s in stale if not s.problem]
    for release, n in Counter(_release(s.made_by) for s in by_code).most_common():
        hashes = sorted({s.made_by.split()[1] for s in by_code if _release(s.made_by) == release})
        shown = ", ".join(hashes[:3]) + (f" and {len(hashes) - 3} more" if len(hashes) > 3 else "")
        lines.append(f"  stale: {n} made by {release} (code hash{'es' * (len(hashes) > 1)} {shown})")
    todo = [s for s in states if s.state in (STALE, MISSING, BROKEN)]
    if todo:
        seconds, unknown = regeneration_seconds(spec, todo)
        slots = max(1, min(workers, len(todo)))
        lines.append(f"  to regenerate: {len(todo)} cell{'s' * (len(todo) != 1)}, about {seconds / slots / 60:.0f} min on {slots} "
                     f"worker{'s' * (slots > 1)} (recorded cell times: theirs, else their method's on the task"
                     + (f"; {unknown} without one counted as {UNKNOWN_CELL_S:.0f} s" if unknown else "")
                     + f"): seiko-bench run {spec.name} reruns only these"
                     + (f", once the {other} with other settings are removed (or --rerun remakes every cell)"
                        if (other := sum(s.problem == OTHER_SETTINGS for s in stale)) else ""))
    return lines


def _release(made_by: str) -> str:
    """'0.1.0 (commit 98657c5)' of '0.1.0 7ba37965 (commit 98657c5)': what made a group of cells,
    whose hashes differ by (task, method) because each cell's code version covers its own code."""
    version, _, rest = made_by.partition(" ")
    commit = rest.partition(" ")[2]
    return f"{version} {commit}".strip()


def problems(states: list[CellState]) -> list[str]:
    """One line per broken cell, naming its folder and what is wrong."""
    return [f"{s.folder}: {s.problem}" for s in states if s.state == BROKEN]


def report_labels(out: Path, specs: list[Spec] = ()) -> dict[str, str]:
    """What the report says of each cell's code, by its folder relative to `out`
    ('protein/ehrlich-l32-c2-k4/greedy/seed0'): 'current', 'stale: <made by>', ...
    Each spec folder is checked against `specs` (those a run just ran) where one is
    named so, else against `find_spec`; a folder whose spec cannot be rebuilt here is
    left out, and the report says its cells were not checked."""
    given = {spec.name: spec for spec in specs}
    labels = {}
    for name in spec_folders(out):
        try:
            spec = given[name] if name in given else find_spec(name, out)
        except ValueError:  # SpecError, TaskError, UnknownName: a spec this machine cannot rebuild
            continue
        for s in spec_states(spec, out):
            labels[s.folder.relative_to(out).as_posix()] = s.label
    return labels
