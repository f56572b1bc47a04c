"""What a run is about to do: cells to run and finished, and the time they should take.

The expected time comes from the reference run committed in `results/`: each
cell still to run counts the wall time its (spec, task, method) took there, on
average over seeds, and the total is shared among the workers. That is a
forecast for the machine that made the reference (2 cores); a dry run scales
it by how long this machine takes for the yardstick against the time stored
for that machine (`REFERENCE_MACHINE`), a few tenths of a second of measuring
before anything is spent. Still a forecast, not a promise: the runner's
progress bar counts work in reference seconds, so its ETA corrects it by the
speed this machine actually shows once cells run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from benchmarks.cell import cell_dir, cell_settings, finished
from benchmarks.code_version import cell_code
from benchmarks.spec import Spec

REFERENCE = Path(__file__).resolve().parent.parent / "results"
REFERENCE_MACHINE = Path(__file__).with_name("reference_machine.json")
"""The yardstick's time (`benchmarks.experiments.yardstick`) on the machine that made the
committed reference run, measured idle: what this machine's yardstick is divided by."""
UNKNOWN_CELL_S = 60.0
"""What a cell with no reference time counts as in the progress bar (a new task or method)."""


class Cell(NamedTuple):
    """One cell still to run, with what the reference run says it costs (None: no reference)."""

    spec: Spec
    task: str
    method: str
    seed: int
    reference_s: float | None
    processes: int = 1
    """The processes the cell runs data-parallel on (`algorithms.parallel`)."""
    reference_shares: tuple[float, ...] | None = None
    """Of the reference cells' time, the share spent by the end of each round (round 0's
    evaluation first), where they ran this spec's rounds: a round's cost is set by its
    fine-tuning more than by its queries, so a running cell's progress counts rounds."""


def _reference_folders(spec: Spec, task: str, method: str) -> list[Path]:
    """The committed cells that stand for (spec, task, method): its own; failing those,
    `method`'s cells on `task` in any committed spec, then those of the registered
    method it runs (a variant of a tuning spec costs about what its method costs in
    the spec it tunes)."""
    for pattern in (f"{spec.name}/{task}/{method}", f"*/{task}/{method}", f"*/{task}/{spec.method(method).method}"):
        folders = sorted(p.parent for p in REFERENCE.glob(f"{pattern}/seed*/metrics.json"))
        if folders:
            return folders
    return []


def reference_seconds(spec: Spec, task: str, method: str) -> float | None:
    """Mean wall time of the cells that stand for (spec, task, method); None when no
    committed cell says."""
    times = [json.loads((f / "metrics.json").read_text()).get("wall_s") for f in _reference_folders(spec, task, method)]
    times = [t for t in times if isinstance(t, (int, float))]
    return sum(times) / len(times) if times else None


def reference_shares(spec: Spec, task: str, method: str) -> tuple[float, ...] | None:
    """The share of the standing-for cells' time spent by the end of each round, from
    their evals.csv (each round's wall time), mean over those that ran this spec's
    rounds; None when none did."""
    shares = []
    for folder in _reference_folders(spec, task, method):
        try:
            walls = pd.read_csv(folder / "evals.csv")["wall_s"].to_numpy(dtype=float)
        except (OSError, KeyError, ValueError):
            continue
        if len(walls) == len(spec.rounds) + 1 and walls.sum() > 0:
            shares.append(walls.cumsum() / walls.sum())
    return tuple(float(x) for x in np.mean(shares, 0)) if shares else None


def split_cells(spec: Spec, out: Path, rerun: bool, processes: int = 1) -> tuple[list[Cell], list[dict[str, Any]]]:
    """The spec's cells still to run, and the metrics of those finished by this code
    with these settings (`finished`), each cell on `processes` processes."""
    shards = spec.shards_for(processes)
    todo, done = [], []
    codes: dict[tuple[str, str], dict[str, str]] = {}
    references: dict[tuple[str, str], tuple[float | None, tuple[float, ...] | None]] = {}
    for task, method, seed in spec.cells():
        folder = cell_dir(out, spec, task, method, seed)
        if (task, method) not in codes:  # one hash and one read of the reference per (task, method), not per seed
            codes[task, method] = cell_code(spec, task, method)
            references[task, method] = reference_seconds(spec, task, method), reference_shares(spec, task, method)
        if finished(folder, cell_settings(spec, task, method, seed, shards), codes[task, method], rerun):
            done.append(json.loads((folder / "metrics.json").read_text()))
        else:
            seconds, shares = references[task, method]
            todo.append(Cell(spec, task, method, seed, seconds, processes, shares))
    return todo, done


def expected_seconds(cell: Cell) -> float:
    """A cell's weight in the progress bar: its reference time, or `UNKNOWN_CELL_S`."""
    return UNKNOWN_CELL_S if cell.reference_s is None else cell.reference_s


def machine_factor(yardstick_s: float, stored: Path = REFERENCE_MACHINE) -> float | None:
    """This machine's yardstick time over the reference machine's (2.0: half as fast), or
    None where no reference time is stored."""
    if not stored.exists():
        return None
    return yardstick_s / float(json.loads(stored.read_text())["yardstick_s"])


def plan(specs: list[Spec], out: Path, workers: int, rerun: bool, processes: int = 1,
         factor: float | None = None) -> str:
    """One line: cells in all, finished, to run, and the expected wall time, scaled by
    `factor` (`machine_factor`) where given."""
    total = done = unknown = 0
    seconds = 0.0
    for spec in specs:
        todo_cells, done_cells = split_cells(spec, out, rerun, processes)
        total += len(todo_cells) + len(done_cells)
        done += len(done_cells)
        unknown += sum(cell.reference_s is None for cell in todo_cells)
        seconds += sum(cell.reference_s or 0.0 for cell in todo_cells)
    todo = total - done
    line = (f"{total} cell{'s' * (total != 1)} in {len(specs)} spec{'s' * (len(specs) > 1)}: {done} finished, {todo} to run "
            f"on {workers} worker{'s' * (workers > 1)}")
    if todo and todo > unknown:
        minutes = seconds / min(workers, todo) / 60
        if factor is None:
            line += f"; expected about {minutes:.0f} min from the reference run's cell times"
        else:
            line += (f"; expected about {minutes * factor:.0f} min on this machine (the reference run's cell times, "
                     f"{minutes:.0f} min, x {factor:.2f}: its yardstick against the reference machine's)")
        if unknown:
            line += f" ({unknown} cells without a reference time not counted)"
    return line
