"""Fine-tuning by direct reward back-propagation through the sampler, with a KL anchor.

Maximises E[r(x)] - alpha * KL(p_theta || p_anchor) over trajectories, where r
is a differentiable (learned, possibly optimistic) reward and the KL is summed
over reverse steps along the sampled trajectory (SEIKO, Uehara et al. 2024,
Eq. 6; the trajectory-wise KL of Sec. 4.2). Gradients flow through the last K
steps only (DRaFT-K, Clark et al. 2024; AlignProp, Prabhudesai et al. 2023).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from algorithms.parallel import ONE_PROCESS, PieceGradients, Ranks
from domains.base import DiffusionModel


def finetune_direct(
    model: DiffusionModel,
    reward: Callable[[torch.Tensor], torch.Tensor],
    anchor: DiffusionModel | None,
    *,
    steps: int,
    batch_size: int,
    last_k: int,
    kl_weight: float,
    lr: float,
    generator: torch.Generator,
    grad_clip: float = 1.0,
    ranks: Ranks = ONE_PROCESS,
) -> dict[str, float]:
    """`reward` maps `DifferentiableSample.x` to (N,) rewards. Each step's batch
    is drawn and differentiated piece by piece (`Ranks.pieces`: this rank's
    pieces, one piece on one process unless `shards` says otherwise), each
    piece's gradient weighted by its share of the batch. Returns the last step's
    mean reward and KL (diagnostics for the round record)."""
    params = model.trainable_parameters()
    opt = torch.optim.Adam(params, lr=lr)
    reference = anchor if kl_weight > 0 else None
    r = kl = torch.zeros(())
    for _ in range(steps):
        opt.zero_grad()
        grads, rewards, kls = PieceGradients(params, ranks), [], []
        for rows, piece_generator in ranks.pieces(batch_size, generator):
            sample = model.sample_with_grad(len(rows), generator=piece_generator, last_k=last_k, reference=reference)
            r, kl = reward(sample.x), sample.kl.sum(1)
            loss = -(r - kl_weight * kl).mean() * (len(rows) / batch_size)
            loss.backward()
            grads.piece_done()
            rewards.append(r.detach())
            kls.append(kl.detach())
        grads.sum()
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
        opt.step()
    if steps:  # the last step's whole batch, every rank's pieces
        r, kl = torch.cat(ranks.gather(rewards, batch_size)), torch.cat(ranks.gather(kls, batch_size))
    return {"finetune_reward": float(r.mean()), "finetune_kl": float(kl.mean())}
