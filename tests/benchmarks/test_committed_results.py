"""The committed results are those the committed code makes: every cell of every
spec folder under results/ was finished with its spec's settings by the current
code version, so `seiko-bench run` would skip it. A change to a method (its
cells), the shared code of `algorithms/` or `domains/`, the runner, or a task's
domain (its cells) fails here until the affected results are regenerated (DEVELOPERS.md, 'Results and code versions')."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.estimate import split_cells
from benchmarks.spec import load_spec

RESULTS = Path(__file__).resolve().parents[2] / "results"
SPECS = sorted(p.name for p in RESULTS.iterdir() if p.is_dir()) if RESULTS.exists() else []


@pytest.mark.parametrize("name", SPECS)
def test_every_committed_cell_is_current(name):
    stale, _ = split_cells(load_spec(name), RESULTS, rerun=False)
    assert not stale, f"{len(stale)} stale or missing cells under results/{name}, e.g. {stale[0]}"


def test_every_suite_has_committed_results():
    from benchmarks.spec import SUITES

    for suite in SUITES.values():
        assert set(suite) <= set(SPECS)
