"""A cell killed with SIGKILL goes on from its last finished round: tested by
killing a real `seiko-bench run` in the middle of a round, after the oracle
answered that round's queries and before the round's checkpoint, and running
it again. The resumed cell's query log and round records are those of a run
that was never killed, and the oracle (a shipped Ehrlich task that also writes
every design it is asked to a file, which no checkpoint can undo) was asked
exactly what the uninterrupted run asked: no query twice."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from benchmarks.checkpoint import JOURNAL, NAME

ROOT = Path(__file__).resolve().parents[2]
ASKED = "SEIKO_TEST_ASKED"  # the file the oracle appends every design it is asked to


class _Recording:
    """The task's oracle, appending the key of every design it answers to the file named by $SEIKO_TEST_ASKED."""

    def __init__(self, oracle):
        self._oracle = oracle

    def __getattr__(self, name):
        return getattr(self._oracle, name)

    def __call__(self, designs):
        with open(os.environ[ASKED], "a") as f:
            f.writelines(self._oracle.key(d) + "\n" for d in designs)
        return self._oracle(designs)


def make_task():
    """The default protein task with a recording oracle (a user's task, by import path)."""
    import dataclasses

    from domains.tasks import get_task

    task = get_task("ehrlich-l32-c2-k4")
    return dataclasses.replace(task, name="recorded-ehrlich", oracle=_Recording(task.oracle))


SETTINGS = [
    "--set", f"tasks=[{__file__}:make_task]", "--set", "rounds=[8,8,8,8]", "--set", "seeds=[0]",
    "--set", "methods=[greedy]", "--set", "eval_samples=8", "--set", "evaluation=task", "--set", "auc_freq=4",
    "--set", "config.greedy.finetune_steps=40", "--set", "config.greedy.batch_size=4",
    "--set", "config.greedy.reward_model.steps=5", "--workers", "1", "--no-report",
]  # fmt: skip
CELL = "protein/recorded-ehrlich/greedy/seed0"


def start(out: Path, asked: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", ASKED: str(asked)}
    return subprocess.Popen([sys.executable, "-m", "benchmarks.cli", "run", "protein", "--out", str(out), *SETTINGS],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def finish(run: subprocess.Popen) -> None:
    _, err = run.communicate(timeout=600)
    assert run.returncode == 0, err


def without_times(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=[c for c in frame.columns if c in ("wall_s", "peak_rss_mb")])


@pytest.mark.skipif(sys.platform != "linux", reason="kills a process group")
def test_a_cell_killed_between_rounds_resumes_and_asks_no_query_twice(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    finish(start(whole, tmp_path / "whole-asked.txt"))

    asked = tmp_path / "killed-asked.txt"
    run = start(killed, asked)
    evals = killed / CELL / "evals.csv"
    try:
        deadline = time.monotonic() + 300
        # Round 3's queries answered (8 held-out designs scored after rounds 0-2, 8 queries in
        # each of rounds 1-3), its update still running: kill without warning.
        while not (evals.exists() and len(evals.read_text().splitlines()) == 4 and asked.exists()
                   and len(asked.read_text().splitlines()) >= 6 * 8):
            assert run.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "timed out waiting for round 2"
            time.sleep(0.05)
        os.killpg(run.pid, signal.SIGKILL)
        run.wait(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.pid, signal.SIGKILL)
    assert not (killed / CELL / "metrics.json").exists() and (killed / CELL / NAME).exists()
    asked_before = asked.read_text().splitlines()

    finish(start(killed, asked))
    assert not (killed / CELL / NAME).exists() and not (killed / CELL / JOURNAL).exists()  # gone once finished
    keys = asked.read_text().splitlines()
    assert len(keys) > len(asked_before)  # the rerun went on asking
    # Evaluation scores held-out designs with the same oracle, so a key may repeat, as it does
    # in the uninterrupted run; the killed one asked nothing more than that.
    assert sorted(keys) == sorted((tmp_path / "whole-asked.txt").read_text().splitlines())
    for name in ("queries.csv", "evals.csv"):
        pd.testing.assert_frame_equal(without_times(pd.read_csv(killed / CELL / name)),
                                      without_times(pd.read_csv(whole / CELL / name)))
