"""The table behind the molecule tasks' reward-model features: how well the
value model ranks molecules it did not see, on each featuriser.

    python -m benchmarks.molecule_features [--seeds 3] [--train 100 400]

Molecules are MOSES's (the shipped reference sample), scored by each task's
oracle; per seed, a fresh draw of train + 300 held-out molecules, the value
model fitted with the default `RewardModelConfig` as the methods fit it, and
Spearman's rank correlation of its prediction with the score on the held-out
molecules (mean ± sd over seeds).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from scipy.stats import spearmanr

from algorithms.reward_models import RewardEnsemble, RewardModelConfig
from domains.molecules import tasks

HELD_OUT = 300


def held_out_spearman(task, smiles: list[str], n_train: int, seed: int) -> float:
    scores = np.array([task.oracle.assess(s)[0] for s in smiles])
    x = task.featuriser(smiles)
    model = RewardEnsemble.for_featuriser(task.featuriser, RewardModelConfig())
    model.fit(x[:n_train], scores[:n_train], np.ones(n_train, bool), task.oracle.floor,
              torch.Generator().manual_seed(seed))
    return float(spearmanr(model.predict_value(x[-HELD_OUT:]), scores[-HELD_OUT:])[0])


def spearman_cells(task, pool: list, train_sizes: list[int], seeds: int) -> list[str]:
    """'mean ± sd' over seeds of the held-out Spearman at each training size; each
    seed draws train + HELD_OUT designs from `pool` without replacement."""
    cells = []
    for n in train_sizes:
        rho = []
        for seed in range(seeds):
            rows = np.random.default_rng(seed).choice(len(pool), n + HELD_OUT, replace=False)
            rho.append(held_out_spearman(task, [pool[i] for i in rows], n, seed))
        cells.append(f"{np.mean(rho):.2f} ± {np.std(rho):.2f}")
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["osimertinib-mpo", "ranolazine-mpo", "perindopril-mpo"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--train", type=int, nargs="+", default=[100, 400])
    args = parser.parse_args()
    torch.set_num_threads(1)
    reference = tasks.reference_smiles()
    print("| task | features | " + " | ".join(f"{n} molecules" for n in args.train) + " |")
    print("|:--|:--|" + "--:|" * len(args.train))
    for name in args.tasks:
        for features in tasks.FEATURES:
            cells = spearman_cells(tasks.build(name, features=features), reference, args.train, args.seeds)
            print(f"| {name} | {features} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
