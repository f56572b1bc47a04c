"""The one place where feedback is spent, cached and logged.

Every method reaches the oracle only through `BudgetedOracle`: it counts the
charged queries against the budget, answers a repeated design from its cache
for free, refuses (with `BudgetExhausted`) a batch that would go past the budget
before asking anything, and appends every query to a log. That log is the ground
truth every curve and metric is computed from (mol_opt's `Oracle` wrapper, but
raising instead of quietly returning 0 once the budget is spent).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from domains.base import Oracle

LOG_COLUMNS = ["call", "round", "method", "seed", "key", "reward", "feasible", "reason", "charged", "cached",
               "oracle_calls", "wall_s"]
COMPONENT_PREFIX = "reward."  # then the component oracle's name: one column per component of a weighted sum


class BudgetExhausted(RuntimeError):
    """Asked for more charged queries than the budget has left."""


class OracleError(RuntimeError):
    """The oracle raised or answered something unusable; nothing was charged."""


@dataclass
class Answer:
    """The oracle's answer to one batch, in the order asked."""

    designs: list[Any]
    reward: np.ndarray  # (N,) float64, NaN where infeasible
    feasible: np.ndarray  # (N,) bool
    charged: int  # how many of these cost budget


def ask_oracle(oracle: Oracle, designs: list[Any]) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Call an oracle and check its answer: (reward with NaN where infeasible,
    feasible, each component's reward for a combined oracle).

    Any exception of a user's oracle becomes one `OracleError` line, and so do a
    wrong-length answer and a non-finite reward for a feasible design."""
    try:
        out = oracle(designs)
    except Exception as err:
        raise OracleError(f"oracle {oracle.name!r} raised {type(err).__name__} on a batch of {len(designs)}: {err}") from err
    reward = np.asarray(out.reward, dtype=np.float64).reshape(-1)
    feasible = np.asarray(out.feasible, dtype=bool).reshape(-1)
    if reward.shape[0] != len(designs) or feasible.shape[0] != len(designs):
        raise OracleError(
            f"oracle {oracle.name!r} answered {reward.shape[0]} rewards and {feasible.shape[0]} "
            f"feasibility flags for {len(designs)} designs"
        )
    bad = np.flatnonzero(feasible & ~np.isfinite(reward))
    if bad.size:
        raise OracleError(f"oracle {oracle.name!r} returned a non-finite reward ({reward[bad[0]]}) for feasible design {bad[0]}")
    components = {name: np.asarray(values, dtype=np.float64).reshape(-1) for name, values in out.components.items()}
    for name, values in components.items():
        if values.shape[0] != len(designs):
            raise OracleError(f"oracle {oracle.name!r} answered {values.shape[0]} {name} rewards for {len(designs)} designs")
    return np.where(feasible, reward, math.nan), feasible, components


def ask_reasons(oracle: Oracle, designs: list[Any]) -> list[str]:
    """Why each (infeasible) design was refused, from the oracle's optional
    `reasons(designs)`; empty strings for an oracle that does not say. Part of the
    log because "0.3 infeasible" is a finding only when one can see what broke."""
    if not designs or not hasattr(oracle, "reasons"):
        return [""] * len(designs)
    try:
        why = list(oracle.reasons(designs))
    except Exception as err:
        raise OracleError(f"oracle {oracle.name!r}: reasons() raised {type(err).__name__}: {err}") from err
    if len(why) != len(designs):
        raise OracleError(f"oracle {oracle.name!r} gave {len(why)} reasons for {len(designs)} designs")
    return ["" if r is None else str(r) for r in why]


class BudgetedOracle:
    """Wraps an `Oracle` with a budget, a cache keyed by `oracle.key` and a query log.

    With a `journal` file, every answer the oracle gives is also appended there
    as it comes. A run killed in the middle of a round goes on from its last
    checkpoint with a restored copy of this object that has not seen that
    round's answers; `prepay(journal)` hands them back, and the resumed round,
    proposing the same designs, is answered from them without asking the oracle
    again (and charged for them, as the killed round was)."""

    def __init__(self, oracle: Oracle, budget: int, *, method: str, seed: int, charge_infeasible: bool = True,
                 journal: Path | None = None):
        if budget < 1:
            raise ValueError(f"budget must be at least 1 query, got {budget}")
        self.oracle, self.budget = oracle, budget
        self.method, self.seed = method, seed
        self.charge_infeasible = charge_infeasible
        self.journal = journal
        self._prepaid: dict[str, tuple[float, bool, str, dict[str, float], float]] = {}
        self._cache: dict[str, tuple[float, bool, str, dict[str, float]]] = {}
        self.calls_per_design = int(getattr(oracle, "calls_per_design", 1))
        self._rows: list[dict[str, Any]] = []
        self.used = 0

    @property
    def remaining(self) -> int:
        return self.budget - self.used

    def __call__(self, designs: Sequence[Any], *, round: int) -> Answer:
        designs = list(designs)
        keys = [self._key(d, i) for i, d in enumerate(designs)]
        new: dict[str, Any] = {}
        for key, design in zip(keys, designs):
            if key not in self._cache:
                new.setdefault(key, design)
        # Infeasible designs may turn out free, but we cannot know before asking:
        # refuse any batch whose new designs could overrun the budget.
        if len(new) > self.remaining:
            raise BudgetExhausted(
                f"{self.method} asked {len(new)} new queries in round {round} but only {self.remaining} "
                f"of the budget of {self.budget} remain"
            )
        fresh, seconds = self._ask({key: design for key, design in new.items() if key not in self._prepaid})
        for key in new:
            if key in self._prepaid:
                *answer, seconds[key] = self._prepaid.pop(key)
                fresh[key] = tuple(answer)

        reward, feasible, charged = np.empty(len(designs)), np.empty(len(designs), bool), 0
        for i, key in enumerate(keys):
            first_time = key in fresh
            r, ok, reason, components = fresh.pop(key) if first_time else self._cache[key]
            self._cache[key] = (r, ok, reason, components)
            pay = first_time and (ok or self.charge_infeasible)
            if pay:
                self.used += 1
                charged += 1
            reward[i], feasible[i] = r, ok
            self._rows.append(
                dict(call=self.used if pay else None, round=round, method=self.method, seed=self.seed, key=key,
                     reward=r, feasible=ok, reason=reason, charged=pay, cached=not first_time,
                     oracle_calls=self.calls_per_design if first_time else 0,
                     wall_s=seconds[key] if first_time else 0.0, **components)
            )
        return Answer(designs, reward, feasible, charged)

    def _ask(self, new: dict[str, Any]) -> tuple[dict[str, tuple], dict[str, float]]:
        """The oracle's answers to the designs `new` (by key), and the seconds each took, journalled."""
        if not new:
            return {}, {}
        start = time.perf_counter()
        new_reward, new_feasible, parts = ask_oracle(self.oracle, list(new.values()))
        refused = [key for key, ok in zip(new, new_feasible) if not ok]
        why = dict(zip(refused, ask_reasons(self.oracle, [new[key] for key in refused])))
        per_query = (time.perf_counter() - start) / len(new)
        fresh = {key: (float(r), bool(ok), why.get(key, ""),
                       {COMPONENT_PREFIX + name: float(v[i]) for name, v in parts.items()})
                 for i, (key, r, ok) in enumerate(zip(new, new_reward, new_feasible))}
        if self.journal is not None:
            with open(self.journal, "a") as f:  # one line per answer: a kill cuts at most the last, unread
                f.writelines(json.dumps([key, *answer, per_query]) + "\n" for key, answer in fresh.items())
        return fresh, dict.fromkeys(fresh, per_query)

    def prepay(self, journal: Path) -> int:
        """Take the journalled answers this oracle has not seen as bought already; returns their number."""
        if not journal.exists():
            return 0
        for line in journal.read_text().splitlines():
            try:
                key, reward, feasible, reason, components, seconds = json.loads(line)
            except ValueError:  # the line a kill cut short: its answer is asked again
                continue
            if key not in self._cache:
                self._prepaid[key] = (reward, feasible, reason, components, seconds)
        return len(self._prepaid)

    def _key(self, design: Any, index: int) -> str:
        try:
            return self.oracle.key(design)
        except Exception as err:  # a user's oracle: any exception becomes one clear line
            raise OracleError(f"oracle {self.oracle.name!r} could not key design {index}: {err}") from err

    def log(self) -> pd.DataFrame:
        """Every query so far, in the order asked (schema: docs/results-schema.md)."""
        extra = sorted({c for row in self._rows for c in row} - set(LOG_COLUMNS))
        frame = pd.DataFrame(self._rows, columns=LOG_COLUMNS + extra)
        frame["call"] = frame["call"].astype("Int64")
        return frame
