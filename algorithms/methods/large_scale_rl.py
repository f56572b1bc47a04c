"""Large-scale RL for diffusion models (Zhang et al. 2024).

Zhang, Tzeng, Du and Kislyuk, "Large-scale Reinforcement Learning for Diffusion
Models" (arXiv 2401.12244). The policy gradient of DDPO (`algorithms.methods.ddpo`,
the same clipped importance-sampled update, with its defaults for a per-step
log-prob summed over positions: PPO's clip 0.2 and 4 inner epochs) with the
changes that let it scale:
- rewards are normalised over the whole batch (on every process of a
  data-parallel cell, which all hold the whole round) instead of per prompt: with millions of prompts a per-prompt tracker rarely
  sees a prompt twice;
- optionally, the pretraining denoising loss on fresh pretraining data is
  added to every step (weight `pretrain_weight`), which keeps the model near
  the data distribution where a KL penalty would need a reference model;
- multi-reward training: their objective is a weighted sum of rewards. Here
  that is a task whose oracle is a `domains.composite.WeightedSum` (e.g.
  `ehrlich-l32-c2-k4-sum`), so every method can be compared on it; each
  component oracle's call is logged in the query log.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from algorithms.method import Context, Variant
from algorithms.methods.ddpo import PolicyGradient, PolicyGradientConfig
from domains.base import CapabilityError, DiffusionModel


@dataclass
class LargeScaleRLConfig(PolicyGradientConfig):
    """The shared policy-gradient update plus the pretraining-loss regulariser."""

    pretrain_weight: float = 1.0
    """Weight of the pretraining denoising loss added to each step (0 turns it off)."""
    pretrain_batch: int = 32
    """Fresh pretraining samples per step for the regulariser."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.pretrain_weight < 0 or self.pretrain_batch < 1:
            raise ValueError(f"pretrain_weight must be >= 0 and pretrain_batch >= 1, "
                             f"got {self.pretrain_weight}, {self.pretrain_batch}")


def batch_normalise(reward: np.ndarray) -> np.ndarray:
    """(r - mean) / (std + 1e-6) with the statistics of the whole round: every
    process of a data-parallel cell holds all of the round's rewards
    (`algorithms.parallel`), so none needs another's."""
    everyone = torch.as_tensor(reward, dtype=torch.float64)
    return (reward - float(everyone.mean())) / (float(everyone.std(unbiased=False)) + 1e-6)


class LargeScaleRL(PolicyGradient):
    """Batch-normalised policy gradient with an optional pretraining-loss regulariser."""

    def __init__(self, config: LargeScaleRLConfig, context: Context, name: str = "large-scale-rl"):
        super().__init__(config, context, name)
        if config.pretrain_weight > 0:
            if context.pretraining_data is None:
                raise CapabilityError(f"{name} with pretrain_weight > 0 needs the task's pretraining data, which it "
                                      "does not provide; set pretrain_weight=0 to run without the regulariser")
            self.requires = PolicyGradient.requires + ("denoising_loss",)

    def advantages(self, reward: np.ndarray) -> np.ndarray:
        return batch_normalise(reward)

    def regulariser(self, model: DiffusionModel) -> torch.Tensor | None:
        if self.cfg.pretrain_weight == 0:
            return None
        x0, condition = self.ctx.pretraining_data(self.cfg.pretrain_batch, self.generator)
        return self.cfg.pretrain_weight * model.denoising_loss(x0, generator=self.generator, condition=condition)


VARIANTS = {
    "large-scale-rl": Variant(LargeScaleRL, LargeScaleRLConfig,
                              "Zhang et al. 2024: policy gradient, batch-wide reward normalisation, "
                              "pretraining-loss regulariser"),
}
