"""The table behind the molecule tasks' reward-model features: how well the
value model ranks molecules it did not see, on each featuriser.

    python -m benchmarks.experiments.molecule_features [--seeds 3] [--train 100 400]

Molecules are MOSES's (the shipped reference sample), scored by each task's
oracle; per seed, a fresh draw of train + 300 held-out molecules, the value
model fitted with the default `RewardModelConfig` as the methods fit it, and
Spearman's rank correlation of its prediction with the score on the held-out
molecules (mean ± sd over seeds; `ranking`).
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.experiments.ranking import spearman_cells

# The one name no `Task` gives: the shipped MOSES sample as a pool of distinct SMILES. A task's
# `pretraining_data` draws from it with replacement, and as graphs, so a held-out molecule could
# be a training one; the domain's own reader is imported instead of changing the domain.
from domains.molecules.tasks import FEATURES, reference_smiles
from domains.tasks import get_task


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["osimertinib-mpo", "ranolazine-mpo", "perindopril-mpo"])
    parser.add_argument("--features", nargs="+", default=list(FEATURES),
                        help="values of the tasks' `features` parameter (default: %(default)s)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--train", type=int, nargs="+", default=[100, 400])
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    reference = reference_smiles()
    print("| task | features | " + " | ".join(f"{n} molecules" for n in args.train) + " |")
    print("|:--|:--|" + "--:|" * len(args.train))
    for name in args.tasks:
        for features in args.features:
            cells = spearman_cells(get_task(name, features=features), reference, args.train, args.seeds)
            print(f"| {name} | {features} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
