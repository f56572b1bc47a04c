"""How well a task's value model ranks designs it did not see: the figure both
feature tables (`molecule_features`, `dna_features`) report, computed one way
so that their numbers compare.

The value model is fitted with the default `RewardModelConfig`, as the methods
fit it, on a task's own featuriser; the figure is Spearman's rank correlation
of its prediction with the oracle's score on `HELD_OUT` designs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr

from algorithms.reward_models import RewardEnsemble, RewardModelConfig
from domains.base import Task

HELD_OUT = 300


def held_out_spearman(task: Task, designs: Sequence[Any], n_train: int, seed: int) -> float:
    """Fit on the first `n_train` designs, rank the last `HELD_OUT`. The designs
    must be feasible: an infeasible one's score is NaN, and so is the figure."""
    scores = task.oracle(designs).reward
    x = task.featuriser(designs)
    model = RewardEnsemble.for_featuriser(task.featuriser, RewardModelConfig())
    model.fit(x[:n_train], scores[:n_train], np.ones(n_train, bool), task.oracle.floor,
              torch.Generator().manual_seed(seed))
    return float(spearmanr(model.predict_value(x[-HELD_OUT:]), scores[-HELD_OUT:])[0])


def spearman_cells(task: Task, pool: Sequence[Any], train_sizes: Sequence[int], seeds: int) -> list[str]:
    """'mean ± sd' over seeds of the held-out Spearman at each training size; each
    seed draws train + HELD_OUT designs from `pool` without replacement, so that
    no held-out design was seen in training."""
    cells = []
    for n in train_sizes:
        rho = []
        for seed in range(seeds):
            rows = np.random.default_rng(seed).choice(len(pool), n + HELD_OUT, replace=False)
            rho.append(held_out_spearman(task, [pool[i] for i in rows], n, seed))
        cells.append(f"{np.mean(rho):.2f} ± {np.std(rho):.2f}")
    return cells
