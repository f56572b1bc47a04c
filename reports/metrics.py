"""Metrics of one cell, computed from its query log alone.

The budgeted oracle's log (`queries.csv`) is the ground truth: every method is
scored from the same record, as mol_opt scores every optimiser from its
`Oracle` buffer. Only *charged* queries count against the budget and appear on
the curves; a repeat answered from the cache, or an infeasible design on a task
where those are free, is logged but costs nothing and adds no point.

An infeasible charged query scores the task's `floor`, so a method that spends
its budget on infeasible designs is penalised on the curves and not ignored.
"""

from __future__ import annotations

import heapq
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# queries.csv columns and their dtypes. `call` is nullable: uncharged rows have none.
LOG_DTYPES: dict[str, Any] = {
    "call": "Int64",
    "round": "int64",
    "method": str,
    "seed": "int64",
    "key": str,
    "reward": "float64",
    "feasible": bool,
    "reason": str,
    "charged": bool,
    "cached": bool,
    "oracle_calls": "int64",
    "wall_s": "float64",
}
# A combined oracle's component rewards follow, one column each: "reward.<oracle name>".
COMPONENT_PREFIX = "reward."
# Only numeric columns may be missing; a key such as "NAN" (a peptide) is a design, not a gap.
_MISSING = ["", "nan", "NaN", "NA", "<NA>"]
_NA_VALUES = {"call": _MISSING, "reward": _MISSING, "wall_s": _MISSING}


def load_log(path: str | Path) -> pd.DataFrame:
    """Read a cell's `queries.csv` with the dtypes of `LOG_DTYPES`.

    Keys are read verbatim (no NaN guessing), so sequence or SMILES keys that
    look like numbers or like "NA" survive the round trip.
    """
    header = pd.read_csv(path, nrows=0).columns
    missing = sorted(set(LOG_DTYPES) - set(header))
    if missing:
        raise ValueError(f"{path}: queries.csv lacks columns {missing}; expected {list(LOG_DTYPES)}")
    components = [c for c in header if c.startswith(COMPONENT_PREFIX)]
    return pd.read_csv(
        path,
        dtype={**LOG_DTYPES, **{c: "float64" for c in components}},
        keep_default_na=False,
        na_values={**_NA_VALUES, **{c: _MISSING for c in components}},
    )


def scores(log: pd.DataFrame, floor: float) -> pd.DataFrame:
    """The charged rows in call order, with `score` = reward if feasible else `floor`.

    Raises ValueError when the charged calls are not exactly 1..n: a gap or a
    duplicate means the log is corrupt, and every curve would be silently wrong.
    """
    charged = log[log["charged"]].sort_values("call")
    calls = charged["call"].to_numpy(dtype="float64", na_value=np.nan)
    if not np.array_equal(calls, np.arange(1, len(charged) + 1)):
        raise ValueError("charged rows of the query log must have calls 1..n, each once")
    return charged.assign(score=np.where(charged["feasible"], charged["reward"], floor))


def best_so_far(log: pd.DataFrame, floor: float) -> np.ndarray:
    """Best score after each charged query (length = number of charged queries)."""
    return np.maximum.accumulate(scores(log, floor)["score"].to_numpy(dtype=float))


def top_queries(log: pd.DataFrame, k: int = 10) -> pd.DataFrame:
    """The k best distinct feasible charged queries of one or more query logs,
    best first, ties in the order logged (a cell's log is in call order)."""
    charged = log[log["charged"] & log["feasible"]]
    return charged.sort_values("reward", ascending=False, kind="stable").drop_duplicates("key").head(k)


def top_k_curve(log: pd.DataFrame, floor: float, k: int = 10) -> np.ndarray:
    """Mean of the top-k scores among the first i charged queries, for i = 1..n.

    Before k queries have been charged the mean is over those charged so far, as
    in mol_opt's `top_auc`. A size-k min-heap keeps this O(n log k) for 10k-query logs.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    heap: list[float] = []
    total = 0.0
    curve = []
    for s in scores(log, floor)["score"].to_numpy(dtype=float):
        if len(heap) < k:
            heapq.heappush(heap, s)
            total += s
        elif s > heap[0]:
            total += s - heapq.heapreplace(heap, s)
        curve.append(total / len(heap))
    return np.asarray(curve, dtype=float)


def auc_top_k(log: pd.DataFrame, budget: int, floor: float, k: int = 10, freq: int = 100) -> float:
    """Area under the top-k curve over the budget, normalised: PMO's AUC top-k.

    This is mol_opt's `top_auc(buffer, k, finish=True, freq, budget)` with the
    curve starting at `floor` instead of 0 (the same when floor = 0). With n
    charged queries and T(i) the top-k mean of the first i of them:

        prev = floor;  S = 0
        for i = freq, 2 freq, ... < min(n, budget):
            S += freq * (prev + T(i)) / 2;  prev = T(i);  last = i   (last = 0 if none)
        S += (n - last) * (prev + T(n)) / 2          # the remainder, one trapezoid
        S += (budget - n) * T(n)                     # pad the unspent budget flat
        AUC = S / budget

    Logging only every `freq` queries is PMO's convention, kept so numbers
    compare with theirs. Note the first trapezoid starts at `floor`, so even a
    log at the optimum from call 1 scores optimum - freq (optimum - floor) / (2 budget).
    An empty log scores `floor`. A log longer than the budget raises: the
    budgeted oracle never answers past it.
    """
    if budget < 1 or freq < 1:
        raise ValueError(f"budget and freq must be at least 1, got budget={budget}, freq={freq}")
    curve = top_k_curve(log, floor, k)
    n = len(curve)
    if n > budget:
        raise ValueError(f"the log has {n} charged queries, more than the budget {budget}")
    if n == 0:
        return float(floor)
    total, prev, last = 0.0, float(floor), 0
    for i in range(freq, n, freq):
        now = curve[i - 1]
        total += freq * (prev + now) / 2
        prev, last = now, i
    final = curve[-1]
    total += (n - last) * (prev + final) / 2
    total += (budget - n) * final
    return float(total / budget)


def feasibility_by_round(log: pd.DataFrame) -> pd.Series:
    """Fraction feasible of each round's charged queries, indexed by round.

    A round whose queries were all free (cache hits, free infeasibles) falls
    back to all its rows, so that it still shows what the method proposed.
    """

    def fraction(rows: pd.DataFrame) -> float:
        charged = rows[rows["charged"]]
        return float((charged if len(charged) else rows)["feasible"].mean())

    rounds = sorted(log["round"].unique())
    fractions = [fraction(log[log["round"] == r]) for r in rounds]
    return pd.Series(fractions, index=pd.Index(rounds, name="round"), name="feasible_fraction", dtype=float)


def _plain(x: float) -> float | None:
    """A JSON-safe float: NaN becomes None (JSON has no NaN)."""
    x = float(x)
    return None if math.isnan(x) else x


def summarise(log: pd.DataFrame, budget: int, floor: float, k: int = 10, freq: int = 100) -> dict[str, Any]:
    """The cell's query-log metrics as plain JSON values, for `metrics.json`.

    Keys: budget, k, freq, queries_used (charged), queries_logged (all rows),
    cache_hits, oracle_calls (underlying oracle calls, k per new design for a
    sum of k oracles), auc_top{k}, best, top{k} (final top-k mean), feasible_rate
    (feasible fraction of charged queries) and feasible_by_round (a list in
    round order). Values undefined without charged queries are None.
    """
    charged = scores(log, floor)
    curve = top_k_curve(log, floor, k)
    return {
        "budget": int(budget),
        "k": int(k),
        "freq": int(freq),
        "queries_used": len(charged),
        "queries_logged": len(log),
        "cache_hits": int(log["cached"].sum()),
        "oracle_calls": int(log["oracle_calls"].sum()),
        f"auc_top{k}": auc_top_k(log, budget, floor, k, freq),
        "best": _plain(charged["score"].max()),
        f"top{k}": _plain(curve[-1]) if len(curve) else None,
        "feasible_rate": _plain(charged["feasible"].mean()),
        "feasible_by_round": [_plain(f) for f in feasibility_by_round(log)],
    }
