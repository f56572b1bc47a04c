"""The README's worked examples are tests: they must run as printed.

Blocks fenced ```python, ```yaml and ```bash that begin with a file name
comment (`# my_tasks.py`) are written to that file; the `seiko-bench` lines of
the "Your own task" section are run in order, with only their sizes shrunk
(pretraining steps, seeds) so that the test fits the suite. Blocks fenced
```py need what this machine lacks (Stable Diffusion weights, a GPU) and are
only read."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks.cli import main

README = Path(__file__).resolve().parent.parent / "README.md"
# Shrunk sizes, appended to the README's own commands: the example's shape, a test's cost.
SHRINK = {"pretrain": ["--steps", "200"],
          "run": ["--set", "seeds=[0]", "--set", "rounds=[16,32]", "--set", "eval_samples=16",
                  "--set", "config.seiko-ucb.finetune_steps=5", "--workers", "2"]}


def section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start:end]


def blocks(text: str, fence: str) -> list[str]:
    return re.findall(rf"```{fence}\n(.*?)```", text, re.S)


def my_designs(path: Path, n: int = 400, length: int = 24) -> None:
    """What a lab would have: designs of one length, none with a run of 5 equal bases."""
    rng = np.random.default_rng(0)
    rows = []
    while len(rows) < n:
        design = "".join(rng.choice(list("ACGT"), length))
        if re.search(r"(.)\1{4}", design) is None:
            rows.append(design)
    path.write_text("\n".join(rows) + "\n")


@pytest.mark.slow
def test_own_task_example_runs_through_the_runner_and_resumes(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    my_designs(tmp_path / "my_designs.txt")
    own = section("Your own task")
    for block in blocks(own, "python") + blocks(own, "yaml"):
        first = block.splitlines()[0]
        if first.startswith("# ") and "." in first:
            (tmp_path / first[2:].strip()).write_text(block)
    commands = [line for block in blocks(own, "bash") for line in block.splitlines() if line.startswith("seiko-bench")]
    assert [c.split()[1] for c in commands] == ["pretrain", "run"]
    for command in commands:
        argv = shlex.split(command)[1:]
        assert main(argv + SHRINK[argv[0]]) == 0, capsys.readouterr().err

    report = json.loads((tmp_path / "my_model.json").read_text())["metadata"]["pretrain"]
    assert report["length"] == 24 and report["alphabet"] == "ACGT"
    task_dir = tmp_path / "my-results" / "my_spec" / "gc-content"
    for method in ("seiko-ucb", "genetic", "large-scale-rl"):
        cell = task_dir / method / "seed0"
        log = pd.read_csv(cell / "queries.csv")
        # Every proposal is logged and was paid for, or repeated an earlier one for free; a round
        # whose repeats left budget unspent was topped up, so each round charged its queries.
        assert (log["charged"] | log["cached"]).all()
        assert log[log["charged"]].groupby("round").size().tolist() == [16, 32]
        assert log.loc[log["feasible"], "reward"].between(0, 1).all()
        metrics = json.loads((cell / "metrics.json").read_text())
        assert metrics["queries_used"] == log["charged"].sum() == 48
        assert metrics["eval_oracle_calls"] == 16 * 3
        assert metrics["settings"]["task_source"] == "my_tasks.py:make_task"
    assert (task_dir / "leaderboard.md").exists() and (tmp_path / "my-results" / "README.md").exists()

    # Rerun: every cell is finished, nothing is recomputed.
    before = {p: p.stat().st_mtime_ns for p in task_dir.rglob("metrics.json")}
    assert main(shlex.split(commands[1])[1:] + SHRINK["run"]) == 0
    assert {p: p.stat().st_mtime_ns for p in task_dir.rglob("metrics.json")} == before


def test_python_example_spends_its_whole_budget(capsys):
    (example,) = blocks(section("Your own task"), "python")[1:]
    namespace: dict = {}
    exec(compile(example, str(README), "exec"), namespace)
    log = namespace["oracle"].log()
    assert log["charged"].sum() == 96 and namespace["oracle"].remaining == 0
    assert {"call", "round", "key", "reward", "feasible", "charged", "cached"} <= set(log.columns)
    assert [r.round for r in namespace["records"]] == [0, 1, 2]
    assert "held-out value" in capsys.readouterr().out
