"""The table behind the protein model's sampler settings: reverse steps and
min-p against feasibility, value and sampling time, beside the Markov process
the model learnt from.

    python -m benchmarks.experiments.sampler_table [--task ehrlich-l32-c2-k4] [--samples 1000]

Same weights in every row (the shipped checkpoint); only the sampler changes. The rows
read what only the protein tasks have, through their `Task`: the Ehrlich oracle's own Markov
process (`sample_markov`) and scores of token tensors (`evaluate_tokens`), and the masked
model's sampler settings (`cfg`).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from typing import Any

import numpy as np
import torch

from domains.tasks import get_task, list_tasks

DOMAIN = "protein"
"""The tasks this table takes: the Ehrlich tasks (`seiko-bench list`)."""


def row(name: str, tokens: torch.Tensor, oracle: Any, seconds: float | None) -> str:
    """One sampler's line: feasible fraction, value (infeasible as 0), value of the feasible, 99th
    percentile. `oracle` is an Ehrlich task's: it scores token tensors as well as designs."""
    values, feasible = oracle.evaluate_tokens(tokens)
    score = torch.where(feasible, values, torch.zeros_like(values))
    timing = "" if seconds is None else f"{seconds:.1f}"
    return (f"| {name} | {feasible.float().mean():.3f} | {score.mean():.4f} | {values[feasible].mean():.4f} | "
            f"{np.quantile(score.numpy(), 0.99):.3f} | {timing} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    protein_tasks = sorted(name for name, domain in list_tasks().items() if domain == DOMAIN)
    parser.add_argument("--task", default="ehrlich-l32-c2-k4", choices=protein_tasks)
    parser.add_argument("--samples", type=int, default=1000)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    task = get_task(args.task)
    model, oracle = task.load_model(), task.oracle
    shipped = model.cfg
    print(f"{args.task}: {args.samples} samples per row, infeasible counted as 0; shipped sampler "
          f"num_steps={shipped.num_steps}, min_p={shipped.min_p}\n")
    print("| sampler | feasible | value | value of feasible | 99th percentile | seconds |")
    print("| :-- | --: | --: | --: | --: | --: |")
    print(row("Markov process (the data)", oracle.sample_markov(args.samples, torch.Generator().manual_seed(0)),
              oracle, None))
    for steps in (16, 32, 64):
        for min_p in (0.0, 0.1):
            model.cfg = dataclasses.replace(shipped, num_steps=steps, min_p=min_p)
            start = time.perf_counter()
            x = torch.cat([model.sample(min(250, args.samples - i), generator=torch.Generator().manual_seed(i)).x
                           for i in range(0, args.samples, 250)])
            print(row(f"{steps} steps, min-p {min_p}", x, oracle, time.perf_counter() - start), flush=True)


if __name__ == "__main__":
    main()
