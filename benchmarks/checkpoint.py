"""A cell's checkpoint: written after every round, read back by a rerun of a killed cell.

It holds everything a cell changes as it runs: the loop's state (`loop.Progress`:
the feedback bought and the round records), the method (its optimiser, reward
models, reference copies, generators, trajectories), the model being
fine-tuned, the budgeted oracle (its cache, log and spent budget), the global
random states and the wall time spent. A rerun rebuilds the task, then
restores these and goes on from the next round, answering the designs that the
interrupted round had already bought from the oracle's journal (`JOURNAL`): no
query is asked twice, and the cell ends as an uninterrupted one would (a test
kills one with SIGKILL in the middle of a round and compares). On another
machine, whose kernels round differently, the resumed round may propose other
designs; the journalled ones are then paid for and unused.

What the task builds the same way every time (its oracle, featuriser, search
moves, pretraining data and evaluation oracle) is not written: pickle's
persistent ids name it, and the rebuilt task's objects take its place, so a
checkpoint costs the size of what a run has changed, not of an ESM or a CLIP
model. A method may hold lambdas and closures (guidance's guide), which the
standard pickle refuses: cloudpickle writes them, which is why it is used.
"""

from __future__ import annotations

import io
import pickle
import random
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import torch

from domains.base import Task
from reports.files import atomic_write

NAME = "checkpoint.pkl"
JOURNAL = "answers.jsonl"
"""The budgeted oracle's journal of every answer as it came (`BudgetedOracle.prepay`):
what a round a kill interrupted had bought after the checkpoint was taken."""


def _static(task: Task, evaluation: Any) -> dict[str, Any]:
    """The task's objects that a rebuilt task holds again, by a stable name."""
    parts = {"oracle": task.oracle, "featuriser": task.featuriser, "operators": task.operators,
             "pretraining_data": task.pretraining_data, "evaluation": evaluation,
             "task_evaluation": task.evaluation}
    return {name: obj for name, obj in parts.items() if obj is not None and not isinstance(obj, str)}


class _Pickler(cloudpickle.Pickler):
    def __init__(self, file: io.BytesIO, static: dict[str, Any]):
        super().__init__(file)
        self._names = {id(obj): name for name, obj in static.items()}

    def persistent_id(self, obj: Any) -> str | None:
        return self._names.get(id(obj))


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, static: dict[str, Any]):
        super().__init__(file)
        self._static = static

    def persistent_load(self, name: str) -> Any:
        return self._static[name]


def save(folder: Path, identity: dict[str, Any], task: Task, evaluation: Any, state: dict[str, Any]) -> None:
    """Write `state` (any picklable objects) with the global random states, atomically.
    `identity` (the cell's settings fingerprint and code version) must match for a rerun to use it."""
    buffer = io.BytesIO()
    pickle.dump(identity, buffer)  # first and plain, so that a checkpoint of other code is never unpickled
    rng = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    _Pickler(buffer, _static(task, evaluation)).dump({"rng": rng, **state})
    atomic_write(folder / NAME, buffer.getvalue())


def load(folder: Path, identity: dict[str, Any], task: Task, evaluation: Any) -> dict[str, Any] | None:
    """The state of the last finished round of a killed cell, with the global random
    states restored; None when there is no checkpoint, or one of other settings or code."""
    path = folder / NAME
    if not path.exists():
        return None
    buffer = io.BytesIO(path.read_bytes())
    try:
        if pickle.load(buffer) != identity:
            return None
        state = _Unpickler(buffer, _static(task, evaluation)).load()
    except Exception as err:  # written atomically, so only a damaged disk or a hand edit gets here
        raise ValueError(f"{path} cannot be read ({type(err).__name__}: {err}); delete it to run the cell "
                         "again from the start") from None
    rng = state.pop("rng")
    torch.set_rng_state(rng["torch"])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])
    return state
