"""write_report on a tiny fake results tree: 2 methods x 2 seeds of one task."""

from __future__ import annotations

import itertools
import json
import re
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reports import write_report
from reports.metrics import summarise

SPEC, TASK, BUDGET, FLOOR, OPTIMUM = "toy", "ehrlich", 8, 0.0, 1.0
# method -> seed -> held-out final value; "greedy" sorts first by name but last by value
FINAL_VALUES = {"greedy": {0: 0.30, 1: 0.50}, "ucb": {0: 0.80, 1: 0.62}}


def write_cell(root: Path, method: str, seed: int, final_value: float, spec: str = SPEC) -> None:
    """A finished cell as the runner leaves it: queries.csv, evals.csv, metrics.json."""
    cell = root / spec / TASK / method / f"seed{seed}"
    cell.mkdir(parents=True)
    n = 5 + seed  # seeds of different lengths, both short of the budget
    rewards = [final_value * (i + 1) / n for i in range(n)]
    log = pd.DataFrame(
        {
            "call": pd.array(range(1, n + 1), dtype="Int64"),
            "round": [1 + i * 2 // n for i in range(n)],
            "method": method,
            "seed": seed,
            "key": [f"{method}{seed}-{i}" for i in range(n)],
            "reward": rewards,
            "feasible": True,
            "reason": "",
            "charged": True,
            "cached": False,
            "oracle_calls": 1,
            "wall_s": 0.01,
        }
    )
    log.to_csv(cell / "queries.csv", index=False)
    pd.DataFrame(
        {
            "round": [0, 1, 2],
            "queries_used": [0, n // 2, n],
            "value": [0.1, final_value / 2, final_value],
            "feasible_fraction": [1.0, 1.0, 1.0],
            "learned_reward": [float("nan"), final_value / 2, final_value * 1.1],
        }
    ).to_csv(cell / "evals.csv", index=False)
    metrics = summarise(log, BUDGET, FLOOR, freq=2) | {
        "final_value": final_value,
        "final_feasible": 1.0,
        "wall_s": 3.0,
        "task": TASK,
        "method": method,
        "seed": seed,
        "spec": spec,
        "floor": FLOOR,
        "optimum": OPTIMUM,
    }
    (cell / "metrics.json").write_text(json.dumps(metrics))


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """The fake tree and what write_report wrote, built once: plotting dominates the run time."""
    root = tmp_path_factory.mktemp("results")
    for method, seeds in FINAL_VALUES.items():
        for seed, value in seeds.items():
            write_cell(root, method, seed, value)
    return root, write_report(root)


def table_rows(markdown: str) -> list[list[str]]:
    """The body rows of the first Markdown table, as stripped cells."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    table = [line for line in itertools.takewhile(lambda line: line.startswith("|"), lines[start:])]
    return [[c.strip() for c in line.strip("|").split("|")] for line in table[2:]]


def test_report_writes_every_file(report):
    results, written = report
    task_dir = results / SPEC / TASK
    expected = {task_dir / "leaderboard.md", task_dir / "curves.png", results / "README.md", results / "index.html",
                results / "summary.md"}
    assert set(written) == expected
    assert all(p.stat().st_size > 0 for p in expected)
    assert not list(results.rglob("*.tmp"))  # atomic writes leave no temp files behind


def test_leaderboard_orders_methods_by_final_value_with_mean_and_95_ci(report):
    results, _ = report
    markdown = (results / SPEC / TASK / "leaderboard.md").read_text()
    rows = table_rows(markdown)
    assert [r[0] for r in rows] == ["ucb", "greedy"]
    ucb = list(FINAL_VALUES["ucb"].values())
    # 95% interval of two seeds: t(0.975, 1) = 12.706 standard errors
    half = 12.706 * statistics.stdev(ucb) / 2**0.5
    assert rows[0][2] == f"{statistics.mean(ucb):.3f} ± {half:.3f}"  # 0.710 ± 1.144
    assert rows[0][1] == "2"
    assert f"Budget: {BUDGET}" in markdown and "Seeds: 0, 1" in markdown and "Optimum: 1" in markdown
    assert "ordered by final value" in markdown


def test_readme_inlines_the_same_table_and_links_the_curves(report):
    results, _ = report
    readme = (results / "README.md").read_text()
    assert "seiko-bench report" in readme.splitlines()[2]
    assert table_rows(readme) == table_rows((results / SPEC / TASK / "leaderboard.md").read_text())
    assert f"({SPEC}/{TASK}/curves.png)" in readme


def sources(page: str) -> list[str]:
    """Every src="..." of an HTML page."""
    return re.findall(r'src="([^"]*)"', page)


def test_html_report_references_its_pictures_beside_it_with_an_index_and_column_definitions(report):
    results, _ = report
    page = (results / "index.html").read_text()
    assert f'href="#{SPEC}--{TASK}"' in page and f'id="{SPEC}--{TASK}"' in page
    assert 'class="leaderboard"' in page and "data:" not in page  # pictures are files, not megabytes of base64
    assert sources(page) == [f"{SPEC}/{TASK}/curves.png"]  # relative to the page's folder
    assert all((results / src).is_file() for src in sources(page))
    assert len(page.encode()) < 50_000
    assert "<dt>auc_top10</dt>" in page and "http" not in page
    assert page.index("<td>ucb</td>") < page.index("<td>greedy</td>")


def test_the_specs_just_run_come_first_in_that_order_and_are_marked(tmp_path: Path):
    for spec in ("alpha", "toy", "zeta"):
        write_cell(tmp_path, "ucb", 0, 0.5, spec=spec)
    write_report(tmp_path, first=["zeta", "missing", "toy"])  # a spec without finished cells is left out
    page = (tmp_path / "index.html").read_text()
    sections = [page.index(f'id="{spec}--{TASK}"') for spec in ("zeta", "toy", "alpha")]
    assert sections == sorted(sections)
    index = page[page.index('<ul id="index">'):]
    assert index.index("zeta (just run)") < index.index("toy (just run)") < index.index("<li>alpha")
    assert page.count("(just run)") == 2
    write_report(tmp_path)
    page = (tmp_path / "index.html").read_text()
    assert page.index(f'id="alpha--{TASK}"') < page.index(f'id="toy--{TASK}"') < page.index(f'id="zeta--{TASK}"')
    assert "just run" not in page


def test_spec_order_puts_first_ahead_and_the_rest_alphabetically():
    from reports.html import spec_order

    assert spec_order(["b", "c", "a", "d"], ["d", "x", "b", "d"]) == ["d", "b", "a", "c"]
    assert spec_order(["b", "a"]) == ["a", "b"]


def test_curves_are_a_png(report):
    results, _ = report
    assert (results / SPEC / TASK / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_curves_are_a_two_by_two_grid_whose_bands_stay_within_their_axes(report):
    """With two seeds a 95% band is 12.7 standard errors wide, far past the means' range:
    each band is clipped to its panel rather than drawn off it."""
    from reports.leaderboard import find_cells
    from reports.plots import curves_figure

    results, _ = report
    fig = curves_figure(find_cells(results))
    assert [ax.get_subplotspec().get_geometry()[:2] for ax in fig.axes] == [(2, 2)] * 4
    width, height = fig.get_size_inches() * fig.dpi
    assert 1_200 <= width <= 1_400 and height >= 800  # read at full size on a 1,400 px page
    touching = 0
    for ax in fig.axes:
        (x_low, x_high), (y_low, y_high) = ax.get_xlim(), ax.get_ylim()
        vertices = np.concatenate([path.vertices for band in ax.collections for path in band.get_paths()])
        vertices = vertices[np.isfinite(vertices).all(axis=1)]
        assert len(vertices)  # every panel has bands
        assert (vertices[:, 0] >= x_low).all() and (vertices[:, 0] <= x_high).all()
        assert (vertices[:, 1] >= y_low).all() and (vertices[:, 1] <= y_high).all()
        touching += np.isclose(vertices[:, 1], y_high).any() or np.isclose(vertices[:, 1], y_low).any()
    assert touching  # some band was wider than its panel: the check above is not vacuous


def test_curves_draw_every_method_a_reference_and_the_learned_reward_apart(report):
    from reports.leaderboard import find_cells
    from reports.plots import PRETRAINED, curves_figure

    results, _ = report
    ax_top, ax_best, ax_value, ax_learned = curves_figure(find_cells(results)).axes
    methods = sorted(FINAL_VALUES)
    labels = [line.get_label() for line in ax_top.get_lines()]
    assert labels == [*methods, "optimum"]
    assert ax_top.get_xlabel() == "charged oracle queries" and "score" in ax_top.get_ylabel()
    # held-out value: one line per method and the pretrained model's (round 0: 0.1 in every cell)
    value_lines = ax_value.get_lines()
    assert len(value_lines) == len(methods) + 1 and value_lines[-1].get_label() == PRETRAINED
    assert list(value_lines[-1].get_ydata()) == [0.1, 0.1]
    # its range is that of the values (up to 0.71), not of the learned reward (up to 0.78)
    low, high = ax_value.get_ylim()
    assert low < 0.1 and 0.71 < high < 0.78
    assert len(ax_learned.get_lines()) == len(methods) + 1
    assert max(np.nanmax(line.get_ydata()) for line in ax_learned.get_lines()) == pytest.approx(0.71 * 1.1)


def test_twenty_methods_get_twenty_distinct_styles():
    from reports.plots import method_style

    assert len({(method_style(i)[0], method_style(i)[1]) for i in range(20)}) == 20


def test_single_seed_shows_just_the_mean(tmp_path: Path):
    write_cell(tmp_path, "ucb", 0, 0.8)
    write_report(tmp_path)
    rows = table_rows((tmp_path / SPEC / TASK / "leaderboard.md").read_text())
    assert rows[0][2] == "0.800"


def test_empty_folder_says_to_run_first(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="seiko-bench run") as error:
        write_report(tmp_path)
    assert str(tmp_path) in str(error.value)


def test_reports_import_neither_domains_nor_algorithms():
    # Reports read result files only; run in a fresh interpreter so other tests' imports don't count.
    code = "import sys, reports; print(sorted(m for m in sys.modules if m.split('.')[0] in ('domains', 'algorithms')))"
    repo = Path(__file__).parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=repo)
    assert out.stdout.strip() == "[]"


def test_sample_grids_of_the_first_seed_are_linked_where_cells_drew_them(tmp_path: Path):
    for method, seeds in FINAL_VALUES.items():
        for seed, value in seeds.items():
            write_cell(tmp_path, method, seed, value)
    for seed in (0, 1):  # only ucb drew pictures; the report links seed 0's
        for name in ("samples_first.png", "samples_last.png"):
            (tmp_path / SPEC / TASK / "ucb" / f"seed{seed}" / name).write_bytes(b"\x89PNG")
    write_report(tmp_path)
    task_dir = tmp_path / SPEC / TASK
    for page, base in [(task_dir / "leaderboard.md", task_dir), (tmp_path / "README.md", tmp_path)]:
        text = page.read_text()
        assert "| method | round 0 | end |" in text  # no top-designs column: no cell drew one
        assert "| ucb (seed 0) | ![round 0](" in text and "greedy (seed" not in text
        links = [part.split(")")[0] for part in text.split("](")[1:] if "samples_" in part.split(")")[0]]
        assert len(links) == 2 and all((base / link).exists() and "seed0" in link for link in links)
    page = (tmp_path / "index.html").read_text()
    assert f'alt="ucb (seed 0) end" src="{SPEC}/{TASK}/ucb/seed0/samples_last.png"' in page
    assert all((tmp_path / src).is_file() for src in sources(page)) and "data:" not in page
    assert "top 10 measured" not in page

    (tmp_path / SPEC / TASK / "ucb" / "seed0" / "top_designs.png").write_bytes(b"\x89PNG")
    write_report(tmp_path)
    assert "| method | round 0 | end | top 10 measured |" in (task_dir / "leaderboard.md").read_text()
    assert (f'alt="ucb (seed 0) top 10 measured" src="{SPEC}/{TASK}/ucb/seed0/top_designs.png"'
            in (tmp_path / "index.html").read_text())


def test_a_sum_of_oracles_says_how_many_calls_a_query_costs(tmp_path: Path):
    write_cell(tmp_path, "ucb", 0, 0.5)
    metrics_path = tmp_path / SPEC / TASK / "ucb" / "seed0" / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    write_report(tmp_path)
    assert "Oracle calls" not in (tmp_path / "README.md").read_text()
    metrics_path.write_text(json.dumps(metrics | {"oracle_calls": 2 * metrics["queries_used"]}))
    write_report(tmp_path)
    assert "Oracle calls: up to 2 per design measured" in (tmp_path / SPEC / TASK / "leaderboard.md").read_text()
    # Free queries (infeasible designs on a PMO-style task) call the oracle once each and are no sum.
    free = metrics["queries_used"]
    metrics_path.write_text(json.dumps(metrics | {"oracle_calls": metrics["queries_used"] + free,
                                                  "queries_logged": metrics["queries_used"] + free}))
    write_report(tmp_path)
    assert "Oracle calls" not in (tmp_path / SPEC / TASK / "leaderboard.md").read_text()


def test_without_held_out_evaluation_rows_rank_by_auc():
    from reports.leaderboard import ORDER_NOTE_NO_EVALUATION, header_lines, leaderboard_table

    cells = pd.DataFrame({"method": ["a", "b", "c"], "final_value": [None, None, None],
                          "auc_top10": [0.2, 0.5, 0.3], "task": "t", "spec": "s", "budget": 8, "seed": 0,
                          "queries_used": 8, "eval_oracle_calls": 0})
    assert leaderboard_table(cells)["method"].tolist() == ["b", "c", "a"]
    assert header_lines(cells)[-1] == ORDER_NOTE_NO_EVALUATION


def test_a_task_without_pictures_lists_each_methods_top_designs(report):
    results, _ = report
    markdown = (results / SPEC / TASK / "leaderboard.md").read_text()
    # write_cell's rewards rise with the index: ucb's best over seeds is seed 1's last design, 0.62
    assert "| ucb | `ucb1-5` 0.620 | `ucb0-4` 0.800 |" not in markdown  # sorted by reward, not by seed
    assert "| ucb | `ucb0-4` 0.800 | `ucb0-3` 0.640 | `ucb1-5` 0.620 |" in markdown
    assert "<code>ucb0-4</code> 0.800" in (results / "index.html").read_text()


def test_paired_differences_are_the_leaders_seed_by_seed_gaps_in_markdown_and_html(report):
    results, _ = report
    gaps = [FINAL_VALUES["ucb"][s] - FINAL_VALUES["greedy"][s] for s in (0, 1)]  # 0.50 and 0.12
    mean, half = statistics.mean(gaps), 12.706 * statistics.stdev(gaps) / 2 ** 0.5  # t(0.975, 1 df)
    shown = f"+{mean:.3f} ± {half:.3f}"
    markdown = (results / SPEC / TASK / "leaderboard.md").read_text()
    assert f"| greedy | {shown} | 2 | no |" in markdown  # the interval holds 0 with two seeds
    page = (results / "index.html").read_text()
    assert f"<td>greedy</td><td>{shown}</td><td>2</td><td>no</td>" in page


def test_seikos_question_is_answered_by_the_contrasts_whose_methods_ran():
    from reports.leaderboard import seiko_contrasts

    values = {"seiko-ucb": [0.5, 0.6, 0.7], "greedy": [0.3, 0.3, 0.4], "non-adaptive": [0.3, 0.5, 0.4]}
    cells = pd.DataFrame([{"method": m, "seed": s, "final_value": v} for m, vs in values.items()
                          for s, v in enumerate(vs)])
    table = seiko_contrasts(cells)
    assert table["contrast"].tolist() == ["seiko-ucb minus greedy", "seiko-ucb minus non-adaptive",
                                          "greedy minus non-adaptive"]  # no bootstrap or TS ran
    gaps = np.array([0.2, 0.3, 0.3])
    half = 4.303 * gaps.std(ddof=1) / 3**0.5  # t(0.975, 2 df)
    assert table.iloc[0, 1] == f"+{gaps.mean():.3f} ± {half:.3f}" and table.iloc[0, 3] == "yes"
    assert table.iloc[2, 3] == "no"  # greedy minus non-adaptive: 0, -0.2, 0
    assert seiko_contrasts(cells[cells["method"] == "greedy"]).empty
