"""Killing a run is safe, tested by killing real processes: a parent killed by
SIGKILL takes its pool workers, or the processes of its data-parallel cell,
with it (none goes on writing into the results folder), one Ctrl-C lets
the running cells finish and starts no queued one, and SIGTERM stops the run
at once and still writes the report of the cells that finished."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CELLS = [
    "--set", "rounds=[16,16,16]", "--set", "seeds=[0,1,2,3]", "--set", "methods=[greedy]", "--set", "eval_samples=8",
    "--set", "config.greedy.finetune_steps=3", "--set", "config.greedy.batch_size=4",
    "--set", "config.greedy.reward_model.steps=5", "--workers", "2", "--no-report",
]  # fmt: skip
CELL_FOLDERS = "protein/ehrlich-l32-c2-k4/greedy/seed*"

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads process parents from /proc")


def start(out: Path, *extra: str, report: bool = False) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cells = CELLS if not report else [a for a in CELLS if a != "--no-report"]
    return subprocess.Popen([sys.executable, "-m", "benchmarks.cli", "run", "protein", "--out", str(out), *cells, *extra],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def workers(parent: int) -> list[int]:
    """Pids of the pool workers of `parent` (multiprocessing's spawned children, not its resource tracker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and b"spawn_main" in command:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def kill_group(run: subprocess.Popen) -> None:
    """Whatever the test left of the run's process group (nothing, when the code is right)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(run.pid, signal.SIGKILL)


def snapshot(out: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_mtime_ns, p.stat().st_size) for p in out.rglob("*") if p.is_file()}


@pytest.mark.parametrize("extra, started", [
    ((), lambda out, run: len(list(out.glob(CELL_FOLDERS))) == 2),  # two pool workers, a cell each
    (("--processes", "2", "--workers", "1", "--set", "seeds=[0]"),  # one cell on two processes
     lambda out, run: len(workers(run.pid)) == 2 and any(out.glob(CELL_FOLDERS))),
], ids=["pool-workers", "data-parallel-processes"])
def test_the_children_of_a_parent_killed_by_sigkill_stop_and_write_nothing_more(tmp_path, extra, started):
    run = start(tmp_path, *extra)
    try:
        wait_until(lambda: started(tmp_path, run), 120, "two children to start")
        pids = workers(run.pid)
        assert len(pids) == 2
        run.kill()
        run.wait(10)
        wait_until(lambda: not any(alive(pid) for pid in pids), 5, "the orphaned children to exit")
        before = snapshot(tmp_path)
        time.sleep(2)
        assert snapshot(tmp_path) == before
    finally:
        kill_group(run)


@pytest.mark.parametrize("seeds", ["[0,1,2,3]", "[0,1]"])
def test_one_ctrl_c_finishes_the_running_cells_and_starts_no_queued_one(tmp_path, seeds):
    run = start(tmp_path, "--set", f"seeds={seeds}")
    try:
        wait_until(lambda: len(list(tmp_path.glob(CELL_FOLDERS))) == 2, 120, "two cells to start")
        run.send_signal(signal.SIGINT)
        out, err = run.communicate(timeout=300)
    finally:
        kill_group(run)
    assert run.returncode == 130
    assert "finishing 2 running cells; Ctrl-C again to abort" in err and "Traceback" not in err
    folders = sorted(tmp_path.glob(CELL_FOLDERS))
    assert len(folders) == 2 and all((f / "metrics.json").exists() for f in folders)  # finished, and no third began
    assert sorted(line.split(":")[0] for line in out.splitlines() if ": value " in line) == [
        f"protein/ehrlich-l32-c2-k4 greedy seed{f.name[-1]}" for f in folders]  # each drained cell says its value
    # The manifest, written when the run started, says complete when the drained cells complete the spec, and only then.
    assert json.loads((tmp_path / "protein" / "manifest.json").read_text())["complete"] == (seeds == "[0,1]")


def test_sigterm_stops_the_run_and_still_writes_the_report_of_what_finished(tmp_path):
    run = start(tmp_path, report=True)
    try:
        wait_until(lambda: any(tmp_path.glob(f"{CELL_FOLDERS}/metrics.json")), 180, "a cell to finish")
        run.send_signal(signal.SIGTERM)
        _, err = run.communicate(timeout=120)
    finally:
        kill_group(run)
    assert run.returncode == 143, err
    assert "Traceback" not in err and "stopped; the report above covers the cells finished so far" in err
    finished = len(list(tmp_path.glob(f"{CELL_FOLDERS}/metrics.json")))
    assert 1 <= finished < 4
    board = (tmp_path / "protein" / "ehrlich-l32-c2-k4" / "leaderboard.md").read_text()
    assert f"| greedy | {finished} |" in board and (tmp_path / "index.html").exists()
    before = snapshot(tmp_path)  # the stopped cells' workers were killed with the run: nothing writes any more
    time.sleep(2)
    assert snapshot(tmp_path) == before
