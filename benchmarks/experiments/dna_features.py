"""The table behind the DNA tasks' reward-model features: how well the value
model ranks yeast promoters it did not see, on the k-mer counts and on the
sequence domain's features.

    python -m benchmarks.experiments.dna_features [--seeds 3] [--train 64 192 448]

Designs are the shipped promoter windows, scored by each task's oracle; per
seed, a fresh draw of train + 300 held-out windows, the value model fitted
with the default `RewardModelConfig` as the methods fit it (the same
procedure as `molecule_features`: `ranking`), and Spearman's rank
correlation on the held-out windows (mean ± sd over seeds).
"""

from __future__ import annotations

import argparse
import dataclasses

import torch

from benchmarks.experiments.ranking import spearman_cells
from domains.base import Featuriser, Task

# The one name no `Task` gives: the shipped promoter windows as a pool of distinct sequences. A
# task's `pretraining_data` draws from them with replacement, and encoded, so a held-out window
# could be a training one; the domain's own reader is imported instead of changing the domain.
from domains.dna.tasks import promoters
from domains.sequences.user_task import sequence_task
from domains.tasks import get_task, list_tasks

DOMAIN = "dna"
"""The tasks tabled: every shipped task of this domain (`seiko-bench list`)."""


def sequence_features(task: Task) -> Featuriser:
    """The featuriser a sequence task gets when it picks none (`sequence_task`, the public way
    to build one: one-hots, bigram counts, gapped pairs), for the DNA task's checkpoint."""
    return sequence_task(task.name, task.oracle, task.info["checkpoint"]).featuriser


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--train", type=int, nargs="+", default=[64, 192, 448])
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    pool = promoters()
    print("| task | features | " + " | ".join(f"{n} sequences" for n in args.train) + " |")
    print("|:--|:--|" + "--:|" * len(args.train))
    for name in [n for n, domain in list_tasks().items() if domain == DOMAIN]:
        task = get_task(name)
        variants = {"k-mer counts": task,
                    "sequence features": dataclasses.replace(task, featuriser=sequence_features(task))}
        for label, variant in variants.items():
            cells = spearman_cells(variant, pool, args.train, args.seeds)
            print(f"| {name} | {label} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
