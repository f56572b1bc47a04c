"""The committed results are self-consistent, and their report is what the code draws from them.

Currency is not checked here: a cell that older code made is *stale*, a state
that `seiko-bench status` lists and the report marks (tests/benchmarks/test_status.py),
so a change to shared code lands first and its cells are regenerated after it.
What is checked, for every cell of every spec folder under results/:
- its metrics.json recomputes from its own logs: the query-log metrics from
  queries.csv, the final held-out figures and the evaluation calls from evals.csv;
- it was finished with the settings its shipped spec resolves to today, or else
  (a regeneration after a change of the spec's settings under way) the report
  marks it stale, and the spec its folder's manifest records names the same cells;
- it records the code version (package version and hash) that made it;
and the committed report (every leaderboard, the results index, the summary and
index.html, whose pictures are the files beside it) is exactly what
`seiko-bench report` makes from the committed cells.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from benchmarks.cell import cell_dir, cell_settings, fingerprint
from benchmarks.spec import SPECS as SHIPPED_SPECS
from benchmarks.spec import SUITES, Spec, load_spec
from benchmarks.status import report_labels
from reports import write_report
from reports.metrics import load_log, summarise

RESULTS = Path(__file__).resolve().parents[2] / "results"
SPECS = sorted(p.name for p in RESULTS.iterdir() if p.is_dir()) if RESULTS.exists() else []
FROM_EVALS = {"final_value": "value", "final_feasible": "feasible_fraction",
              "final_learned_reward": "learned_reward", "final_value_spearman": "value_spearman"}


def same(a, b) -> bool:
    if a is None or b is None or (isinstance(a, float) and math.isnan(a)):
        return (a is None or math.isnan(a)) and (b is None or (isinstance(b, float) and math.isnan(b)))
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == pytest.approx(b, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("name", SPECS)
def test_every_committed_cell_recomputes_from_its_logs_and_matches_its_spec(name):
    spec = load_spec(name)
    manifest = json.loads((RESULTS / name / "manifest.json").read_text())
    recorded = Spec(**manifest["spec"], root=str(SHIPPED_SPECS))
    assert recorded.cells() == spec.cells(), f"results/{name}/manifest.json records a spec of other cells than the YAML's"
    labels = report_labels(RESULTS)  # what the committed report says of each cell
    for task, method, seed in spec.cells():
        folder = cell_dir(RESULTS, spec, task, method, seed)
        where = folder.relative_to(RESULTS)
        metrics = json.loads((folder / "metrics.json").read_text())
        if metrics["fingerprint"] != fingerprint(cell_settings(spec, task, method, seed)):
            assert labels[where.as_posix()].startswith("stale"), f"{where}: other settings, not marked stale"
        assert metrics["code"]["version"] and re.fullmatch(r"[0-9a-f]{16}", metrics["code"]["hash"]), where
        log = load_log(folder / "queries.csv")
        for key, value in summarise(log, spec.budget, metrics["floor"], freq=spec.auc_freq).items():
            assert same(metrics[key], value), f"{where}: {key} {metrics[key]} != {value} from queries.csv"
        evals = pd.read_csv(folder / "evals.csv")
        last = evals.iloc[-1]
        for key, column in FROM_EVALS.items():
            assert same(metrics[key], float(last[column])), f"{where}: {key} != evals.csv's last {column}"
        assert metrics["eval_oracle_calls"] == int(evals["eval_oracle_calls"].sum()), where
        assert metrics["total_oracle_calls"] == metrics["oracle_calls"] + metrics["eval_oracle_calls"], where
        assert int(last["queries_used"]) == metrics["queries_used"], where


def test_every_suite_has_committed_results():
    for suite in SUITES.values():
        assert set(suite) <= set(SPECS)


@pytest.mark.slow
def test_the_committed_report_is_what_seiko_bench_report_makes(tmp_path):
    copy = tmp_path / "results"
    shutil.copytree(RESULTS, copy, ignore=shutil.ignore_patterns("*.html", "*.md"))
    written = write_report(copy, report_labels(copy))
    pictures = re.findall(r'src="([^"]+)"', (RESULTS / "index.html").read_text())
    assert pictures and all((RESULTS / p).is_file() for p in pictures)
    pages = [p.relative_to(copy) for p in written if p.suffix in (".md", ".html")]
    assert {"README.md", "summary.md", "index.html"} <= {str(p) for p in pages}
    for page in pages:
        made, committed = (copy / page).read_text(), (RESULTS / page).read_text()
        assert made == committed, f"results/{page} is not what `seiko-bench report` makes: run it and commit"
