"""Timings of the hot operations with pytest-benchmark, against a stored baseline.

In the default test run each operation executes once, untimed
(`--benchmark-disable`), and its result is checked. Timed with
`pytest benchmarks/test_hot_ops.py --benchmark-enable`, each operation's best
time is divided by that of a fixed reference workload (dense matrix products)
measured in the same run, on the same machine and load: absolute times on
shared machines are noise, ratios taken side by side are not. A ratio more than
`TOLERANCE` times its stored baseline (`hot_ops_baseline.json`) fails the test;
`SEIKO_UPDATE_BASELINE=1` rewrites the baseline from the run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from algorithms.budgeted_oracle import BudgetedOracle
from algorithms.optimism import OptimismConfig, objective
from algorithms.reward_models import RewardEnsemble, RewardModelConfig
from benchmarks.experiments.yardstick import reference_seconds
from domains.tasks import get_task

BASELINE = Path(__file__).with_name("hot_ops_baseline.json")
TOLERANCE = 2.0
"""A hot operation may be at most this many times slower, relative to the reference, than its baseline."""


@pytest.fixture(scope="module")
def yardstick(request):
    """The reference time, and the baseline check every timed benchmark ends with."""
    reference = reference_seconds()
    baseline = json.loads(BASELINE.read_text()) if BASELINE.exists() else {}
    measured: dict[str, float] = {}

    def check(benchmark, name: str) -> None:
        if benchmark.disabled:
            return
        ratio = benchmark.stats.stats.min / reference
        measured[name] = round(ratio, 3)
        benchmark.extra_info["ratio_to_reference"] = ratio
        if os.environ.get("SEIKO_UPDATE_BASELINE") != "1" and name in baseline:
            assert ratio <= TOLERANCE * baseline[name], (
                f"{name}: {ratio:.2f}x the reference, against a baseline of {baseline[name]:.2f}x "
                f"(tolerance {TOLERANCE}x)")

    yield check
    if os.environ.get("SEIKO_UPDATE_BASELINE") == "1" and measured:
        BASELINE.write_text(json.dumps({**baseline, **measured}, indent=2, sort_keys=True) + "\n")


@pytest.fixture(scope="module")
def task():
    return get_task("ehrlich-l32-c2-k4")


@pytest.fixture(scope="module")
def model(task):
    return task.load_model()


def test_sample_256(benchmark, model, yardstick):
    out = benchmark(lambda: model.sample(256, generator=torch.Generator().manual_seed(0)))
    assert len(out.designs) == 256 and all(len(d) == 32 for d in out.designs)
    yardstick(benchmark, "sample_256")


def test_finetune_step_batch32(benchmark, task, model, yardstick):
    reference = model.frozen_copy()
    featurise = task.featuriser.relaxed
    params = model.trainable_parameters()

    def step():
        for p in params:
            p.grad = None
        s = model.sample_with_grad(32, generator=torch.Generator().manual_seed(0), last_k=model.num_steps,
                                   reference=reference)
        (featurise(s.x).sum() - s.kl.sum()).backward()
        return sum(float(p.grad.abs().sum()) for p in params if p.grad is not None)

    assert benchmark(step) > 0  # the step reaches the parameters
    yardstick(benchmark, "finetune_step_batch32")


def test_reward_model_fit_2000(benchmark, task, model, yardstick):
    designs = model.sample(500, generator=torch.Generator().manual_seed(0)).designs * 4
    x = task.featuriser(designs)
    answer = task.oracle(designs)
    y = answer.reward[answer.feasible]
    stats = benchmark(lambda: RewardEnsemble(x.shape[1], RewardModelConfig(), task.featuriser.suggested_screen).fit(
        x, answer.reward, answer.feasible, 0.0, torch.Generator().manual_seed(0)))
    assert stats["reward_model_mse"] < float(y.var())  # the value fits better than the mean
    assert stats["feasibility_accuracy"] > float(max(answer.feasible.mean(), 1 - answer.feasible.mean()))
    yardstick(benchmark, "reward_model_fit_2000")


def test_ucb_objective_256(benchmark, task, model, yardstick):
    designs = model.sample(256, generator=torch.Generator().manual_seed(0)).designs
    x = task.featuriser(designs)
    rm = RewardEnsemble(x.shape[1], RewardModelConfig(ensemble_size=1, bootstrap=False, steps=5),
                        task.featuriser.suggested_screen)
    rm.fit(x, torch.rand(len(x), generator=torch.Generator().manual_seed(0)).numpy(), np.ones(len(x), bool), 0.0,
           torch.Generator().manual_seed(0))
    optimistic = benchmark(lambda: objective(rm, "ucb", OptimismConfig(), torch.Generator())(x))
    plain = rm.expected(rm.members(x).mean(0), x)
    assert optimistic.shape == (256,) and bool((optimistic > plain).all())  # a positive bonus
    yardstick(benchmark, "ucb_objective_256")


def test_budgeted_oracle_1024(benchmark, task, model, yardstick):
    designs = model.sample(1024, generator=torch.Generator().manual_seed(0)).designs
    answer = benchmark(lambda: BudgetedOracle(task.oracle, 1024, method="bench", seed=0)(designs, round=1))
    assert len(answer.reward) == 1024 and answer.charged == len(set(designs))
    yardstick(benchmark, "budgeted_oracle_1024")
