"""The pretraining loop of the small models this project ships: any model with a
denoising loss (the masked sequence and graph models) fitted to batches from any source."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
from tqdm.auto import trange

from domains.base import State

M = TypeVar("M", bound=torch.nn.Module)


def fit_denoiser(
    model: M,
    next_batch: Callable[[int, torch.Generator], State],
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    desc: str = "pretrain",
) -> tuple[M, float]:
    """Fit `model` to its denoising loss (for the masked models, MDLM's NELBO) for
    `steps` steps and return it (in eval mode) with the last step's loss.

    `next_batch(batch_size, generator)` gives a batch of clean states; it
    draws from a generator seeded with `seed`, and the forward process's noise
    from one seeded with `seed + 1` (so a sampler seeded with `seed + 2` is free
    for reports). AdamW (weight decay 0.01), a one-cycle schedule peaking at `lr`
    after 5% of the steps, gradients clipped to norm 1.0; a tqdm bar shows the NELBO.
    """
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be at least 1, got steps={steps}, batch_size={batch_size}")
    if not lr > 0:
        raise ValueError(f"the learning rate must be positive, got {lr}")
    data_gen, noise_gen = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    # torch's OneCycleLR divides by zero when the warm-up ends exactly at step 0
    # (0.05 * steps == 1, i.e. 20 steps); warm up over two steps there instead.
    pct_start = 0.05 if 0.05 * steps != 1 else 2 / steps
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=pct_start)
    model.train()
    bar = trange(steps, desc=desc, unit="step")
    for _ in bar:
        loss = model.denoising_loss(next_batch(batch_size, data_gen), generator=noise_gen)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        bar.set_postfix(nelbo=f"{loss.item():.3f}")
    model.eval()
    return model, loss.item()
