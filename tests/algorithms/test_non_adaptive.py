"""Non-adaptive fine-tunes as long in its one round as the round-based methods do in all of theirs."""

from __future__ import annotations

import numpy as np
import torch

from algorithms.budgeted_oracle import BudgetedOracle
from algorithms.loop import run
from algorithms.method import Context
from algorithms.registry import build_method
from domains.base import OracleOutput
from domains.sequences.featuriser import SequenceFeaturiser
from domains.sequences.mdlm import MaskedDiffusionModel, MDLMConfig

CFG = MDLMConfig(alphabet="ACDE", length=6, num_steps=6, d_model=16, n_layers=1, n_heads=2)
FAST = {"finetune_steps": 2, "batch_size": 4, "reward_model": {"steps": 5, "hidden": 8}}


class CountA:
    """Reward = number of 'A's, every design feasible."""

    name = "count-a"
    floor = 0.0
    optimum = float(CFG.length)

    def __call__(self, designs):
        return OracleOutput(np.array([float(d.count("A")) for d in designs]), np.ones(len(designs), bool))

    def key(self, design):
        return design


def fine_tuning_steps(name: str, rounds: list[int]) -> int:
    """Calls of `sample_with_grad` (one per fine-tuning step) in a run of `name` over `rounds`."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = MaskedDiffusionModel(CFG)
    calls = []
    sample_with_grad = model.sample_with_grad

    def counted(*args, **kwargs):
        calls.append(kwargs)
        return sample_with_grad(*args, **kwargs)

    model.sample_with_grad = counted
    method = build_method(name, Context(SequenceFeaturiser(CFG.alphabet, CFG.length), 0.0, seed=0), FAST)
    run(method, model, BudgetedOracle(CountA(), sum(rounds), method=name, seed=0), rounds, floor=0.0)
    return len(calls)


def test_non_adaptive_fine_tunes_as_many_steps_as_the_schedules_rounds_in_all():
    rounds = [8, 8, 8, 8]
    steps = fine_tuning_steps("non-adaptive", rounds)
    assert steps == FAST["finetune_steps"] * len(rounds)
    assert steps == fine_tuning_steps("greedy", rounds)  # SEIKO's machinery, one round at a time


def test_asking_for_the_schedule_again_does_not_scale_the_steps_again():
    method = build_method("non-adaptive", Context(SequenceFeaturiser(CFG.alphabet, CFG.length), 0.0, seed=0),
                          FAST)
    for _ in range(3):
        assert method.schedule([4, 4, 4, 4]) == [16]
    assert method.cfg.finetune_steps == 4 * FAST["finetune_steps"]
