"""The table behind the DNA tasks' reward-model features: how well the value
model ranks yeast promoters it did not see, on the k-mer counts and on the
sequence domain's features.

    python -m benchmarks.dna_features [--seeds 3] [--train 64 192 448]

Designs are the shipped promoter windows, scored by each task's oracle; per
seed, a fresh draw of train + 300 held-out windows, the value model fitted
with the default `RewardModelConfig` as the methods fit it (the same
procedure as `benchmarks.molecule_features`), and Spearman's rank
correlation on the held-out windows (mean ± sd over seeds).
"""

from __future__ import annotations

import argparse
import dataclasses

import torch

from benchmarks.molecule_features import spearman_cells
from domains.dna import tasks
from domains.sequences.featuriser import SequenceFeaturiser


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--train", type=int, nargs="+", default=[64, 192, 448])
    args = parser.parse_args()
    torch.set_num_threads(1)
    promoters = tasks.promoters()
    print("| task | features | " + " | ".join(f"{n} sequences" for n in args.train) + " |")
    print("|:--|:--|" + "--:|" * len(args.train))
    for name in tasks.TASKS:
        task = tasks.build(name)
        variants = {"k-mer counts": task,
                    "sequence features": dataclasses.replace(task, featuriser=SequenceFeaturiser("ACGT", tasks.LENGTH))}
        for label, variant in variants.items():
            cells = spearman_cells(variant, promoters, args.train, args.seeds)
            print(f"| {name} | {label} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
