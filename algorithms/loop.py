"""The one online loop every method runs in.

    for round r in 1..R:
        method.begin_round(model, r)             # e.g. SEIKO's KL anchor: the model before this round
        x      = method.propose(model, n_r)      # designs to measure this round
        y, ok  = budgeted_oracle(x)              # the only place feedback is spent
        data  += (x, y, ok)
        method.update(model, data)               # train reward model and/or fine-tune
        evaluate(model)                          # held-out samples, not charged

A repeated design is answered from the oracle's cache for free, so a proposal
with repeats (a collapsed model, a search re-proposing what it measured) buys
fewer than n_r measurements. The loop then asks the method for the remainder
again, in the same round, at most `TOP_UPS` times: every method gets the chance
to spend its whole budget, and one that can only repeat itself ends the round
short, which its record's `queries_used` shows.

Evaluation draws held-out designs from the current model with the same
generator seed every round (common random numbers across rounds and methods)
and scores them with the evaluation oracle: by default the task's own, which is
free on synthetic tasks; a separate one (a cheap proxy of a lab's assay); or
none. It charges nothing and logs nothing in the query log, which holds only
what a method paid for, but every evaluation call is counted in the round's
record, so that a lab sees what a run cost its oracle in all.
"""

from __future__ import annotations

import contextlib
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr

from algorithms.budgeted_oracle import BudgetedOracle, ask_oracle
from algorithms.method import Feedback, Method, check_capabilities
from algorithms.parallel import ONE_PROCESS, Ranks
from domains.base import DiffusionModel, Oracle


@dataclass
class RoundRecord:
    """One row of a cell's evals.csv: the model after `round`'s update."""

    round: int  # 0 = the pretrained model, before any query
    queries_used: int
    value: float  # mean oracle reward of held-out samples, infeasible = floor (SEIKO's "Value")
    feasible_fraction: float
    learned_reward: float  # the method's own reward model on the same samples (NaN if none)
    learned_corr: float  # Pearson correlation of the learned and the oracle's reward there (NaN if none)
    value_spearman: float  # rank correlation of the learned value and the oracle's reward on the feasible ones
    eval_oracle_calls: int  # calls of the evaluation oracle this round (uncharged; 0 when evaluation is off)
    wall_s: float
    peak_rss_mb: float
    diagnostics: dict[str, float] = field(default_factory=dict)
    samples: list[Any] = field(default_factory=list, repr=False)  # the held-out designs scored (not in the row)
    sample_rewards: np.ndarray | None = field(default=None, repr=False)  # their oracle rewards (NaN: none)
    sample_feasible: np.ndarray | None = field(default=None, repr=False)  # and feasibility, to label pictures

    def row(self) -> dict[str, float]:
        out = {k: v for k, v in vars(self).items() if k not in ("diagnostics", "samples", "sample_rewards", "sample_feasible")}
        return {**out, **self.diagnostics}


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation (ties at their mean rank); NaN, without scipy's warning, when either side is constant."""
    return float(spearmanr(a, b).statistic) if np.ptp(a) > 0 and np.ptp(b) > 0 else float("nan")


@dataclass
class Evaluation:
    """The scores of one round's held-out samples, and the samples with their oracle answers."""

    value: float
    feasible_fraction: float
    learned_reward: float = float("nan")
    learned_corr: float = float("nan")
    value_spearman: float = float("nan")
    samples: list[Any] = field(default_factory=list)
    rewards: np.ndarray | None = None
    feasible: np.ndarray | None = None


NO_EVALUATION = Evaluation(float("nan"), float("nan"))
"""The record of a round when held-out evaluation is off."""


def evaluate(model: DiffusionModel, method: Method, oracle: Oracle, floor: float, n: int, seed: int,
             ranks: Ranks = ONE_PROCESS) -> Evaluation:
    """Value, feasible fraction, mean learned reward, learned-vs-oracle correlation and
    the learned value's rank correlation with the oracle on the feasible samples, of n
    held-out samples, with the samples and their answers: the gap between the two rewards is
    over-optimisation, the rank correlation says whether the reward model orders
    feasible designs as the oracle does (SEIKO's premise)."""
    designs = method.draw(model, n, torch.Generator().manual_seed(seed)).designs
    reward, feasible, _ = ranks.broadcast(lambda: ask_oracle(oracle, designs))
    score = np.where(feasible, reward, floor)
    answers = {"samples": designs, "rewards": reward, "feasible": feasible}
    learned = method.predict(designs)
    if learned is None:
        return Evaluation(float(score.mean()), float(feasible.mean()), **answers)
    spread = score.std() > 0 and np.std(learned) > 0
    corr = float(np.corrcoef(learned, score)[0, 1]) if spread else float("nan")
    value = method.predict_value([d for d, ok in zip(designs, feasible) if ok]) if feasible.sum() > 1 else None
    rank_corr = float("nan") if value is None else spearman(value, reward[feasible])
    return Evaluation(float(score.mean()), float(feasible.mean()), float(np.mean(learned)), corr, rank_corr,
                      **answers)


def peak_rss_mb() -> float:
    """This process's peak resident set so far, in MB: the kernel's high-water mark
    (VmHWM), which `reset_peak_rss` restarts for a new cell in a reused pool worker;
    where /proc is missing, the lifetime peak of getrusage."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return int(status.split("VmHWM:")[1].split()[0]) / 1024


def reset_peak_rss() -> None:
    """Restart the high-water mark (Linux: 5 > /proc/self/clear_refs), so that the
    peaks a cell records are its own, not those of the cells its worker ran before."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


TOP_UPS = 4
"""Proposals of a round's remainder after its first, before the round ends short."""


@dataclass
class Progress:
    """The loop's own state after a finished round: with the method, the model and
    the budgeted oracle as they stand then, all that a run needs to go on from
    the next round (`run(..., resume=...)`) as if it had never stopped."""

    round: int
    data: Feedback
    records: list[RoundRecord]


def measure_round(method: Method, model: DiffusionModel, oracle: BudgetedOracle, data: Feedback, n: int,
                  round: int, top_ups: int, ranks: Ranks = ONE_PROCESS) -> None:
    """Measure `method`'s proposals into `data` until `round` has charged n queries
    or `top_ups` proposals of the remainder followed the first. Rank 0 asks the
    oracle; every rank gets its answer."""
    charged = 0
    method.begin_round(model, round)
    for _ in range(1 + top_ups):
        proposal = method.propose(model, n - charged, round)
        answer = ranks.broadcast(lambda designs=proposal.designs: oracle(designs, round=round))
        data.add(answer.designs, answer.reward, answer.feasible, round)
        charged += answer.charged
        if charged >= n:
            break


def run(
    method: Method,
    model: DiffusionModel,
    oracle: BudgetedOracle,
    rounds: list[int],
    *,
    floor: float,
    eval_samples: int = 0,
    eval_seed: int = 0,
    eval_oracle: Oracle | None = None,
    on_round: Callable[[RoundRecord], None] = lambda record: None,
    top_ups: int = TOP_UPS,
    resume: Progress | None = None,
    on_progress: Callable[[Progress], None] = lambda progress: None,
    ranks: Ranks = ONE_PROCESS,
) -> list[RoundRecord]:
    """Run `method` for its schedule of `rounds`; returns one record per round (and round 0).

    After every round, `eval_samples` held-out designs are scored by `eval_oracle`
    (None: the budgeted oracle's own, uncharged); `eval_samples=0` is the one switch
    that turns evaluation off, and the record's value is then NaN. A round whose proposals charged fewer than its
    queries (repeats are free) is topped up by at most `top_ups` more proposals.

    `on_progress` gets the loop's state after every round (a checkpoint's part);
    `resume` goes on after the round such a state was taken at, with the method,
    model and oracle restored by the caller to what they were then.

    On several processes (`ranks`, the method's own), every rank runs this loop
    alike; only rank 0's oracle is asked, and only its records count its queries."""
    check_capabilities(method, model)
    schedule = method.schedule(rounds)
    method.check(model, schedule)  # settings the model or schedule cannot meet, before any query
    evaluator = None if eval_samples == 0 else oracle.oracle if eval_oracle is None else eval_oracle
    calls_per_design = int(getattr(evaluator, "calls_per_design", 1))
    data, records = (Feedback(), []) if resume is None else (resume.data, resume.records)

    def record(r: int, start: float, diagnostics: dict[str, float]) -> None:
        if evaluator is None:
            answers, calls = NO_EVALUATION, 0
        else:
            answers = evaluate(model, method, evaluator, floor, eval_samples, eval_seed, ranks)
            calls = eval_samples * calls_per_design
        records.append(RoundRecord(
            round=r, queries_used=oracle.used, value=answers.value, feasible_fraction=answers.feasible_fraction,
            learned_reward=answers.learned_reward, learned_corr=answers.learned_corr,
            value_spearman=answers.value_spearman, eval_oracle_calls=calls, wall_s=time.perf_counter() - start,
            peak_rss_mb=peak_rss_mb(), diagnostics=diagnostics,
            samples=answers.samples, sample_rewards=answers.rewards, sample_feasible=answers.feasible))
        on_round(records[-1])

    if resume is None:
        record(0, time.perf_counter(), {})
        on_progress(Progress(0, data, records))
    for r, n in enumerate(schedule, start=1):
        if resume is not None and r <= resume.round:
            continue
        start = time.perf_counter()
        measure_round(method, model, oracle, data, n, r, top_ups, ranks)
        diagnostics = method.update(model, data, r)
        record(r, start, diagnostics)
        on_progress(Progress(r, data, records))
    return records
