"""The table behind the molecule model's sampler settings: reverse steps and the
valence mask against validity (ours, and DiGress's and GDSS's, which keep a
disconnected sample's largest fragment), uniqueness, novelty, QED, SA, FCD and
sampling time.

    python -m benchmarks.experiments.molecule_sampler [--samples 1000] [--steps 32 64]

Same weights in every row (the shipped checkpoint); only the sampler changes.
Novelty is against the shipped training sample, FCD against the same sample
(the shipped checkpoint keeps no held-out MOSES molecules).
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from domains.molecules.pretraining import sample_smiles
from domains.molecules.quality import quality
from domains.molecules.tasks import load_model, reference_smiles


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--steps", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model, reference = load_model(), reference_smiles()
    shipped = model.cfg
    print(f"{args.samples} samples per row (seed {args.seed}); shipped sampler num_steps={shipped.num_steps}, "
          f"valence_mask={shipped.valence_mask}\n")
    print("| steps | valence mask | valid (one molecule) | valid (largest fragment) | unique | novel | QED | SA "
          "| FCD | seconds |")
    print("|--:|:--|--:|--:|--:|--:|--:|--:|--:|--:|")
    for steps in args.steps:
        for mask in (False, True):
            model.cfg = dataclasses.replace(shipped, num_steps=steps, valence_mask=mask)
            start = time.perf_counter()
            designs = sample_smiles(model, args.samples, torch.Generator().manual_seed(args.seed))
            seconds = time.perf_counter() - start
            r = quality(designs, reference)
            print(f"| {steps} | {'on' if mask else 'off'} | {r['validity']:.3f} | {r['validity_largest_fragment']:.3f} "
                  f"| {r['uniqueness']:.3f} | {r['novelty']:.3f} | {r.get('qed_mean', float('nan')):.3f} "
                  f"| {r.get('sa_mean', float('nan')):.2f} | {r.get('fcd', float('nan')):.1f} | {seconds:.0f} |",
                  flush=True)


if __name__ == "__main__":
    main()
