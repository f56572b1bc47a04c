"""How consistent the fine-tuning gradient is: Greedy's learned reward, fitted on the
pretrained model's samples, differentiated through independent batches of the
pretrained model (the gradient SEIKO's and Greedy's first Adam step follows).

    python -m benchmarks.experiments.gradient_snr gcn4-occupancy --fit 64 --batch 16

Prints the signal-to-noise ratio per batch (|mean g|^2 over the mean |g - mean g|^2)
and the mean cosine between two batches' gradients: near 1, every batch pushes the
same way; near 0, a step follows the batch's noise. The straight-through gradient
is biased, so it also prints its cosine with an unbiased estimate of the same
gradient, the score-function one (REINFORCE with the mean as baseline) over
`--score-samples` samples, and that estimate's own cosine between its two halves
(how far its noise lets the comparison see). With `--trace N` it then follows the
gradient for N Adam steps (no KL, as direct back-propagation) and prints, every 5,
the learned reward and the oracle's value of 256 fresh samples: whether the path
raises what the first step points at.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from algorithms.methods.seiko import ONE_MODEL
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
    parser.add_argument("--score-samples", type=int, default=1024)
    parser.add_argument("--trace", type=int, default=0, help="Adam steps to follow the gradient for")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--unseen-hazard", type=float, default=0.0,
                        help="the reward model's pessimism about hazards no feasible design has shown")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    task = get_task(args.task)
    model, generator = task.load_model(), torch.Generator().manual_seed(args.seed)
    designs = model.sample(args.fit, generator=generator).designs
    answers = task.oracle(designs)
    config = RewardModelConfig(**ONE_MODEL, unseen_hazard=args.unseen_hazard)  # Greedy's: one member on all data
    reward_model = RewardEnsemble.for_featuriser(task.featuriser, config)
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
    halves = [score_function_gradient(task, model, reward, params, args.score_samples // 2, args.seed + 1000 + h)
              for h in range(2)]
    unbiased = (halves[0] + halves[1]) / 2
    cos = torch.nn.functional.cosine_similarity
    print(f"{args.task}: reward model fitted on {args.fit}, batches of {args.batch}: SNR per batch {snr:.3f}, "
          f"mean cosine between batches {cosine:.3f}, learned reward {np.mean(values):.3f} +- {np.std(values):.3f}; "
          f"cosine with the score-function gradient of {args.score_samples} samples {cos(mean, unbiased, 0):.3f} "
          f"(its halves with each other {cos(halves[0], halves[1], 0):.3f})")
    if args.trace:
        trace(task, model, reward, params, args)


def trace(task, model, reward, params, args: argparse.Namespace) -> None:
    """Follow the straight-through gradient with Adam; every 5 steps, 256 fresh samples' learned reward and value."""
    opt = torch.optim.Adam(params, lr=args.lr)
    generator = torch.Generator().manual_seed(args.seed + 2000)
    for step in range(args.trace + 1):
        if step % 5 == 0:
            with torch.no_grad():
                designs = model.sample(256, generator=torch.Generator().manual_seed(args.seed + 3000)).designs
                learned = reward(task.featuriser(designs)).mean().item()
            answers = task.oracle(designs)
            value = np.where(answers.feasible, answers.reward, task.oracle.floor).mean()
            print(f"  step {step}: learned reward {learned:.3f}, value {value:.3f}, feasible {answers.feasible.mean():.2f}",
                  flush=True)
        if step == args.trace:
            break
        sample = model.sample_with_grad(args.batch, generator=generator, last_k=model.num_steps)
        opt.zero_grad()
        (-reward(task.featuriser.relaxed(sample.x)).mean()).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()


def score_function_gradient(task, model, reward, params, n: int, seed: int) -> torch.Tensor:
    """E[(r(x) - mean r) grad log p(trajectory)] over n hard samples: unbiased, noisy."""
    out = model.sample(n, generator=torch.Generator().manual_seed(seed), keep_trajectory=True)
    with torch.no_grad():
        r = reward(task.featuriser(out.designs))
    log_p = model.log_prob(out.trajectory).sum(1)
    grads = torch.autograd.grad(((r - r.mean()) * log_p).mean(), params)
    return torch.cat([g.flatten() for g in grads])


if __name__ == "__main__":
    main()
