"""Timings of the hot operations with pytest-benchmark.

In the default test run these execute once, untimed (`--benchmark-disable`),
so they also check that the operations run; time them with
`pytest benchmarks/test_hot_ops.py --benchmark-enable`. Compare ratios taken in
one run; absolute times on shared machines are noise.
"""

from __future__ import annotations

import pytest
import torch

from algorithms.budgeted_oracle import BudgetedOracle
from algorithms.reward_models import OptimismConfig, RewardEnsemble, RewardModelConfig, objective
from domains.tasks import get_task


@pytest.fixture(scope="module")
def task():
    return get_task("ehrlich-l32-c2-k4")


@pytest.fixture(scope="module")
def model(task):
    return task.load_model()


def test_sample_256(benchmark, model):
    benchmark(lambda: model.sample(256, generator=torch.Generator().manual_seed(0)))


def test_finetune_step_batch32(benchmark, task, model):
    reference = model.frozen_copy()
    featurise = task.featuriser.relaxed

    def step():
        s = model.sample_with_grad(32, generator=torch.Generator().manual_seed(0), last_k=4, reference=reference)
        (featurise(s.x).sum() - s.kl.sum()).backward()

    benchmark(step)


def test_reward_model_fit_2000(benchmark, task, model):
    designs = model.sample(500, generator=torch.Generator().manual_seed(0)).designs * 4
    x = task.featuriser(designs)
    y = torch.as_tensor(task.oracle(designs).reward).nan_to_num(0.0).float()
    benchmark(lambda: RewardEnsemble(x.shape[1], RewardModelConfig()).fit(x, y, torch.Generator().manual_seed(0)))


def test_ucb_objective_256(benchmark, task, model):
    designs = model.sample(256, generator=torch.Generator().manual_seed(0)).designs
    x = task.featuriser(designs)
    rm = RewardEnsemble(x.shape[1], RewardModelConfig(ensemble_size=1, bootstrap=False, steps=5))
    rm.fit(x, torch.rand(len(x), generator=torch.Generator().manual_seed(0)), torch.Generator().manual_seed(0))
    benchmark(lambda: objective(rm, "ucb", OptimismConfig(), torch.Generator())(x))


def test_budgeted_oracle_1024(benchmark, task, model):
    designs = model.sample(1024, generator=torch.Generator().manual_seed(0)).designs
    benchmark(lambda: BudgetedOracle(task.oracle, 1024, method="bench", seed=0)(designs, round=1))
