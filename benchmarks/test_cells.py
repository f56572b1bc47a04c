"""Every cell of the shipped suites as a pytest test, marked `bench` (slow): run
deliberately (`pytest benchmarks -m bench`), each into a folder of its own and
compared with the committed cell of results/, the stored baseline: the same
query log (timings aside) and the same metrics. A committed cell that older code
made is no baseline for today's code (`seiko-bench status`): that cell is skipped.
On another kind of CPU the learned-reward methods run other draws of the same
experiment (DEVELOPERS.md), which this comparison shows as a failure to read, not to hide."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from benchmarks.cell import cell_dir
from benchmarks.runner import run_specs
from benchmarks.spec import SUITES, load_spec
from benchmarks.status import CURRENT, spec_states

RESULTS = Path(__file__).resolve().parent.parent / "results"
CELLS = [(name, *cell) for suite in SUITES.values() for name in suite for cell in load_spec(name).cells()]
FIGURES = ("queries_used", "best", "top10", "auc_top10", "feasible_rate", "final_value", "final_feasible")


@pytest.mark.bench
@pytest.mark.parametrize("spec_name,task,method,seed", CELLS, ids=["-".join(map(str, c)) for c in CELLS])
def test_cell(spec_name: str, task: str, method: str, seed: int, tmp_path: Path) -> None:
    full = load_spec(spec_name)
    baseline = cell_dir(RESULTS, full, task, method, seed)
    state = next(s for s in spec_states(full, RESULTS) if s.folder == baseline)
    if state.state != CURRENT:
        pytest.skip(f"{baseline.relative_to(RESULTS)} is {state.label}: no baseline for today's code")
    spec = load_spec(spec_name, [f"tasks=[{task}]", f"methods=[{method}]", f"seeds=[{seed}]"])
    (metrics,) = run_specs([spec], tmp_path, workers=1)[spec.name]
    made = pd.read_csv(cell_dir(tmp_path, spec, task, method, seed) / "queries.csv").drop(columns="wall_s")
    stored = pd.read_csv(baseline / "queries.csv").drop(columns="wall_s")
    pd.testing.assert_frame_equal(made, stored)
    committed = json.loads((baseline / "metrics.json").read_text())
    assert {k: metrics[k] for k in FIGURES} == {k: committed[k] for k in FIGURES}
