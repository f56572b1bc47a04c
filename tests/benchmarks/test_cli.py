"""`seiko-bench` list / run / report, and its one-line errors on bad input.

Every bad command is run against a results folder that already holds a
finished tiny cell and its report, and must leave those files as they were.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.cli import main
from benchmarks.lock import LOCK_NAME
from domains.base import OracleOutput
from domains.sequences.ehrlich import Ehrlich
from tests.tiny_run import TINY

TASK = "ehrlich-l32-c2-k4"
METHODS = ["seiko-ucb", "seiko-bootstrap", "seiko-ts", "greedy", "non-adaptive"]

ERROR = "seiko-bench: error: "


def snapshot(out: Path) -> dict[str, tuple[int, bytes]]:
    """Every result file under `out`, the manifest included: (mtime, bytes); not the
    lock, which every run takes (benchmarks/lock.py)."""
    return {str(p.relative_to(out)): (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(out.rglob("*"))
            if p.is_file() and p.name != LOCK_NAME}


def error_line(err: str) -> str:
    """The one error line a failed command ends stderr with, on a line of its own
    (not glued to a progress bar left open); no traceback above it."""
    assert "Traceback" not in err
    assert err.endswith("\n") and err.count(ERROR) == 1, repr(err)
    line = err[:-1].rpartition("\n")[2]
    assert line.startswith(ERROR) and "\r" not in line and "\x1b" not in line, repr(err)
    return line


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A results folder with one finished tiny greedy cell and its report."""
    out = tmp_path_factory.mktemp("results")
    assert main(["run", "protein", "--out", str(out), *TINY]) == 0
    return out


def test_list_shows_tasks_methods_and_specs(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    tasks, methods, specs = out.split("tasks (domain):")[1], out.split("methods:")[1], out.split("specs:")[1]
    assert f"{TASK}  (protein)" in tasks
    for method in METHODS:
        assert f"  {method} " in methods
    assert "\n  protein\n" in specs and "protein-quick dna-quick  (default)" in specs


def test_run_writes_the_cell_and_the_report(finished):
    folder = finished / "protein" / TASK
    assert {p.name for p in (folder / "greedy" / "seed0").iterdir()} == {"queries.csv", "evals.csv", "metrics.json"}
    assert (folder / "leaderboard.md").exists() and (folder / "curves.png").exists()
    assert (finished / "README.md").exists()


def test_report_writes_leaderboard_and_curves_per_task(finished, capsys):
    folder = finished / "protein" / TASK
    for name in ("leaderboard.md", "curves.png"):
        (folder / name).unlink()
    assert main(["report", str(finished)]) == 0
    assert "report:" in capsys.readouterr().out
    leaderboard = (folder / "leaderboard.md").read_text()
    assert f"protein / {TASK}" in leaderboard and "greedy" in leaderboard
    assert (folder / "curves.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_report_without_finished_cells_is_a_one_line_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "no finished cells" in error_line(capsys.readouterr().err)


def bad_yaml(tmp_path: Path) -> list[str]:
    path = tmp_path / "broken.yaml"
    path.write_text(f"tasks: [{TASK}]\nmethods: [greedy\nseeds: [0]\nrounds: [8, 8]\n")
    return [str(path)]


BAD_INPUTS = {
    "malformed-yaml": (bad_yaml, "malformed YAML in"),
    "unknown-task": (lambda _: ["protein", "--set", "tasks=[ehrlich-l32-c2-k5]"],
                     f"unknown task 'ehrlich-l32-c2-k5'; did you mean '{TASK}'?"),
    "unknown-method": (lambda _: ["protein", "--set", "methods=[greedi]"], "unknown method 'greedi'; did you mean 'greedy'?"),
    "unknown-spec": (lambda _: ["protien"], "unknown spec 'protien'; did you mean 'protein'?"),
    "unknown-setting": (lambda _: ["protein", "--set", "config.greedy.kl_wieght=1"], "greedy: unknown setting 'kl_wieght'"),
    "budget-below-one-round": (lambda _: ["protein", "--set", "budget=4"], "budget 4 is smaller than one round (8 queries)"),
    "budget-not-sum-of-rounds": (lambda _: ["protein", "--set", "budget=12"], "sum to 16 but budget is 12"),
}


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_bad_input_is_one_line_error_and_keeps_earlier_results(name, finished, tmp_path, capsys):
    make_args, message = BAD_INPUTS[name]
    before = snapshot(finished)
    manifest = (finished / "protein" / "manifest.json").read_bytes()
    spec, *settings = make_args(tmp_path)  # the spec, then settings laid over TINY's
    assert main(["run", spec, "--out", str(finished), *TINY, *settings]) == 2
    captured = capsys.readouterr()
    assert message in error_line(captured.err)
    assert captured.err.count("\n") == 1  # rejected before any cell started: nothing else on stderr
    assert snapshot(finished) == before
    assert (finished / "protein" / "manifest.json").read_bytes() == manifest  # nothing ran at all


def raises(self, designs):
    raise RuntimeError("lab robot on fire")


def nan_for_feasible(self, designs):
    return OracleOutput(reward=np.full(len(designs), math.nan), feasible=np.ones(len(designs), dtype=bool))


@pytest.mark.parametrize(
    "oracle, message",
    [
        (raises, "raised RuntimeError on a batch of 8: lab robot on fire"),
        (nan_for_feasible, "returned a non-finite reward (nan) for feasible design 0"),
    ],
    ids=["raises", "nan"],
)
def test_failing_oracle_is_one_line_error_and_keeps_earlier_results(oracle, message, finished, monkeypatch, capsys):
    before = snapshot(finished)
    monkeypatch.setattr(Ehrlich, "__call__", oracle)
    # seed 1 is a new cell, so the oracle is really asked (seed 0 is finished and skipped).
    assert main(["run", "protein", "--out", str(finished), *TINY, "--set", "seeds=[0,1]"]) == 2
    line = error_line(capsys.readouterr().err)
    assert line.startswith(f"{ERROR}oracle 'ehrlich-v20-l32-c2-k4") and message in line
    # Every cell file as it was; the manifest now describes the failed run, incomplete.
    kept = {k: v for k, v in snapshot(finished).items() if "seed1" not in k and k != "protein/manifest.json"}
    assert kept == {k: v for k, v in before.items() if k != "protein/manifest.json"}
    assert json.loads((finished / "protein" / "manifest.json").read_text())["complete"] is False
    assert not (finished / "protein" / TASK / "greedy" / "seed1" / "metrics.json").exists()


def test_console_script_prints_one_line_and_exits_non_zero(finished):
    script = Path(sys.executable).parent / "seiko-bench"
    before = snapshot(finished)
    result = subprocess.run(
        [str(script), "run", "protein", "--out", str(finished), *TINY, "--set", "methods=[greedy,seiko-tss]"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [f"{ERROR}unknown method 'seiko-tss'; did you mean 'seiko-ts'?"]
    assert result.stdout == ""
    assert snapshot(finished) == before


def test_a_bad_command_prints_one_line_and_no_dependency_warning():
    """Loading the DNA spec imports torch_geometric, which scripts functions with the deprecated
    torch.jit.script; with every warning shown (PYTHONWARNINGS=default), stderr is still one line."""
    import os

    done = subprocess.run([sys.executable, "-m", "benchmarks.cli", "run", "dna", "--set", "methods=[nosuch]"],
                          capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "default"},
                          cwd=Path(__file__).resolve().parents[2], timeout=300)
    assert done.returncode == 2
    assert "unknown method 'nosuch'" in error_line(done.stderr)
    assert done.stderr.count("\n") == 1, done.stderr


def test_pretraining_runs_on_one_torch_thread_unless_told_otherwise(monkeypatch, capsys):
    import torch

    import benchmarks.cli as cli

    seen = []
    monkeypatch.setattr(cli, "pretrain", lambda *a, **k: seen.append(torch.get_num_threads()) or {})
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert main(["pretrain", TASK, "--steps", "1"]) == 0
        assert main(["pretrain", TASK, "--steps", "1", "--threads", "2"]) == 0
    finally:
        torch.set_num_threads(before)
    assert seen == [1, 2]
    assert main(["pretrain", TASK, "--threads", "0"]) == 2
    assert "--threads must be at least 1" in error_line(capsys.readouterr().err)


def test_sample_scores_the_pretrained_model_with_the_tasks_oracle(capsys):
    assert main(["sample", TASK, "-n", "16", "--show", "2"]) == 0
    out = capsys.readouterr().out
    summary = json.loads(out[: out.rindex("}") + 1])
    assert summary["task"] == TASK and summary["samples"] == 16 and 0.5 < summary["feasible_fraction"] <= 1
    assert 0 <= summary["reward_mean"] <= summary["reward_max"] <= summary["optimum"] == 1.0
    best = out[out.rindex("}") + 1:].split()
    assert len(best) == 4 and float(best[0]) == summary["reward_max"] and len(best[1]) == 32
    assert main(["sample", TASK, "-n", "0"]) == 2
    assert "-n must be at least 1" in error_line(capsys.readouterr().err)


def test_a_dry_run_says_what_would_run_and_its_cost_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "never"
    assert main(["run", "protein", "--out", str(out), "--dry-run", *TINY]) == 0
    shown = capsys.readouterr().out
    assert "dry run: 1 cell in 1 spec: 0 finished, 1 to run on 1 worker" in shown
    assert "protein: 1 cell, 0 current, 0 stale, 1 missing" in shown
    assert not out.exists()


def test_the_progress_bar_says_it_is_measuring_until_work_is_done_then_the_speed():
    from benchmarks.estimate import Cell
    from benchmarks.runner import _Progress

    progress = _Progress([Cell(None, TASK, "greedy", 0, 100.0)], 0)
    try:
        assert progress.speed().startswith("measuring this machine's speed")
        progress.bar.start_t -= 10  # ten seconds in, half the reference cell's work done
        progress.show(50.0, "")
        assert progress.speed().endswith("x the reference run's speed")
        assert 4.0 < float(progress.speed().split("x")[0]) < 6.0
    finally:
        progress.close()


def test_a_spec_path_that_is_a_folder_is_one_line(tmp_path, capsys):
    folder = tmp_path / "adir.yaml"
    folder.mkdir()
    assert main(["run", str(folder), "--out", str(tmp_path / "out")]) == 2
    assert "is a folder, not a spec file" in error_line(capsys.readouterr().err)


def test_an_os_error_writing_results_is_one_line(finished, monkeypatch, capsys):
    import reports

    def refuse(path, data):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(reports, "atomic_write", refuse)
    assert main(["report", str(finished)]) == 2
    line = error_line(capsys.readouterr().err)
    assert "Permission denied" in line and str(finished) in line


def test_an_unreachable_ray_address_fails_fast_in_one_line(tmp_path, capsys):
    import time

    pytest.importorskip("ray")
    start = time.monotonic()
    assert main(["run", "protein", "--out", str(tmp_path), "--executor", "ray", "--address", "127.0.0.1:1",
                 *TINY[:-2]]) == 2
    assert time.monotonic() - start < 30
    assert "--address 127.0.0.1:1: nothing answers there" in error_line(capsys.readouterr().err)
