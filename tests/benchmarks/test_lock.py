"""One writer per results folder, tested with real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.cli import main
from benchmarks.lock import LOCK_NAME

REPO = Path(__file__).resolve().parents[2]
TINY = ["protein", "--set", "rounds=[4]", "--set", "seeds=[0]", "--set", "methods=[best-of-n]",
        "--set", "eval_samples=4", "--workers", "1", "--no-report"]
HOLD = ("import sys, time; from pathlib import Path; from benchmarks.lock import results_lock\n"
        "with results_lock(Path(sys.argv[1])):\n    print('locked', flush=True); time.sleep(60)\n")


@pytest.fixture
def holder(tmp_path):
    """Another process holding the lock of `tmp_path`, killed at the end."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE,
                               text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert process.stdout.readline().strip() == "locked"
    yield process
    process.kill()
    process.wait()


def test_a_second_run_on_a_locked_folder_fails_in_one_line_naming_the_holder(tmp_path, holder, capsys):
    assert main(["run", "--out", str(tmp_path), *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"seiko-bench: error: another seiko-bench run (pid {holder.pid}) is writing to {tmp_path}; "
                   "wait for it to end or pass another --out")
    assert not (tmp_path / "protein").exists()  # it wrote nothing


def test_a_killed_holder_leaves_the_folder_free(tmp_path, holder):
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert main(["run", "--out", str(tmp_path), *TINY]) == 0
    assert (tmp_path / "protein" / "ehrlich-l32-c2-k4" / "best-of-n" / "seed0" / "metrics.json").exists()
    assert (tmp_path / LOCK_NAME).read_text().strip() == str(os.getpid())  # the last holder


def test_temp_files_of_a_killed_write_are_removed_by_the_next_run(tmp_path):
    cell = tmp_path / "protein" / "ehrlich-l32-c2-k4" / "best-of-n" / "seed0"
    cell.mkdir(parents=True)
    (cell / ".queries.csv.0a1b2c.tmp").write_text("half a write")
    assert main(["run", "--out", str(tmp_path), *TINY]) == 0
    assert not list(tmp_path.rglob("*.tmp"))
