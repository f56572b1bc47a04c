"""How consistent the fine-tuning gradient is: Greedy's learned reward, fitted on the
pretrained model's samples, differentiated through independent batches of the
pretrained model (the gradient SEIKO's and Greedy's first Adam step follows).

    python -m benchmarks.experiments.gradient_snr gcn4-occupancy --fit 64 --batch 16

Prints the signal-to-noise ratio per batch (|mean g|^2 over the mean |g - mean g|^2)
and the mean cosine between two batches' gradients: near 1, every batch pushes the
same way; near 0, a step follows the batch's noise.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from algorithms.optimism import OptimismConfig, objective
from algorithms.reward_models import RewardEnsemble, RewardModelConfig
from domains.tasks import get_task


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("task")
    parser.add_argument("--fit", type=int, default=64, help="pretrained samples the reward model is fitted on")
    parser.add_argument("--batch", type=int, default=16, help="samples per gradient, as a fine-tuning step")
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--seed", type=int, default=100)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    task = get_task(args.task)
    model, generator = task.load_model(), torch.Generator().manual_seed(args.seed)
    designs = model.sample(args.fit, generator=generator).designs
    answers = task.oracle(designs)
    reward_model = RewardEnsemble.for_featuriser(task.featuriser, RewardModelConfig(ensemble_size=1, bootstrap=False))
    reward_model.fit(task.featuriser(designs), answers.reward, answers.feasible, task.oracle.floor, generator)
    reward = objective(reward_model, "none", OptimismConfig(), generator)
    params = model.trainable_parameters()
    grads, values = [], []
    for k in range(args.batches):
        sample = model.sample_with_grad(args.batch, generator=torch.Generator().manual_seed(args.seed + 1 + k),
                                        last_k=model.num_steps)
        value = reward(task.featuriser.relaxed(sample.x)).mean()
        grads.append(torch.cat([g.flatten() for g in torch.autograd.grad(value, params)]))
        values.append(value.item())
    g = torch.stack(grads)
    mean = g.mean(0)
    snr = mean.pow(2).sum() / (g - mean).pow(2).sum(1).mean()
    pairs = torch.nn.functional.cosine_similarity(g[:, None], g[None], -1).triu(1)
    cosine = pairs.sum() / (len(g) * (len(g) - 1) / 2)
    print(f"{args.task}: reward model fitted on {args.fit}, batches of {args.batch}: SNR per batch {snr:.3f}, "
          f"mean cosine between batches {cosine:.3f}, learned reward {np.mean(values):.3f} +- {np.std(values):.3f}")


if __name__ == "__main__":
    main()
