"""Learning curves of one task: reward against feedback spent, one colour per method.

Three panels: the top-10 mean and the best-so-far score against charged
queries (from each cell's query log), and the held-out value of the model after
each round against queries used (from `evals.csv`, with the learned reward's
prediction dotted beside it: the gap is where over-optimisation shows).

Seeds are aligned on the query index and each seed's curve is held at its last
value up to the budget, as PMO's AUC pads it, so a method that stopped early is
drawn at the level it reached. Lines are the mean over seeds, bands ± the sample
std. Figures are built on `matplotlib.figure.Figure` rather than pyplot so that
no global backend is switched and no figure outlives the call.
"""

from __future__ import annotations

import io

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from reports.leaderboard import task_optimum
from reports.metrics import best_so_far, load_log, top_k_curve

TOP_K = 10
RGBA = tuple[float, float, float, float]  # a colour from a matplotlib colormap


def _padded(curve: np.ndarray, length: int, fill: float) -> np.ndarray:
    """`curve` held at its last value (at `fill` if empty) up to `length` points."""
    last = curve[-1] if len(curve) else fill
    return np.concatenate([curve, np.full(length - len(curve), last)])


def _band(ax: Axes, x: np.ndarray, runs: np.ndarray, colour: RGBA, label: str | None, style: str = "-") -> None:
    """Mean over seeds (rows of `runs`, NaN = missing) as a line, ± sample std as a band.

    With one seed the std is undefined and no band is drawn.
    """
    frame = pd.DataFrame(runs)
    mean, std = frame.mean().to_numpy(), frame.std(ddof=1).to_numpy()
    ax.plot(x, mean, style, color=colour, label=label, lw=1.5)
    ax.fill_between(x, mean - std, mean + std, color=colour, alpha=0.2, lw=0)


def _query_curves(ax_top: Axes, ax_best: Axes, runs: pd.DataFrame, length: int, colour: RGBA) -> None:
    """Top-k mean and best-so-far of one method's seeds against charged queries."""
    top, best = [], []
    for cell in runs.itertuples():
        log = load_log(cell.dir / "queries.csv")
        top.append(_padded(top_k_curve(log, cell.floor, TOP_K), length, cell.floor))
        best.append(_padded(best_so_far(log, cell.floor), length, cell.floor))
    x = np.arange(1, length + 1)
    _band(ax_top, x, np.array(top), colour, runs["method"].iloc[0])
    _band(ax_best, x, np.array(best), colour, None)


def _eval_curve(ax: Axes, runs: pd.DataFrame, colour: RGBA) -> None:
    """Held-out value per round against queries used (mean over seeds at each round)."""
    evals = pd.concat([pd.read_csv(cell.dir / "evals.csv").assign(seed=cell.seed) for cell in runs.itertuples()])
    by_round = {
        column: evals.pivot(index="round", columns="seed", values=column).sort_index()
        for column in ("queries_used", "value", "learned_reward")
    }
    x = by_round["queries_used"].mean(axis=1).to_numpy()
    _band(ax, x, by_round["value"].to_numpy().T, colour, None, style="o-")
    learned = by_round["learned_reward"].mean(axis=1)
    if learned.notna().any():
        ax.plot(x, learned.to_numpy(), ":", color=colour, lw=1.5)


def curves_png(cells: pd.DataFrame) -> bytes:
    """The three-panel PNG of one task's finished cells (rows of `find_cells`)."""
    fig = Figure(figsize=(15, 4), dpi=120, layout="constrained")
    ax_top, ax_best, ax_value = fig.subplots(1, 3)
    length = int(max(cells["budget"].max(), cells["queries_used"].max()))
    methods = cells.groupby("method", sort=True)
    palette = matplotlib.colormaps["tab10" if len(methods) <= 10 else "tab20"]  # one colour per method, up to 20
    for i, (_, runs) in enumerate(methods):
        colour = palette(i % palette.N)
        _query_curves(ax_top, ax_best, runs, length, colour)
        _eval_curve(ax_value, runs, colour)

    # The optimum is drawn on the query curves only: held-out means sit far below
    # it, and a shared axis up to the optimum would flatten their differences.
    optimum = task_optimum(cells)
    for ax in (ax_top, ax_best, ax_value):
        if optimum is not None and ax is not ax_value:
            ax.axhline(optimum, ls="--", color="black", lw=1, label="optimum" if ax is ax_top else None)
        ax.grid(alpha=0.3)
    ax_top.set(title=f"Top-{TOP_K} mean of queried designs", xlabel="charged queries", ylabel=f"top-{TOP_K} mean score")
    ax_best.set(title="Best design so far", xlabel="charged queries", ylabel="best score")
    ax_value.set(
        title="Held-out value after each round (dotted: learned reward)",
        xlabel="queries used",
        ylabel="mean oracle reward",
    )
    fig.suptitle(f"{cells['spec'].iloc[0]} / {cells['task'].iloc[0]}")
    handles, labels = ax_top.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", title="mean ± std over seeds", fontsize="small")

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
