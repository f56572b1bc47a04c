"""Per-round logging of cells to the trackers researchers already watch
(TensorBoard, Weights & Biases), through accelerate's tracker interface.

Off by default: the results folder is the record, a tracker is a view of a
running benchmark. Each cell is one tracker run named spec/task/method/seedN,
its settings stored as the run's configuration; every round logs the held-out
value, feasibility, learned reward and the method's diagnostics at a step equal
to the queries spent so far, so curves share the x-axis of the report's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TRACKERS = ("tensorboard", "wandb")


@dataclass(frozen=True)
class Tracking:
    """Where a run's cells log: the tracker's name and, for TensorBoard, the folder of its event files."""

    kind: str
    directory: Path

    def __post_init__(self) -> None:
        if self.kind not in TRACKERS:
            raise ValueError(f"unknown tracker {self.kind!r}: expected one of {', '.join(TRACKERS)}")

    def open(self, run_name: str, config: dict[str, Any]) -> Any:
        """A started accelerate tracker for one cell, its configuration stored."""
        if self.kind == "tensorboard":
            from accelerate.tracking import TensorBoardTracker

            tracker = TensorBoardTracker(run_name, self.directory)
        else:
            from accelerate.tracking import WandBTracker

            tracker = WandBTracker("seiko-bench", name=run_name, dir=str(self.directory))
        if hasattr(tracker, "start"):  # accelerate >= 1.4 opens the writer here, not in __init__
            tracker.start()
        tracker.store_init_configuration(_flat(config))
        return tracker


def round_values(row: dict[str, Any]) -> dict[str, float]:
    """The numbers of one round's record (`RoundRecord.row()`, diagnostics included), finite
    ones only: a NaN (no learned reward yet) is left out rather than drawn as a gap."""
    return {k: float(v) for k, v in row.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))}


def _flat(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as one level of scalars (what TensorBoard's hparams take)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat(value, name + "/"))
        else:
            out[name] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return out
