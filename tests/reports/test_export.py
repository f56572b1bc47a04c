"""`seiko-bench export`: one tidy table of every cell and one of every query."""

from __future__ import annotations

import json

import pandas as pd

from benchmarks.cli import main


def test_export_writes_every_cell_and_every_query_with_their_identity(tmp_path):
    from test_leaderboard import FINAL_VALUES, write_cell  # the leaderboard tests' fake tree

    for method, seeds in FINAL_VALUES.items():
        for seed, value in seeds.items():
            write_cell(tmp_path, method, seed, value)
    assert main(["export", str(tmp_path), "--out", str(tmp_path / "tables")]) == 0
    cells = pd.read_parquet(tmp_path / "tables" / "cells.parquet")
    assert cells.columns[:4].tolist() == ["spec", "task", "method", "seed"]
    assert len(cells) == 4 and set(cells["method"]) == {"greedy", "ucb"}
    ucb0 = cells[(cells["method"] == "ucb") & (cells["seed"] == 0)].iloc[0]
    assert ucb0["final_value"] == FINAL_VALUES["ucb"][0]
    assert json.loads(ucb0["feasible_by_round"])  # nested values survive as JSON text
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "tables" / "cells.csv")[["seed", "final_value"]],
                                  cells[["seed", "final_value"]])
    queries = pd.read_parquet(tmp_path / "tables" / "queries.parquet")
    assert len(queries) == sum(5 + seed for seeds in FINAL_VALUES.values() for seed in seeds)  # write_cell's n
    first = queries[(queries["method"] == "ucb") & (queries["seed"] == 1)]
    assert first["call"].tolist() == list(range(1, 7)) and first["key"].iloc[0] == "ucb1-0"


def test_export_of_an_empty_folder_is_one_line(tmp_path, capsys):
    assert main(["export", str(tmp_path)]) == 2
    assert "no finished cells" in capsys.readouterr().err
