"""What a run is about to do: cells to run and finished, and the time it should take.

The expected time comes from the reference run committed in `results/`: each
cell still to run counts the wall time its (spec, task, method) took there, on
average over seeds, and the total is shared among the workers. It is a
forecast for the machine that made the reference (2 cores), not a promise.
"""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.runner import split_cells
from benchmarks.spec import Spec

REFERENCE = Path(__file__).resolve().parent.parent / "results"


def reference_seconds(spec: Spec, task: str, method: str) -> float | None:
    """Mean wall time of the reference cells of (spec, task, method), or None."""
    times = [json.loads(p.read_text()).get("wall_s") for p in (REFERENCE / spec.name / task / method).glob("seed*/metrics.json")]
    times = [t for t in times if isinstance(t, (int, float))]
    return sum(times) / len(times) if times else None


def plan(specs: list[Spec], out: Path, workers: int, rerun: bool) -> str:
    """One line: cells in all, finished, to run, and the expected wall time."""
    total = done = unknown = 0
    seconds = 0.0
    for spec in specs:
        todo_cells, done_cells = split_cells(spec, out, rerun)
        total += len(todo_cells) + len(done_cells)
        done += len(done_cells)
        for task, method, _ in todo_cells:
            reference = reference_seconds(spec, task, method)
            if reference is None:
                unknown += 1
            else:
                seconds += reference
    todo = total - done
    line = (f"{total} cells in {len(specs)} spec{'s' * (len(specs) > 1)}: {done} finished, {todo} to run "
            f"on {workers} worker{'s' * (workers > 1)}")
    if todo and todo > unknown:
        line += f"; expected about {seconds / min(workers, todo) / 60:.0f} min from the reference run's cell times"
        if unknown:
            line += f" ({unknown} cells without a reference time not counted)"
    return line
