"""Tidy exports of a results folder for pandas users: one row per cell, one row per query.

`cells.parquet` (and `cells.csv`) holds every finished cell's identity (spec,
task, method, seed) and every scalar of its metrics.json; nested fields
(settings, code, environment, task_info, feasible_by_round) are kept as JSON
text. `queries.parquet` joins every cell's query log with the same identity
columns, so that `pd.read_parquet("queries.parquet").groupby(["task",
"method"])` is the whole benchmark's record in one frame.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd

from reports.files import atomic_write
from reports.leaderboard import find_cells
from reports.metrics import load_log

IDENTITY = ["spec", "task", "method", "seed"]


def cells_table(results_dir: Path) -> pd.DataFrame:
    """One row per finished cell: identity first, then every metric; nested values as JSON text."""
    cells = find_cells(results_dir).drop(columns="dir")
    for column in cells.columns:
        if cells[column].map(lambda v: isinstance(v, (dict, list))).any():
            cells[column] = cells[column].map(lambda v: json.dumps(v, sort_keys=True) if isinstance(v, (dict, list))
                                              else v)
    rest = [c for c in cells.columns if c not in IDENTITY]
    return cells[IDENTITY + rest].sort_values(IDENTITY, kind="stable").reset_index(drop=True)


def queries_table(results_dir: Path) -> pd.DataFrame:
    """Every cell's query log, in call order within each cell, with the cell's identity."""
    frames = []
    for cell in find_cells(results_dir).sort_values(IDENTITY, kind="stable").itertuples():
        log = load_log(Path(cell.dir) / "queries.csv").drop(columns=["method", "seed"])
        frames.append(log.assign(spec=cell.spec, task=cell.task, method=cell.method, seed=cell.seed))
    table = pd.concat(frames, ignore_index=True)
    return table[IDENTITY + [c for c in table.columns if c not in IDENTITY]]


def _parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def export(results_dir: Path, out: Path | None = None) -> list[Path]:
    """Write cells.parquet, cells.csv and queries.parquet into `out` (default: `results_dir`)."""
    results_dir = Path(results_dir)
    out = Path(out) if out is not None else results_dir
    out.mkdir(parents=True, exist_ok=True)
    cells = cells_table(results_dir)
    return [atomic_write(out / "cells.parquet", _parquet(cells)),
            atomic_write(out / "cells.csv", cells.to_csv(index=False)),
            atomic_write(out / "queries.parquet", _parquet(queries_table(results_dir)))]
