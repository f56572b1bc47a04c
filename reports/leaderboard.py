"""Leaderboards: one table per (spec, task), one row per method, over seeds.

Reads only the finished cells' `metrics.json` (a cell is finished iff that file
exists), so a report can be drawn while a benchmark is still running and never
shows a half-written cell. Produces text only; `reports.write_report` writes it.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Callable

import pandas as pd

CELL_GLOB = "*/*/*/seed*/metrics.json"  # <spec>/<task>/<method>/seed<N>/metrics.json
ORDER_NOTE = "Rows are ordered by final value (mean over seeds), highest first."


def find_cells(results_dir: Path) -> pd.DataFrame:
    """One row per finished cell: its metrics.json fields plus spec, task, method, dir.

    Spec, task and method come from the cell's folder, which is where its report
    goes. Raises FileNotFoundError when there is nothing to report.
    """
    paths = sorted(Path(results_dir).glob(CELL_GLOB))
    if not paths:
        raise FileNotFoundError(f"no finished cells ({CELL_GLOB}) under {results_dir}: run `seiko-bench run SPEC` first")
    rows = []
    for path in paths:
        spec, task, method = path.parts[-5:-2]
        rows.append({**json.loads(path.read_text()), "spec": spec, "task": task, "method": method, "dir": path.parent})
    return pd.DataFrame(rows)


def _numbers(values: pd.Series) -> pd.Series:
    """Numeric values without the missing ones (null in JSON, e.g. no optimum)."""
    return pd.to_numeric(values, errors="coerce").dropna()


def _mean(fmt: str) -> Callable[[pd.Series], str]:
    def render(values: pd.Series) -> str:
        values = _numbers(values)
        return fmt.format(values.mean()) if len(values) else "n/a"

    return render


def _mean_std(values: pd.Series) -> str:
    """'mean ± sample std' (ddof=1) to 3 decimals; just the mean for one seed."""
    values = _numbers(values)
    if len(values) < 2:
        return _mean("{:.3f}")(values)
    return f"{values.mean():.3f} ± {values.std(ddof=1):.3f}"


# (column title, metrics.json key, how its values over seeds are rendered)
COLUMNS: list[tuple[str, str, Callable[[pd.Series], str]]] = [
    ("final value (mean ± std)", "final_value", _mean_std),
    ("final feasible fraction", "final_feasible", _mean("{:.3f}")),
    ("learned reward of the same samples", "final_learned_reward", _mean("{:.3f}")),
    ("AUC top-10 (mean ± std)", "auc_top10", _mean_std),
    ("best (mean)", "best", _mean("{:.3f}")),
    ("feasible rate of queries", "feasible_rate", _mean("{:.3f}")),
    ("queries used", "queries_used", _mean("{:.0f}")),
    ("wall time (s)", "wall_s", _mean("{:.1f}")),
]


def leaderboard_table(cells: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard of one task's cells, as display strings, best method first."""
    by_method = cells.groupby("method", sort=True)
    final_means = by_method["final_value"].apply(lambda v: _numbers(v).mean())
    order = final_means.sort_values(ascending=False, kind="stable", na_position="last")
    rows = []
    for method in order.index:
        runs = by_method.get_group(method)
        columns = {title: render(runs[key]) if key in runs else "n/a" for title, key, render in COLUMNS}
        rows.append({"method": method, "seeds": str(len(runs)), **columns})
    return pd.DataFrame(rows)


def task_optimum(cells: pd.DataFrame) -> float | None:
    """The task's known optimum (metrics.json `optimum`), or None when unknown."""
    known = _numbers(cells["optimum"]) if "optimum" in cells else pd.Series(dtype=float)
    return float(known.iloc[0]) if len(known) else None


def header_lines(cells: pd.DataFrame) -> list[str]:
    """What a reader needs above the table: task, budget, seeds, optimum, ordering."""
    budgets = ", ".join(str(int(b)) for b in sorted(_numbers(cells["budget"]).unique()))
    seeds = ", ".join(str(int(s)) for s in sorted(cells["seed"].unique()))
    lines = [
        f"Task: {cells['task'].iloc[0]} (spec {cells['spec'].iloc[0]})",
        f"Budget: {budgets} charged oracle queries",
        f"Seeds: {seeds}",
    ]
    optimum = task_optimum(cells)
    if optimum is not None:
        lines.append(f"Optimum: {optimum:g}")
    return lines + [ORDER_NOTE]


def markdown_table(table: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (pandas' to_markdown needs tabulate)."""

    def row(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    align = [":--"] + ["--:"] * (len(table.columns) - 1)
    body = [row(list(map(str, r))) for r in table.itertuples(index=False)]
    return "\n".join([row(list(table.columns)), row(align), *body])


def markdown_section(cells: pd.DataFrame, heading: str, image: str) -> str:
    """Heading, header bullets, table and curves image of one task, in Markdown.

    Shared by each task's leaderboard.md and the results README, so both show the same table.
    """
    bullets = [f"- {line}" for line in header_lines(cells)]
    return "\n".join([heading, "", *bullets, "", markdown_table(leaderboard_table(cells)), "", f"![curves]({image})", ""])


def leaderboard_html(cells: pd.DataFrame, image: str) -> str:
    """A small static page: title, header bullets, the table and the curves image."""
    title = html.escape(f"seiko-bench: {cells['spec'].iloc[0]} / {cells['task'].iloc[0]}")
    bullets = "\n".join(f"<li>{html.escape(line)}</li>" for line in header_lines(cells))
    table = leaderboard_table(cells).to_html(index=False, border=0)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
img {{ max-width: 100%; margin-top: 1em; }}
</style>
</head>
<body>
<h1>{title}</h1>
<ul>
{bullets}
</ul>
{table}
<img src="{html.escape(image)}" alt="learning curves">
</body>
</html>
"""


def readme(sections: list[str]) -> str:
    """The results index: a do-not-edit notice, then each task's Markdown section."""
    notice = (
        "Generated by `seiko-bench report` from the finished cells under this folder;"
        " do not edit by hand (it is overwritten)."
    )
    return "\n".join(["# seiko-bench results", "", notice, "", *sections])
