"""Reports: learning curves and leaderboards drawn from finished result cells.

This package reads result files only (query logs, evals, metrics.json) and
imports neither `domains` nor `algorithms`, so a report can be drawn on a
machine without the models. `write_report` is what `seiko-bench report` calls.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from reports.html import report_html
from reports.leaderboard import find_cells, markdown_section, readme
from reports.plots import curves_png
from reports.summary import summary_markdown

__all__ = ["atomic_write", "write_report"]


def atomic_write(path: Path, data: bytes | str) -> Path:
    """Write `data` to `path` through a temp file in the same folder and os.replace.

    A reader (a browser on the HTML, a concurrent report) sees the old file or
    the new one, never half of one.
    """
    data = data.encode() if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "xb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_report(results_dir: Path, code: dict[str, str] | None = None) -> list[Path]:
    """Write each (spec, task)'s leaderboard.md and curves.png, the Markdown index
    `results_dir/README.md`, the summary `results_dir/summary.md` and the
    self-contained HTML report `results_dir/index.html`; return the paths written.
    `code` says, by cell folder relative to `results_dir`, whether the current code
    made each cell ('current') or older code ('stale: <which>'); the report marks
    the stale ones (`benchmarks.status.report_labels` makes it; this package
    cannot, as it imports no methods or domains).

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
    written.append(atomic_write(results_dir / "index.html", report_html(cells, results_dir).encode()))
    return written
