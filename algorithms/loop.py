"""The one online loop every method runs in (DESIGN.md, 'The online loop').

    for round r in 1..R:
        x      = method.propose(model, n_r)      # designs to measure this round
        y, ok  = budgeted_oracle(x)              # the only place feedback is spent
        data  += (x, y, ok)
        method.update(model, data)               # train reward model and/or fine-tune
        evaluate(model)                          # held-out samples, not charged

Evaluation draws held-out designs from the current model with the same
generator seed every round (common random numbers across rounds and methods),
scores them with the raw oracle, charges nothing and logs nothing in the query
log: the query log holds only what a method paid for.
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from algorithms.budgeted_oracle import BudgetedOracle, ask_oracle
from algorithms.method import Feedback, Method, check_capabilities
from domains.base import DiffusionModel


@dataclass
class RoundRecord:
    """One row of a cell's evals.csv: the model after `round`'s update."""

    round: int  # 0 = the pretrained model, before any query
    queries_used: int
    value: float  # mean oracle reward of held-out samples, infeasible = floor (SEIKO's "Value")
    feasible_fraction: float
    learned_reward: float  # the method's own reward model on the same samples (NaN if none)
    learned_corr: float  # Pearson correlation of the learned and the oracle's reward there (NaN if none)
    wall_s: float
    peak_rss_mb: float
    diagnostics: dict[str, float] = field(default_factory=dict)
    samples: list[Any] = field(default_factory=list, repr=False)  # the held-out designs scored (not in the row)

    def row(self) -> dict[str, float]:
        out = {k: v for k, v in vars(self).items() if k not in ("diagnostics", "samples")}
        return {**out, **self.diagnostics}


def evaluate(model: DiffusionModel, method: Method, oracle, floor: float, n: int,
             seed: int) -> tuple[tuple[float, float, float, float], list[Any]]:
    """(value, feasible fraction, mean learned reward, learned-vs-oracle correlation)
    of n held-out samples, and the samples: the gap between the two rewards is
    over-optimisation."""
    designs = method.draw(model, n, torch.Generator().manual_seed(seed)).designs
    reward, feasible, _ = ask_oracle(oracle, designs)
    score = np.where(feasible, reward, floor)
    learned = method.predict(designs)
    if learned is None:
        return (float(score.mean()), float(feasible.mean()), float("nan"), float("nan")), designs
    spread = score.std() > 0 and np.std(learned) > 0
    corr = float(np.corrcoef(learned, score)[0, 1]) if spread else float("nan")
    return (float(score.mean()), float(feasible.mean()), float(np.mean(learned)), corr), designs


def run(
    method: Method,
    model: DiffusionModel,
    oracle: BudgetedOracle,
    rounds: list[int],
    *,
    floor: float,
    eval_samples: int,
    eval_seed: int,
    on_round: Callable[[RoundRecord], None] = lambda record: None,
) -> list[RoundRecord]:
    """Run `method` for its schedule of `rounds`; returns one record per round (and round 0)."""
    check_capabilities(method, model)
    data, records = Feedback(), []

    def record(r: int, start: float, diagnostics: dict[str, float]) -> None:
        scores, samples = evaluate(model, method, oracle.oracle, floor, eval_samples, eval_seed)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        records.append(RoundRecord(r, oracle.used, *scores, time.perf_counter() - start, peak, diagnostics, samples))
        on_round(records[-1])

    record(0, time.perf_counter(), {})
    for r, n in enumerate(method.schedule(rounds), start=1):
        start = time.perf_counter()
        proposal = method.propose(model, n, r)
        answer = oracle(proposal.designs, round=r)
        data.add(answer.designs, answer.reward, answer.feasible, r)
        diagnostics = method.update(model, data, r)
        record(r, start, diagnostics)
    return records
