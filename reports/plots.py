"""Learning curves of one task: reward against feedback spent, one style per method.

Four panels in a 2x2 grid (1,300 x 900 px, read at full size on a 1,400 px
wide page): the top-10 mean and the best-so-far score against charged
queries (from each cell's query log); the held-out value of the model after
each round against queries used (from `evals.csv`), with the pretrained
model's value as a reference line; and, in a panel of its own, the learned
reward of the same held-out samples (its gap to the held-out value is where
over-optimisation shows; drawn apart so that it does not set the value
panel's range). The legend sits below the grid, so the panels get the width.

Seeds are aligned on the query index and each seed's curve is held at its last
value up to the budget, as PMO's AUC pads it, so a method that stopped early is
drawn at the level it reached. Lines are the mean over seeds, bands its 95%
confidence interval (Student's t over seeds; none for one seed). A panel's
y-range is that of the means, and each band is clipped to it: with three seeds
an interval is wide, and a range that held every band would flatten the means
it is there to compare. A method is
told apart by colour and line style together (10 colours x 4 styles, distinct
for up to 20 methods). Figures are built on `matplotlib.figure.Figure` rather
than pyplot so that no global backend is switched and no figure outlives the call.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from reports.leaderboard import task_optimum
from reports.metrics import best_so_far, load_log, top_k_curve
from reports.stats import ci95_columns

TOP_K = 10
RGBA = tuple[float, float, float, float]  # a colour from a matplotlib colormap
LINE_STYLES = ("-", "--", "-.", ":")
PRETRAINED = "pretrained model"


def method_style(i: int) -> tuple[RGBA, str]:
    """Colour and line style of the i-th method: the pair is distinct for 20 methods."""
    return matplotlib.colormaps["tab10"](i % 10), LINE_STYLES[i % len(LINE_STYLES)]


def _padded(curve: np.ndarray, length: int, fill: float) -> np.ndarray:
    """`curve` held at its last value (at `fill` if empty) up to `length` points."""
    last = curve[-1] if len(curve) else fill
    return np.concatenate([curve, np.full(length - len(curve), last)])


@dataclass(frozen=True)
class Band:
    """A 95% interval waiting to be filled: it is drawn after its panel's y-range
    is fixed (from the means), so that it can be clipped to that range."""

    ax: Axes
    x: np.ndarray
    low: np.ndarray
    high: np.ndarray
    colour: RGBA


def _mean_line(ax: Axes, x: np.ndarray, runs: np.ndarray, colour: RGBA, style: str, label: str | None,
               marker: str | None = None) -> list[Band]:
    """Draw the mean over seeds (rows of `runs`, NaN = missing) as a line; return its
    95% interval as a band to fill later (none for a single seed)."""
    mean, half = ci95_columns(runs)
    ax.plot(x, mean, linestyle=style, marker=marker, color=colour, label=label, lw=1.5, ms=4)
    return [Band(ax, x, mean - half, mean + half, colour)] if np.isfinite(half).any() else []


def _fill(band: Band) -> None:
    """Fill `band` clipped to its panel's current y-range, so that no band runs off
    the axes: a band that reaches the edge says its interval goes beyond it."""
    low, high = band.ax.get_ylim()
    band.ax.fill_between(band.x, np.clip(band.low, low, high), np.clip(band.high, low, high), color=band.colour,
                         alpha=0.15, lw=0)


def _query_curves(ax_top: Axes, ax_best: Axes, runs: pd.DataFrame, length: int, colour: RGBA,
                  style: str) -> list[Band]:
    """Top-k mean and best-so-far of one method's seeds against charged queries."""
    top, best = [], []
    for cell in runs.itertuples():
        log = load_log(cell.dir / "queries.csv")
        top.append(_padded(top_k_curve(log, cell.floor, TOP_K), length, cell.floor))
        best.append(_padded(best_so_far(log, cell.floor), length, cell.floor))
    x = np.arange(1, length + 1)
    return (_mean_line(ax_top, x, np.array(top), colour, style, runs["method"].iloc[0])
            + _mean_line(ax_best, x, np.array(best), colour, style, None))


def _evals(runs: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """round x seed tables of one method's evals.csv columns."""
    evals = pd.concat([pd.read_csv(cell.dir / "evals.csv").assign(seed=cell.seed) for cell in runs.itertuples()])
    return {column: evals.pivot(index="round", columns="seed", values=column).sort_index()
            for column in ("queries_used", "value", "learned_reward")}


def _eval_curves(ax_value: Axes, ax_learned: Axes, by_round: dict[str, pd.DataFrame], colour: RGBA,
                 style: str) -> list[Band]:
    """Held-out value and learned reward per round against queries used."""
    x = by_round["queries_used"].mean(axis=1).to_numpy()
    bands = []
    for ax, column in ((ax_value, "value"), (ax_learned, "learned_reward")):
        if by_round[column].notna().any().any():
            bands += _mean_line(ax, x, by_round[column].to_numpy().T, colour, style, None, marker="o")
    return bands


def _fit_to_lines(ax: Axes, margin: float = 0.1) -> None:
    """The y-range of the mean lines (and reference lines), not of the bands: with
    three seeds a 95% band is wide, and one wide band would flatten every mean
    (`_fill` clips the bands to this range)."""
    ys = np.concatenate([np.asarray(line.get_ydata(), dtype=float) for line in ax.get_lines()] or [np.array([])])
    ys = ys[np.isfinite(ys)]
    if len(ys):
        low, high = ys.min(), ys.max()
        pad = margin * (high - low) if high > low else max(abs(high), 1.0) * margin
        ax.set_ylim(low - pad, high + pad)


def pretrained_value(evals: list[dict[str, pd.DataFrame]]) -> float | None:
    """The held-out value of the pretrained model: round 0 of every cell (all
    methods start from it), averaged; None when no cell evaluated it."""
    values = pd.concat([e["value"].iloc[0] for e in evals if len(e["value"])])
    values = values.dropna()
    return float(values.mean()) if len(values) else None


def _legend(fig: Figure, ax_top: Axes, ax_value: Axes) -> None:
    """One legend for the four panels, below them, in as many columns as fit the
    width, so that the panels keep the figure's width and the names stay readable."""
    handles, labels = ax_top.get_legend_handles_labels()
    more, more_labels = ax_value.get_legend_handles_labels()
    fig.legend(handles + more, labels + more_labels, loc="outside lower center", ncols=min(len(labels) + len(more), 6),
               title="mean over seeds (line), 95% CI (band, clipped to the panel)")


def curves_figure(cells: pd.DataFrame) -> Figure:
    """The four panels of one task's finished cells (rows of `find_cells`)."""
    fig = Figure(figsize=(13, 9), dpi=100, layout="constrained")
    (ax_top, ax_best), (ax_value, ax_learned) = fig.subplots(2, 2)
    length = int(max(cells["budget"].max(), cells["queries_used"].max()))
    evals, bands = [], []
    for i, (_, runs) in enumerate(cells.groupby("method", sort=True)):
        colour, style = method_style(i)
        bands += _query_curves(ax_top, ax_best, runs, length, colour, style)
        evals.append(_evals(runs))
        bands += _eval_curves(ax_value, ax_learned, evals[-1], colour, style)

    # The optimum is drawn on the query curves only: held-out means sit far below
    # it, and a shared axis up to the optimum would flatten their differences.
    optimum = task_optimum(cells)
    if optimum is not None:
        for ax in (ax_top, ax_best):
            ax.axhline(optimum, ls="--", color="black", lw=1, label="optimum" if ax is ax_top else None)
    reference = pretrained_value(evals)
    if reference is not None:
        for ax in (ax_value, ax_learned):
            ax.axhline(reference, ls=(0, (1, 1)), color="grey", lw=1.5, label=PRETRAINED if ax is ax_value else None)
    for ax in (ax_top, ax_best, ax_value, ax_learned):
        ax.grid(alpha=0.3)
        _fit_to_lines(ax)
    for band in bands:
        _fill(band)
    ax_top.set(title=f"Top-{TOP_K} mean of queried designs", xlabel="charged oracle queries",
               ylabel=f"top-{TOP_K} mean oracle score")
    ax_best.set(title="Best design so far", xlabel="charged oracle queries", ylabel="best oracle score")
    ax_value.set(title="Held-out value after each round", xlabel="charged oracle queries used",
                 ylabel="mean oracle reward of held-out samples")
    ax_learned.set(title="Learned reward of the same samples", xlabel="charged oracle queries used",
                   ylabel="mean learned reward (method's model)")
    fig.suptitle(f"{cells['spec'].iloc[0]} / {cells['task'].iloc[0]}  (infeasible designs score the task's floor)",
                 fontsize="x-large")
    _legend(fig, ax_top, ax_value)
    return fig


def curves_png(cells: pd.DataFrame) -> bytes:
    """`curves_figure` as PNG bytes."""
    buffer = io.BytesIO()
    curves_figure(cells).savefig(buffer, format="png")
    return buffer.getvalue()
