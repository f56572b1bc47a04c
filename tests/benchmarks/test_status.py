"""Code versions that see code, and stale cells shown instead of failed.

The code version hashes syntax trees: a docstring or comment edit leaves the
code version of every committed cell as it is, a changed constant in the loop
or in the AUC computation changes them all, a changed line in one method
exactly that method's (measured on the code versions, so these hold whether
the committed cells are current or stale). A stale cell is listed by `seiko-bench status` (which fails
under --strict), marked in the leaderboard and the HTML, and remade by the
next `seiko-bench run` of its spec, alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import code_version
from benchmarks.cli import main
from benchmarks.code_version import cell_code
from benchmarks.spec import load_spec
from benchmarks.status import BROKEN, spec_states
from tests.benchmarks.test_cli import error_line, snapshot
from tests.tiny_run import TINY

RESULTS = Path(__file__).resolve().parents[2] / "results"
SPECS = sorted(p.name for p in RESULTS.iterdir() if p.is_dir())
LOOP = code_version.PROJECT / "algorithms" / "loop.py"
METRICS = code_version.PROJECT / "reports" / "metrics.py"
RWR = code_version.PROJECT / "algorithms" / "methods" / "rwr.py"


def codes() -> dict[str, str]:
    """The code hash of every (spec, task, method) of the committed results, as
    `code_version.source` reads the code: what decides whether a cell is current."""
    found = {}
    for name in SPECS:
        spec = load_spec(name)
        for task in spec.task_names():
            for method in spec.methods:
                found[f"{name}/{task}/{method}"] = cell_code(spec, task, method)["hash"]
    return found


def edited(monkeypatch, path: Path, edit) -> None:
    """Make the code version read `path` as `edit` rewrites it (the file itself is not touched)."""
    real = code_version.source
    text = real(path).decode()
    changed = edit(text)
    assert changed != text
    monkeypatch.setattr(code_version, "source", lambda p: changed.encode() if p == path else real(p))


@pytest.fixture(scope="module")
def before() -> dict[str, str]:
    return codes()


def test_a_docstring_or_comment_edit_in_the_loop_leaves_every_committed_cell_current(monkeypatch, before):
    def reword(text: str) -> str:
        text = text.replace('"""', '"""Reworded. ', 1)  # the module's docstring
        text = text.replace("def run(", "# a comment before the loop\n\n\ndef run(", 1)
        return text.replace('"""One row of a cell', '"""One row, reworded, of a cell', 1)  # a class docstring

    edited(monkeypatch, LOOP, reword)
    assert codes() == before


def test_a_changed_constant_in_the_loop_stales_every_cell(monkeypatch, before):
    edited(monkeypatch, LOOP, lambda text: text.replace("TOP_UPS = 4", "TOP_UPS = 5", 1))
    after = codes()
    assert all(after[cell] != before[cell] for cell in before)


def test_a_change_in_the_auc_computation_stales_every_cell(monkeypatch, before):
    edited(monkeypatch, METRICS, lambda text: text.replace("total += (budget - n) * final", "total += (budget - n) * final / 2", 1))
    after = codes()
    assert all(after[cell] != before[cell] for cell in before)


def test_a_one_line_change_in_a_method_stales_exactly_its_cells(monkeypatch, before):
    edited(monkeypatch, RWR, lambda text: text.replace("return weights / weights.mean()", "return weights / weights.max()", 1))
    after = codes()
    changed = {cell.split("/")[2] for cell in before if after[cell] != before[cell]}
    assert changed == {"rwr", "rwr-sparse"}


TWO_SEEDS = [*TINY, "--set", "seeds=[0,2]"]
OVERRIDES = [a for a in TWO_SEEDS[:-2] if a != "--set"]  # as load_spec takes them


@pytest.fixture(scope="module")
def stale_folder(tmp_path_factory) -> tuple[Path, dict]:
    """A results folder of two finished tiny cells, one of whose metrics.json says older code made it."""
    out = tmp_path_factory.mktemp("stale")
    assert main(["run", "protein", "--out", str(out), *TWO_SEEDS, "--no-report"]) == 0
    path = next(out.glob("protein/*/greedy/seed0/metrics.json"))
    metrics = json.loads(path.read_text())
    metrics["code"]["hash"], metrics["environment"]["git_commit"] = "0123456789abcdef", "deadbeef" * 5
    path.write_text(json.dumps(metrics, indent=2) + "\n")
    return out, metrics


def test_status_report_and_html_mark_a_stale_cell(stale_folder, capsys):
    out, _ = stale_folder
    for args in (["status", "--out", str(out)], ["status", "protein", "--out", str(out), *TWO_SEEDS]):
        assert main(args) == 0
        shown = capsys.readouterr().out
        assert "protein: 2 cells, 1 current, 1 stale, 0 missing" in shown
        assert "stale: 1 made by 0.1.0 (commit deadbee) (code hash 0123456789abcdef)" in shown
        assert "to regenerate: 1 cell, about 0 min on 1 worker" in shown
    assert main(["status", "--out", str(out), "--strict"]) == 1
    assert "status --strict: 1 cell is stale" in capsys.readouterr().err
    assert main(["report", str(out)]) == 0
    board = next(out.glob("protein/*/leaderboard.md")).read_text()
    assert "Code: 1 of 2 cells from the current code; 1 stale" in board
    assert "| 1 of 2 stale (0.1.0 0123456789abcdef (commit deadbee)) |" in board
    page = (out / "index.html").read_text()
    assert '<tr class="stale">' in page and "1 of 2 stale (0.1.0 0123456789abcdef (commit deadbee))" in page
    assert "protein: 1 of 2 cells from the current code" in (out / "README.md").read_text()
    assert "1 of 2 cells from the current code" in (out / "summary.md").read_text()


def test_a_run_remakes_only_the_stale_cell_and_status_then_passes_strict(stale_folder, capsys):
    out, _ = stale_folder
    kept = next(out.glob("protein/*/greedy/seed2/metrics.json"))
    kept_bytes = kept.read_bytes()
    assert main(["run", "protein", "--out", str(out), *TWO_SEEDS]) == 0
    assert "2 cells in 1 spec: 1 finished, 1 to run" in capsys.readouterr().out
    assert kept.read_bytes() == kept_bytes
    assert main(["status", "--out", str(out), "--strict"]) == 0
    assert "protein: 2 cells, 2 current, 0 stale, 0 missing" in capsys.readouterr().out
    board = next(out.glob("protein/*/leaderboard.md")).read_text()
    assert "Code: 2 of 2 cells from the current code" in board and "stale" not in board


def test_status_bad_input_is_one_line_and_deletes_nothing(tmp_path, capsys):
    out = tmp_path / "results"
    assert main(["run", "protein", "--out", str(out), *TINY, "--no-report"]) == 0
    capsys.readouterr()
    assert main(["status", "nosuchspec", "--out", str(out)]) == 2
    assert "unknown spec 'nosuchspec'" in error_line(capsys.readouterr().err)
    assert main(["status", "--out", str(tmp_path / "none")]) == 2
    assert "no results folder at" in error_line(capsys.readouterr().err)

    cell = next(out.glob("protein/*/greedy/seed0"))
    (cell / "metrics.json").write_text((cell / "metrics.json").read_text()[:200])  # truncated
    before = snapshot(out)
    assert main(["status", "--out", str(out), "--strict"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"seiko-bench: {cell}: metrics.json cannot be read (JSONDecodeError" in err
    assert snapshot(out) == before

    (cell / "metrics.json").write_text("{}")
    (cell / "queries.csv").unlink()
    (cell / "evals.csv").unlink()
    assert main(["status", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"seiko-bench: {cell}: finished (metrics.json) but queries.csv and evals.csv missing\n" in err
    assert [s.state for s in spec_states(load_spec("protein", [a for a in TINY[:-2] if a != "--set"]), out)] == [BROKEN]
