"""The committed results are those the committed code makes: every cell of every
spec folder under results/ was finished with its spec's settings by the current
code version, so `seiko-bench run` would skip it. A change to the methods, the
shared domain code, the runner or a task's domain fails here until the affected
results are regenerated (DEVELOPERS.md, 'Results and code versions')."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.runner import cell_dir, cell_settings, code_version, finished
from benchmarks.spec import load_spec

RESULTS = Path(__file__).resolve().parents[2] / "results"
SPECS = sorted(p.name for p in RESULTS.iterdir() if p.is_dir()) if RESULTS.exists() else []


@pytest.mark.parametrize("name", SPECS)
def test_every_committed_cell_is_current(name):
    spec = load_spec(name)
    codes = {task: code_version(spec.task(task).code_files()) for task in spec.task_names()}
    stale = [(task, method, seed) for task, method, seed in spec.cells()
             if not finished(cell_dir(RESULTS, spec, task, method, seed), cell_settings(spec, task, method, seed),
                             codes[task], rerun=False)]
    assert not stale, f"{len(stale)} stale or missing cells under results/{name}, e.g. {stale[0]}"


def test_the_default_specs_have_committed_results():
    from benchmarks.spec import DEFAULT_SPECS

    assert set(DEFAULT_SPECS) <= set(SPECS)
