"""Leaderboards: one table per (spec, task), one row per method, over seeds.

Reads only the finished cells' `metrics.json` (a cell is finished iff that file
exists), so a report can be drawn while a benchmark is still running and never
shows a half-written cell. Produces text only; `reports.write_report` writes it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from reports.metrics import load_log, top_queries
from reports.stats import ci95

CELL_GLOB = "*/*/*/seed*/metrics.json"  # <spec>/<task>/<method>/seed<N>/metrics.json
ORDER_NOTE = "Rows are ordered by final value (mean over seeds), highest first."
ORDER_NOTE_NO_EVALUATION = ("No held-out evaluation was run (evaluation off): rows are ordered by AUC top-10 "
                            "(mean over seeds), highest first.")


CURRENT = "current"
NOT_CHECKED = "not checked"
"""A cell's code state when the caller knew none (`write_report` without `code`)."""


def find_cells(results_dir: Path, code: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per finished cell: its metrics.json fields plus spec, task, method, dir
    and `code_state`, what `code` (by cell folder relative to `results_dir`) says of the
    code that made it: 'current', 'stale: <version>', or 'not checked'.

    Spec, task and method come from the cell's folder, which is where its report
    goes. Raises FileNotFoundError when there is nothing to report.
    """
    paths = sorted(Path(results_dir).glob(CELL_GLOB))
    if not paths:
        raise FileNotFoundError(f"no finished cells ({CELL_GLOB}) under {results_dir}: run `seiko-bench run SPEC` first")
    rows = []
    for path in paths:
        spec, task, method = path.parts[-5:-2]
        state = (code or {}).get(path.parent.relative_to(results_dir).as_posix(), NOT_CHECKED)
        rows.append({**json.loads(path.read_text()), "spec": spec, "task": task, "method": method, "dir": path.parent,
                     **proposal_shares(path.parent / "queries.csv"),
                     "code_state": state})
    return pd.DataFrame(rows)


def proposal_shares(log: Path) -> dict[str, float]:
    """Of every design a cell proposed to the oracle, free ones included: the feasible
    fraction (`proposed_feasible`) and the share that repeated a design already
    measured (`proposed_repeats`). Where infeasible designs cost nothing (PMO's rule
    for molecules), the charged queries' feasible rate is 1.0 however many invalid
    designs a collapsed model proposes, and only the first shows the collapse; a
    cell that used less than its budget says with the second whether it is because
    its model can only repeat itself."""
    if not log.exists():
        return {"proposed_feasible": float("nan"), "proposed_repeats": float("nan")}
    frame = pd.read_csv(log, usecols=["feasible", "cached"])
    return {"proposed_feasible": float(frame["feasible"].mean()), "proposed_repeats": float(frame["cached"].mean())}


def code_states(cells: pd.DataFrame) -> pd.Series:
    """The cells' `code_state` (NOT_CHECKED where a table of cells has none)."""
    states = cells["code_state"] if "code_state" in cells else pd.Series(NOT_CHECKED, index=cells.index)
    return states.fillna(NOT_CHECKED).astype(str)


def code_label(states: pd.Series) -> str:
    """What a group of cells' code states come to: 'current' when all are, the one
    label they share, or how many are stale and by which code."""
    if states.nunique() == 1:
        return str(states.iloc[0])
    stale = states[states.str.startswith("stale")]
    if not len(stale):
        return f"{(states == CURRENT).sum()} of {len(states)} current, the rest {NOT_CHECKED}"
    return f"{len(stale)} of {len(states)} stale ({'; '.join(sorted(stale.str.removeprefix('stale: ').unique()))})"


def code_summary(cells: pd.DataFrame) -> str:
    """'12 of 15 cells from the current code', or that nobody checked."""
    states = code_states(cells)
    if (states == NOT_CHECKED).all():
        return "code versions not checked (`seiko-bench report` checks those of the specs it finds)"
    current = int((states == CURRENT).sum())
    stale = int(states.str.startswith("stale").sum())
    return (f"{current} of {len(states)} cells from the current code"
            + (f"; {stale} stale, marked in the code column (`seiko-bench status` lists them)" if stale else ""))


def _numbers(values: pd.Series) -> pd.Series:
    """Numeric values without the missing ones (null in JSON, e.g. no optimum)."""
    return pd.to_numeric(values, errors="coerce").dropna()


def _mean(fmt: str) -> Callable[[pd.Series], str]:
    def render(values: pd.Series) -> str:
        values = _numbers(values)
        return fmt.format(values.mean()) if len(values) else "n/a"

    return render


def _mean_ci(values: pd.Series) -> str:
    """'mean ± half-width of its 95% confidence interval' (Student's t over seeds)
    to 3 decimals; just the mean for one seed."""
    mean, half = ci95(_numbers(values).to_numpy())
    if not np.isfinite(mean):
        return "n/a"
    return f"{mean:.3f}" if not np.isfinite(half) else f"{mean:.3f} ± {half:.3f}"


# (column title, metrics.json key, how its values over seeds are rendered)
COLUMNS: list[tuple[str, str, Callable[[pd.Series], str]]] = [
    ("final value (mean ± 95% CI)", "final_value", _mean_ci),
    ("final feasible fraction", "final_feasible", _mean("{:.3f}")),
    ("learned reward of the same samples", "final_learned_reward", _mean("{:.3f}")),
    ("reward model's rank correlation (feasible samples)", "final_value_spearman", _mean("{:.2f}")),
    ("AUC top-10 (mean ± 95% CI)", "auc_top10", _mean_ci),
    ("best (mean)", "best", _mean("{:.3f}")),
    ("feasible rate of queries", "feasible_rate", _mean("{:.3f}")),
    ("feasible rate of all proposals (free ones too)", "proposed_feasible", _mean("{:.3f}")),
    ("repeats among all proposals", "proposed_repeats", _mean("{:.3f}")),
    ("queries used", "queries_used", _mean("{:.0f}")),
    ("evaluation oracle calls", "eval_oracle_calls", _mean("{:.0f}")),
    ("wall time (s)", "wall_s", _mean("{:.1f}")),
]


EVALUATION_KEYS = ("final_value", "final_feasible", "final_learned_reward", "final_value_spearman", "eval_oracle_calls")
"""The columns of the held-out evaluation, which a run with evaluation off has none of."""


def shown_columns(cells: pd.DataFrame) -> list[tuple[str, str, Callable[[pd.Series], str]]]:
    """`COLUMNS` without the held-out evaluation's when no cell evaluated anything
    (evaluation off: a lab's assay too costly to call outside the budget)."""
    evaluated = "final_value" in cells and len(_numbers(cells["final_value"])) > 0
    return [c for c in COLUMNS if evaluated or c[1] not in EVALUATION_KEYS]


def ranking_key(cells: pd.DataFrame) -> str:
    """Rows are ranked by the held-out final value; where a run evaluated nothing
    (evaluation off), by the AUC of its query log."""
    return "final_value" if len(_numbers(cells["final_value"])) else "auc_top10"


def seed_groups(cells: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(methods that ran the most seeds, methods that ran fewer): a mean over one
    seed is not ranked beside a mean over five, so the second group is ranked apart,
    below the first (a partial run, or a method added to a spec later)."""
    counts = cells.groupby("method")["seed"].nunique()
    full = counts == counts.max()
    return sorted(counts.index[full]), sorted(counts.index[~full])


def leaderboard_table(cells: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard of one task's cells, as display strings, best method first;
    the methods with fewer seeds than the most follow, ranked among themselves."""
    by_method = cells.groupby("method", sort=True)
    final_means = by_method[ranking_key(cells)].apply(lambda v: _numbers(v).mean())
    most = cells.groupby("method")["seed"].nunique().max()
    rows = []
    for group in seed_groups(cells):
        for method in final_means[group].sort_values(ascending=False, kind="stable", na_position="last").index:
            runs = by_method.get_group(method)
            n = runs["seed"].nunique()
            seeds = str(n) if n == most else f"{n} of {most}, ranked apart"
            columns = {title: render(runs[key]) if key in runs else "n/a" for title, key, render in shown_columns(cells)}
            rows.append({"method": method, "seeds": seeds, **columns, "code": code_label(code_states(runs))})
    return pd.DataFrame(rows)


def seeds_line(cells: pd.DataFrame) -> str:
    """The seeds actually present: all methods', or the full group's and each partial method's."""
    def listed(frame: pd.DataFrame) -> str:
        return ", ".join(str(int(s)) for s in sorted(frame["seed"].unique()))

    full, partial = seed_groups(cells)
    if not partial:
        return f"Seeds: {listed(cells)}"
    fewer = "; ".join(f"{m} {listed(cells[cells['method'] == m])}" for m in partial)
    return (f"Seeds: {listed(cells[cells['method'].isin(full)])} for {len(full)} method{'s' * (len(full) > 1)}; "
            f"fewer for {len(partial)}, ranked apart below them: {fewer}")


def _pair_code(cells: pd.DataFrame, a: str, b: str) -> str:
    """Whether a paired contrast compares cells of today's code only, or mixes code versions."""
    states = code_states(cells[cells["method"].isin([a, b])])
    if (states == CURRENT).all():
        return CURRENT
    stale = int(states.str.startswith("stale").sum())
    return f"mixes code versions ({stale} of {len(states)} cells stale)" if stale else NOT_CHECKED


def _paired(values: pd.DataFrame, a: str, b: str) -> tuple[str, int, bool]:
    """a minus b over the seeds both ran: "mean ± half-width", seeds, told apart."""
    diff = (values[a] - values[b]).dropna().to_numpy()
    mean, half = ci95(diff)
    shown = "n/a" if not np.isfinite(mean) else f"{mean:+.3f}" + ("" if not np.isfinite(half) else f" ± {half:.3f}")
    return shown, len(diff), bool(np.isfinite(half) and abs(mean) > half)


def _by_seed(cells: pd.DataFrame) -> pd.DataFrame:
    key = ranking_key(cells)
    return cells.assign(v=pd.to_numeric(cells[key], errors="coerce")).pivot_table(
        index="seed", columns="method", values="v", aggfunc="first")


def paired_differences(cells: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """The leader's final value minus every other method's, paired by seed;
    `order` is the leaderboard's method column, leader first.

    Paired, because cells of one seed share the pretrained model's evaluation
    draws (the same generator seed) and so much of their noise: the interval of a
    paired difference is what says whether two methods can be told apart, where
    two overlapping per-method intervals say little."""
    key, values, leader = ranking_key(cells), _by_seed(cells), order[0]
    rows = []
    for method in order[1:]:
        shown, seeds, apart = _paired(values, leader, method)
        rows.append({"method": method, f"{leader} minus method ({key.replace('_', ' ')}, 95% CI)": shown,
                     "seeds paired": str(seeds), "told apart": "yes" if apart else "no",
                     "code": _pair_code(cells, leader, method)})
    return pd.DataFrame(rows)


SEIKO_QUESTION = [("seiko-ucb", "greedy"), ("seiko-bootstrap", "greedy"), ("seiko-ts", "greedy"),
                  ("seiko-ucb", "non-adaptive"), ("seiko-bootstrap", "non-adaptive"), ("greedy", "non-adaptive")]
"""SEIKO's question (Uehara et al. 2024, Table 1): at equal feedback, does optimism
(UCB, bootstrap, Thompson sampling) beat the plain fit, and does adaptivity
(rounds) beat one non-adaptive fit?"""


def seiko_contrasts(cells: pd.DataFrame) -> pd.DataFrame:
    """SEIKO's contrasts, paired by seed, for the pairs whose both methods ran (empty if none)."""
    key, values = ranking_key(cells), _by_seed(cells)
    rows = []
    for a, b in SEIKO_QUESTION:
        if a in values and b in values:
            shown, seeds, apart = _paired(values, a, b)
            rows.append({"contrast": f"{a} minus {b}", f"{key.replace('_', ' ')} (95% CI)": shown,
                         "seeds paired": str(seeds), "told apart": "yes" if apart else "no",
                         "code": _pair_code(cells, a, b)})
    return pd.DataFrame(rows)


def task_optimum(cells: pd.DataFrame) -> float | None:
    """The task's known optimum (metrics.json `optimum`), or None when unknown."""
    known = _numbers(cells["optimum"]) if "optimum" in cells else pd.Series(dtype=float)
    return float(known.iloc[0]) if len(known) else None


def header_lines(cells: pd.DataFrame) -> list[str]:
    """What a reader needs above the table: task, budget, seeds, optimum, ordering."""
    budgets = ", ".join(str(int(b)) for b in sorted(_numbers(cells["budget"]).unique()))
    lines = [
        f"Task: {cells['task'].iloc[0]} (spec {cells['spec'].iloc[0]})",
        f"Budget: {budgets} charged oracle queries",
        seeds_line(cells),
        f"Code: {code_summary(cells)}",
    ]
    if "oracle_calls" in cells:  # a sum of k oracles calls each one per measurement
        # Per design the oracle was asked about: free queries (an infeasible design where those cost
        # nothing) call it too, cached repeats do not.
        asked = cells["queries_logged"] - cells["cache_hits"] if "cache_hits" in cells else cells["queries_used"]
        per_query = _numbers(cells["oracle_calls"] / asked.where(asked > 0))
        if len(per_query) and per_query.max() > 1:
            lines.append(f"Oracle calls: up to {per_query.max():g} per design measured (the oracle is a sum of several)")
    optimum = task_optimum(cells)
    if optimum is not None:
        lines.append(f"Optimum: {optimum:g}")
    return lines + [ORDER_NOTE if ranking_key(cells) == "final_value" else ORDER_NOTE_NO_EVALUATION]


def markdown_table(table: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (pandas' to_markdown needs tabulate)."""

    def row(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    align = [":--"] + ["--:"] * (len(table.columns) - 1)
    body = [row(list(map(str, r))) for r in table.itertuples(index=False)]
    return "\n".join([row(list(table.columns)), row(align), *body])


SAMPLE_PICTURES = {"round 0": "samples_first.png", "end": "samples_last.png",  # written by the runner
                   "top 10 measured": "top_designs.png"}


def sample_pictures(cells: pd.DataFrame, base: Path) -> list[tuple[str, dict[str, str]]]:
    """(method, {column: picture path relative to `base`}) for each method whose
    first seed's cell drew its held-out samples, in leaderboard order. Every
    method's pictures come from the same seed and evaluation generator, so the
    grids show the same seeds and conditions at round 0 and at the end."""
    out = []
    for method in leaderboard_table(cells)["method"]:
        rows = cells[cells["method"] == method].sort_values("seed")
        folder = Path(rows["dir"].iloc[0])
        found = {column: os.path.relpath(folder / name, base) for column, name in SAMPLE_PICTURES.items()
                 if (folder / name).exists()}
        if found:
            out.append((f"{method} (seed {rows['seed'].iloc[0]})", found))
    return out


TOP_DESIGNS = 3


def top_designs(cells: pd.DataFrame, k: int = TOP_DESIGNS) -> list[tuple[str, list[tuple[str, float]]]]:
    """(method, [(design key, reward)]) of the k best distinct feasible designs each
    method measured over all its seeds, in leaderboard order. For sequences the key
    is the design itself: this is what a lab would synthesise next."""
    out = []
    for method in leaderboard_table(cells)["method"]:
        logs = tuple((str(d), (Path(d) / "queries.csv").stat().st_mtime_ns)
                     for d in cells.loc[cells["method"] == method, "dir"])
        out.append((method, list(_best_designs(logs, k))))
    return out


@lru_cache(maxsize=256)
def _best_designs(logs: tuple[tuple[str, int], ...], k: int) -> tuple[tuple[str, float], ...]:
    """The k best distinct feasible charged designs of these query logs. Cached by
    (folder, modification time): one report draws a task's Markdown twice and its
    HTML once, and each would otherwise read every log again."""
    best = top_queries(pd.concat([load_log(Path(folder) / "queries.csv") for folder, _ in logs]), k)
    return tuple(zip(best["key"], best["reward"].astype(float)))


def markdown_section(cells: pd.DataFrame, heading: str, image: str, base: Path) -> str:
    """Heading, header bullets, table, curves image and sample grids (for
    domains with pictures) or the top designs (for the others) of one task, in Markdown. `base` is the folder the
    Markdown lives in. Shared by each task's leaderboard.md and the results
    README, so both show the same table.
    """
    bullets = [f"- {line}" for line in header_lines(cells)]
    table = leaderboard_table(cells)
    lines = [heading, "", *bullets, "", markdown_table(table), ""]
    if len(table) > 1:
        lines += ["Paired differences (same seeds) between the leader and every other method; "
                  "'told apart' when the 95% interval excludes 0:", "",
                  markdown_table(paired_differences(cells, table["method"].tolist())), ""]
    contrasts = seiko_contrasts(cells)
    if len(contrasts):
        lines += ["SEIKO's question, paired by seed: does optimism beat the plain fit (Greedy), and do rounds "
                  "beat one non-adaptive fit, at equal feedback?", "", markdown_table(contrasts), ""]
    lines += [f"![curves]({image})", ""]
    pictures = sample_pictures(cells, base)
    if pictures:
        columns = [c for c in SAMPLE_PICTURES if any(c in found for _, found in pictures)]
        top = " and the 10 best feasible designs it measured (reward under each)" if "top 10 measured" in columns else ""
        lines += [f"Held-out samples, same seeds and conditions at round 0 and at the end{top}:", "",
                  "| method | " + " | ".join(columns) + " |", "|:--|" + ":-:|" * len(columns)]
        lines += [f"| {method} | " + " | ".join(f"![{c}]({found[c]})" if c in found else "" for c in columns)
                  + " |" for method, found in pictures]
    else:  # designs nobody draws (sequences): the best ones, as the log has them
        lines += [f"Top {TOP_DESIGNS} distinct feasible designs each method measured (all seeds):", "",
                  "| method | " + " | ".join(f"#{i + 1}" for i in range(TOP_DESIGNS)) + " |",
                  "|:--|" + ":--|" * TOP_DESIGNS]
        lines += [f"| {method} | " + " | ".join(f"`{key}` {reward:.3f}" for key, reward in best) + " |"
                  for method, best in top_designs(cells)]
    lines.append("")
    return "\n".join(lines)


def readme(sections: list[str], cells: pd.DataFrame) -> str:
    """The results index: a do-not-edit notice, how much of each spec the current
    code made, the summary's link, then each task's Markdown section."""
    notice = (
        "Generated by `seiko-bench report` from the finished cells under this folder;"
        " do not edit by hand (it is overwritten). One line per task: [summary.md](summary.md)."
    )
    code = [f"- {spec}: {code_summary(group)}" for spec, group in cells.groupby("spec", sort=True)]
    return "\n".join(["# seiko-bench results", "", notice, "", "Code versions:", "", *code, "", *sections])
