"""Reports: learning curves and leaderboards drawn from finished result cells.

This package reads result files only (query logs, evals, metrics.json) and
imports neither `domains` nor `algorithms`, so a report can be drawn on a
machine without the models. `write_report` is what `seiko-bench report` calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from reports.files import atomic_write
from reports.html import report_html
from reports.leaderboard import find_cells, markdown_section, readme
from reports.plots import curves_png
from reports.summary import summary_markdown

__all__ = ["atomic_write", "write_report"]


def write_report(results_dir: Path, code: dict[str, str] | None = None, first: Sequence[str] = ()) -> list[Path]:
    """Write each (spec, task)'s leaderboard.md and curves.png, the Markdown index
    `results_dir/README.md`, the summary `results_dir/summary.md` and the HTML
    report `results_dir/index.html` (which references those pictures by path);
    return the paths written.
    `code` says, by cell folder relative to `results_dir`, whether the current code
    made each cell ('current') or older code ('stale: <which>'); the report marks
    the stale ones (`benchmarks.status.report_labels` makes it; this package
    cannot, as it imports no methods or domains). `first` names the specs a run
    just made: the HTML report lists them first, in that order, so that it opens
    on them; the rest follow alphabetically.

    Raises FileNotFoundError when `results_dir` holds no finished cell.
    """
    results_dir = Path(results_dir)
    cells = find_cells(results_dir, code)
    written, sections = [], []
    for (spec, task), group in cells.groupby(["spec", "task"], sort=True):
        folder = results_dir / spec / task
        written += [
            atomic_write(folder / "leaderboard.md",
                         markdown_section(group, f"# {spec} / {task}", "curves.png", folder).encode()),
            atomic_write(folder / "curves.png", curves_png(group)),
        ]
        sections.append(markdown_section(group, f"## {spec} / {task}", f"{spec}/{task}/curves.png", results_dir))
    written.append(atomic_write(results_dir / "README.md", readme(sections, cells).encode()))
    written.append(atomic_write(results_dir / "summary.md", summary_markdown(cells, results_dir).encode()))
    written.append(atomic_write(results_dir / "index.html", report_html(cells, results_dir, first).encode()))
    return written
