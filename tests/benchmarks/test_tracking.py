"""Per-round logging to a tracker (accelerate's TensorBoard tracker here): a
tiny cell run with --log-with writes one TensorBoard run whose scalars are the
rounds of its evals.csv, at the queries spent so far."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from benchmarks.cli import main
from benchmarks.tracking import Tracking

pytest.importorskip("tensorboard", reason="the `track` extra (accelerate, tensorboard) is not installed")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from tests.tiny_run import TINY as TINY_SETTINGS

TINY = [*TINY_SETTINGS, "--no-report"]


def test_a_cell_logs_every_round_to_tensorboard_at_the_queries_spent(tmp_path):
    out, logs = tmp_path / "results", tmp_path / "tb"
    assert main(["run", "protein", "--out", str(out), *TINY, "--log-with", "tensorboard", "--log-dir", str(logs)]) == 0
    run = logs / "protein" / "ehrlich-l32-c2-k4" / "greedy" / "seed0"
    events = EventAccumulator(str(run))
    events.Reload()
    evals = pd.read_csv(out / "protein" / "ehrlich-l32-c2-k4" / "greedy" / "seed0" / "evals.csv")
    value = events.Scalars("value")
    assert [e.step for e in value] == evals["queries_used"].tolist() == [0, 8, 16]
    assert [e.value for e in value] == pytest.approx(evals["value"].tolist(), abs=1e-6)
    assert {"feasible_fraction", "learned_reward"} <= set(events.Tags()["scalars"])


def test_an_unknown_tracker_is_refused():
    with pytest.raises(ValueError, match="unknown tracker 'mlflow'"):
        Tracking("mlflow", Path("logs"))
