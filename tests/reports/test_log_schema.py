"""The query log's schema is written in one place (the budgeted oracle) and
read in another (reports, which import no algorithm): these tests tie them."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from algorithms import budgeted_oracle
from algorithms.budgeted_oracle import BudgetedOracle
from domains.base import OracleOutput
from reports import metrics

SCHEMA = Path(__file__).resolve().parents[2] / "docs" / "results-schema.md"


class Parity:
    """Reward = number of 'A's; a design with 'X' is infeasible; components for a weighted sum's columns."""

    name, floor, optimum = "parity", 0.0, None

    def __call__(self, designs):
        feasible = np.array(["X" not in d for d in designs])
        reward = np.array([d.count("A") for d in designs], dtype=float)
        return OracleOutput(np.where(feasible, reward, np.nan), feasible, {"half": reward / 2})

    def key(self, design):
        return design


def test_the_columns_the_oracle_writes_are_the_columns_the_metrics_read():
    assert list(metrics.LOG_DTYPES) == budgeted_oracle.LOG_COLUMNS
    assert budgeted_oracle.COMPONENT_PREFIX == metrics.COMPONENT_PREFIX


def test_a_written_log_reads_back_with_its_dtypes_and_summarises(tmp_path):
    oracle = BudgetedOracle(Parity(), 5, method="m", seed=0)
    oracle(["AA", "NA", "AX"], round=1)
    oracle(["AA", "AAA", "NAN"], round=2)  # a repeat, and keys that look like missing values
    path = tmp_path / "queries.csv"
    oracle.log().to_csv(path, index=False)
    log = metrics.load_log(path)
    assert log["key"].tolist() == ["AA", "NA", "AX", "AA", "AAA", "NAN"]
    assert log["cached"].tolist() == [False, False, False, True, False, False]
    assert log["reward.half"].tolist()[:2] == [1.0, 0.5]
    summary = metrics.summarise(log, budget=5, floor=0.0, freq=1)
    assert summary["queries_used"] == 5 and summary["best"] == 3.0


def test_the_schema_documents_every_column_in_order():
    section = SCHEMA.read_text().split("# Results schema", 1)[1]
    documented = re.search(r"`queries\.(?:csv|parquet)`[^\n]*\n(.*?)\n- `", section, re.S).group(1)
    names = re.findall(r"`(\w+)`", documented)
    assert [n for n in names if n in budgeted_oracle.LOG_COLUMNS] == budgeted_oracle.LOG_COLUMNS
