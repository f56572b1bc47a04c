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
) -> dict[str, float]:
    """`reward` maps `DifferentiableSample.x` to (N,) rewards. Returns the last
    step's mean reward and KL (diagnostics for the round record)."""
    params = model.trainable_parameters()
    opt = torch.optim.Adam(params, lr=lr)
    reference = anchor if kl_weight > 0 else None
    r = kl = torch.zeros(())
    for _ in range(steps):
        sample = model.sample_with_grad(batch_size, generator=generator, last_k=last_k, reference=reference)
        r = reward(sample.x)
        kl = sample.kl.sum(1)
        loss = -(r - kl_weight * kl).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
        opt.step()
    return {"finetune_reward": float(r.detach().mean()), "finetune_kl": float(kl.detach().mean())}
