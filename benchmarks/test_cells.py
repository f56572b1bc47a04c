"""Every cell of the shipped specs as a pytest test, marked `bench` (slow):
`pytest benchmarks -m bench` runs them deliberately, writing under results/
like `seiko-bench run` does (finished cells are skipped, as there)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.cell import cell_dir
from benchmarks.runner import run_specs
from benchmarks.spec import SUITES, load_spec

RESULTS = Path(__file__).resolve().parent.parent / "results"
CELLS = [(name, *cell) for suite in SUITES.values() for name in suite for cell in load_spec(name).cells()]


@pytest.mark.bench
@pytest.mark.parametrize("spec_name,task,method,seed", CELLS, ids=["-".join(map(str, c)) for c in CELLS])
def test_cell(spec_name: str, task: str, method: str, seed: int) -> None:
    spec = load_spec(spec_name, [f"tasks=[{task}]", f"methods=[{method}]", f"seeds=[{seed}]"])
    (metrics,) = run_specs([spec], RESULTS, workers=1)[spec.name]
    assert metrics["queries_used"] <= spec.budget
    assert (cell_dir(RESULTS, spec, task, method, seed) / "metrics.json").exists()
