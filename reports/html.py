"""One HTML report of a results folder: `index.html`, at the folder's top.

An index of specs and their tasks (the specs a run just made first, marked),
then per task its header, a leaderboard whose columns sort on a click (by the
numbers, not the text), the curves and the sample grids, and last the column
definitions. Pictures are referenced by their path relative to the results
folder, not embedded: the page stays small (embedding made it megabytes for
the default suites) and still opens from disk, with no network, wherever the
folder is copied. The sorting is a few lines of inline script.

Nothing scrolls the page sideways at a 1,400 px wide window: every picture is
at most as wide as its container, and a table too wide for the page scrolls
inside a box of its own.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd

from reports.leaderboard import (
    SAMPLE_PICTURES,
    TOP_DESIGNS,
    _numbers,
    code_summary,
    header_lines,
    leaderboard_table,
    paired_differences,
    sample_pictures,
    seiko_contrasts,
    shown_columns,
    top_designs,
)

DEFINITIONS: dict[str, str] = {
    "method": "The method, or a spec's named variant of one (`seiko-bench list`).",
    "seeds": "Finished cells (method seeds) the row averages over.",
    "final_value": "Mean oracle reward of the held-out samples of the final model (SEIKO's 'Value'); an infeasible "
                   "sample counts as the task's floor. Mean over seeds ± the half-width of its 95% confidence "
                   "interval (Student's t). Not charged to the budget.",
    "final_feasible": "Feasible fraction of those held-out samples.",
    "final_learned_reward": "The method's own reward model on the same samples; far above the final value means "
                            "over-optimisation of the learned reward.",
    "final_value_spearman": "Spearman correlation of the method's learned value with the oracle's reward over the "
                            "feasible held-out samples of the final model: whether its reward model orders feasible "
                            "designs as the oracle does.",
    "auc_top10": "PMO's AUC: the top-10 mean of the charged queries every `auc_freq` queries, trapezoid rule, padded "
                 "to the budget, divided by the budget. Mean ± 95% CI.",
    "best": "Best score among the charged queries (an infeasible query scores the floor).",
    "feasible_rate": "Feasible fraction of the charged queries.",
    "proposed_feasible": "Feasible fraction of every design proposed to the oracle, including those that cost "
                         "nothing (repeats, and infeasible designs on tasks where those are free): where invalid "
                         "designs are free, only this shows a model that collapsed into proposing them.",
    "proposed_repeats": "Share of every design proposed to the oracle that repeated one already measured (free): "
                        "a row that used less than its budget because its model only repeats itself shows it here.",
    "queries_used": "Charged queries (at most the budget; a repeat of an earlier design is free).",
    "eval_oracle_calls": "Oracle calls of the held-out evaluation: uncharged, but a lab pays for them.",
    "wall_s": "Wall time of the whole cell, evaluation included.",
    "code": "Whether the current code made the row's cells ('current') or older code ('stale', with the version, "
            "hash and commit that made them): a stale row's numbers may differ from what the code makes today. "
            "`seiko-bench status` lists stale cells; `seiko-bench run SPEC` remakes only those.",
}

_SCRIPT = """
document.querySelectorAll("table.leaderboard").forEach(table => {
  table.querySelectorAll("th").forEach((th, column) => {
    th.addEventListener("click", () => {
      const body = table.tBodies[0];
      const descending = th.dataset.order !== "desc";
      table.querySelectorAll("th").forEach(other => delete other.dataset.order);
      th.dataset.order = descending ? "desc" : "asc";
      const key = row => {
        const cell = row.cells[column];
        const value = cell.dataset.value;
        return value === undefined ? cell.textContent : (value === "" ? NaN : Number(value));
      };
      const rows = Array.from(body.rows).sort((a, b) => {
        const x = key(a), y = key(b);
        if (typeof x === "string") return descending ? y.localeCompare(x) : x.localeCompare(y);
        if (Number.isNaN(x)) return 1;
        if (Number.isNaN(y)) return -1;
        return descending ? y - x : x - y;
      });
      rows.forEach(row => body.appendChild(row));
    });
  });
});
"""

_STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 110em; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
td:first-child, th:first-child { text-align: left; }
table.leaderboard th { cursor: pointer; background: #f4f4f4; }
table.leaderboard th[data-order="desc"]::after { content: " \\25BC"; }
table.leaderboard th[data-order="asc"]::after { content: " \\25B2"; }
tr.stale td { background: #fff3cd; }
div.wide { overflow-x: auto; max-width: 100%; }
img { max-width: 100%; height: auto; }
div.pictures { display: grid; grid-template-columns: repeat(auto-fill, minmax(min(600px, 100%), 1fr)); gap: 0.5em 1em; }
div.pictures h4 { grid-column: 1 / -1; margin: 1em 0 0; }
figure { margin: 0; } figcaption { font-size: 0.9em; color: #555; }
td code { word-break: break-all; }
#index .just-run { font-weight: bold; }
#index .just-run ul { font-weight: normal; }
dl { font-size: 0.9em; } dt { font-weight: bold; } dd { margin: 0 0 0.4em 1.5em; }
"""

JUST_RUN = "just run"


def spec_order(specs: Iterable[str], first: Sequence[str] = ()) -> list[str]:
    """`specs` with those named in `first` (the ones a run just made) leading, in
    that order, and the rest alphabetically: the report opens on what was run.
    Names in `first` that have no finished cell are left out."""
    present = set(specs)
    lead = [spec for spec in dict.fromkeys(first) if spec in present]
    return lead + sorted(present - set(lead))


def _src(path: str) -> str:
    """A picture's path relative to the results folder as an escaped `src`: a file
    beside the page, not a data URI, so the page stays small."""
    return html.escape(quote(Path(path).as_posix()))


def _wide(table: str) -> str:
    """`table` in a box that scrolls sideways when the table is wider than the page,
    so that the page itself never does."""
    return f'<div class="wide">{table}</div>'


def _sort_values(cells: pd.DataFrame, methods: list[str]) -> dict[str, list[float]]:
    """Per column key, the mean over seeds that a click sorts by, in table order."""
    out = {"seeds": [float((cells["method"] == m).sum()) for m in methods]}
    for _, key, _ in shown_columns(cells):
        if key in cells:
            out[key] = [float(_numbers(cells.loc[cells["method"] == m, key]).mean()) for m in methods]
    return out


def _table(cells: pd.DataFrame, table: pd.DataFrame) -> str:
    """`table` (the `leaderboard_table` of `cells`) with sortable numbers behind its text."""
    methods = list(table["method"])
    values = _sort_values(cells, methods)
    keys = ["method", "seeds", *[key for _, key, _ in shown_columns(cells)], "code"]
    head = "".join(f'<th title="{html.escape(DEFINITIONS.get(k, ""))}">{html.escape(str(c))}</th>'
                   for k, c in zip(keys, table.columns))
    rows = []
    for i, row in enumerate(table.itertuples(index=False)):
        tds = []
        for key, text in zip(keys, row):
            if key in ("method", "code"):
                tds.append(f"<td>{html.escape(str(text))}</td>")
            else:
                number = values.get(key, [np.nan] * len(methods))[i]
                tds.append(f'<td data-value="{"" if not np.isfinite(number) else repr(number)}">'
                           f"{html.escape(str(text))}</td>")
        stale = "stale" in str(row[keys.index("code")])
        rows.append(('<tr class="stale">' if stale else "<tr>") + "".join(tds) + "</tr>")
    return _wide(f'<table class="leaderboard"><thead><tr>{head}</tr></thead>\n<tbody>\n' + "\n".join(rows)
                 + "\n</tbody></table>")


def _small_table(frame: pd.DataFrame, css: str) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>\n"
                   for row in frame.itertuples(index=False))
    return _wide(f"<table class=\"{css}\"><tr>{head}</tr>\n{rows}</table>")


def _paired(cells: pd.DataFrame, table: pd.DataFrame) -> str:
    """The leader minus every other method, paired by seed, and SEIKO's contrasts (as in the Markdown leaderboard)."""
    methods = table["method"].tolist()
    if len(methods) < 2:
        return ""
    out = (f"<h3>Paired differences</h3>\n<p>Between the leader and every other method on the same seeds; "
           f"told apart when the 95% interval excludes 0.</p>\n{_small_table(paired_differences(cells, methods), 'paired')}")
    contrasts = seiko_contrasts(cells)
    if len(contrasts):
        out += ("\n<h3>SEIKO's question</h3>\n<p>Does optimism beat the plain fit (Greedy), and do rounds beat "
                f"one non-adaptive fit, at equal feedback? Paired by seed.</p>\n{_small_table(contrasts, 'paired')}")
    return out


def _figure(method: str, column: str, path: str | None) -> str:
    """One picture of a method, captioned by its column and linking to the file at
    full size; an empty figure keeps the columns aligned where a method drew none."""
    if path is None:
        return f"<figure><figcaption>{html.escape(column)}: not drawn</figcaption></figure>"
    return (f'<figure><figcaption>{html.escape(column)}</figcaption><a href="{_src(path)}">'
            f'<img class="grid" alt="{html.escape(method)} {html.escape(column)}" src="{_src(path)}"></a></figure>')


def _pictures(cells: pd.DataFrame, results_dir: Path) -> str:
    """Sample grids where the task draws them, else the top designs of each method.
    The grids are laid out in columns at least 600 px wide, as many as fit (two at
    1,400 px), rather than a table row per method: three DNA logos side by side
    would be shrunk to a third of the page and could not be read."""
    found = sample_pictures(cells, results_dir)
    if not found:
        rows = "".join(f"<tr><td>{html.escape(method)}</td>"
                       + "".join(f"<td><code>{html.escape(str(key))}</code> {reward:.3f}</td>" for key, reward in best)
                       + "</tr>\n" for method, best in top_designs(cells))
        head = "".join(f"<th>#{i + 1}</th>" for i in range(TOP_DESIGNS))
        return (f"<h3>Top designs</h3>\n<p>The {TOP_DESIGNS} best distinct feasible designs each method measured "
                f"(all seeds), with their oracle reward.</p>\n"
                + _wide(f"<table><tr><th>method</th>{head}</tr>\n{rows}</table>"))
    columns = [c for c in SAMPLE_PICTURES if any(c in pictures for _, pictures in found)]
    methods = "\n".join(f"<h4>{html.escape(method)}</h4>" + "".join(_figure(method, c, pictures.get(c)) for c in columns)
                        for method, pictures in found)
    return (f"<h3>Held-out samples</h3>\n<p>The same seeds and conditions at round 0 and at the end; click a "
            f'picture for its full size.</p>\n<div class="pictures">\n{methods}\n</div>')


def _index(groups: dict[str, list[tuple[str, pd.DataFrame]]], first: Sequence[str]) -> str:
    """The specs in report order, each with its tasks linked; the ones just run say so."""
    items = []
    for spec, tasks in groups.items():
        links = "\n".join(f'<li><a href="#{html.escape(spec)}--{html.escape(task)}">{html.escape(task)}</a> '
                          f"({group['method'].nunique()} methods, {len(group)} cells; "
                          f"{html.escape(code_summary(group))})</li>" for task, group in tasks)
        head = f'<li class="just-run">{html.escape(spec)} ({JUST_RUN})' if spec in first else f"<li>{html.escape(spec)}"
        items.append(f"{head}\n<ul>\n{links}\n</ul></li>")
    return '<ul id="index">\n' + "\n".join(items) + "\n</ul>"


def _section(spec: str, task: str, group: pd.DataFrame, results_dir: Path) -> str:
    """One task: header bullets, leaderboard, paired differences, curves and pictures."""
    bullets = "\n".join(f"<li>{html.escape(line)}</li>" for line in header_lines(group))
    table = leaderboard_table(group)
    return (f'<section id="{html.escape(spec)}--{html.escape(task)}">\n<h2>{html.escape(spec)} / {html.escape(task)}'
            f"</h2>\n<ul>\n{bullets}\n</ul>\n{_table(group, table)}\n{_paired(group, table)}\n"
            f'<img class="curves" alt="learning curves of {html.escape(task)}" '
            f'src="{_src(f"{spec}/{task}/curves.png")}">\n'
            f"{_pictures(group, results_dir)}\n</section>")


def report_html(cells: pd.DataFrame, results_dir: Path, first: Sequence[str] = ()) -> str:
    """The whole report of a results folder's finished cells (rows of `find_cells`),
    referencing each task's `curves.png` (written first by `write_report`) and the
    cells' pictures by path. The specs named in `first` (those a run just made)
    come first, in that order, and are marked; the rest follow alphabetically."""
    by_spec = dict(tuple(cells.groupby("spec", sort=False)))
    groups = {spec: list(by_spec[spec].groupby("task", sort=True)) for spec in spec_order(by_spec, first)}
    code = "\n".join(f"<li>{html.escape(spec)}: {html.escape(code_summary(by_spec[spec]))}</li>" for spec in groups)
    sections = [_section(spec, task, group, results_dir) for spec, tasks in groups.items() for task, group in tasks]
    definitions = "\n".join(f"<dt>{html.escape(key)}</dt><dd>{html.escape(text)}</dd>"
                            for key, text in DEFINITIONS.items())
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>seiko-bench results</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>seiko-bench results</h1>
<p>Generated by <code>seiko-bench report</code> from the finished cells of this folder. Click a column to sort.</p>
<h2>Specs and tasks</h2>
{_index(groups, first)}
<p>Code versions, per spec:</p>
<ul id="code">
{code}
</ul>
{"".join(sections)}
<h2 id="definitions">Columns</h2>
<dl>
{definitions}
</dl>
<script>{_SCRIPT}</script>
</body>
</html>
"""
