"""Guidance: steer sampling with the learned reward's gradient; never fine-tune.

The "Guidance" baseline of SEIKO's Table 1 (Uehara et al., ICML 2024), after
classifier guidance (Dhariwal & Nichol 2021) with a reward model in place of
the classifier. Each round the reward model is refitted on all feedback so far
(with SEIKO's optimism if asked), and the next designs are drawn from the
pretrained model steered by its gradient (`DiffusionModel.sample_guided`; each
domain states how it turns the gradient into a step: the masked sequence model
reweights the token it reveals by exp(scale * gradient) with respect to the
soft one-hot of the predicted clean sequence). The model's weights never change,
so what a round buys is a better guide; evaluation samples are guided too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from algorithms.method import Context, Feedback, SamplingMethod, Variant, sample_in_chunks
from algorithms.optimism import LearnedRewardConfig, objective
from algorithms.reward_models import RewardEnsemble, RewardModelConfig
from domains.base import DiffusionModel, SampleOutput


def _one_network() -> RewardModelConfig:
    return RewardModelConfig(ensemble_size=1, bootstrap=False)


@dataclass
class GuidanceConfig(LearnedRewardConfig):
    """The guide (a learned reward, plain by default) and how strongly it steers."""

    scale: float = 1000.0
    """Guidance strength: the multiplier of the reward gradient at each step. It
    is in reward units, so it is task-specific: 1000 was chosen on the protein
    task's tuning seed 100 among 1, 10, ..., 10^4 (`protein-baselines-tuning`)."""
    reward_model: RewardModelConfig = field(default_factory=_one_network)
    """The reward model refitted each round (one network on all data by default)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.scale < 0:
            raise ValueError(f"scale must be >= 0, got {self.scale}")


class Guidance(SamplingMethod):
    """Reward-model guidance of the unchanged pretrained model."""

    requires = ("sample", "sample_guided")

    def __init__(self, config: GuidanceConfig, context: Context, name: str = "guidance"):
        self.cfg, self.ctx, self.name = config, context, name
        self.generator = torch.Generator().manual_seed(context.seed)
        self.reward_model = RewardEnsemble.for_featuriser(context.featuriser, config.reward_model)
        self.guide: Callable[[torch.Tensor], torch.Tensor] | None = None  # None until feedback exists

    def draw(self, model: DiffusionModel, n: int, generator: torch.Generator) -> SampleOutput:
        if self.guide is None:  # round 1: nothing learned yet, so the pretrained model's own samples
            return super().draw(model, n, generator)
        return sample_in_chunks(lambda k, g: model.sample_guided(k, generator=g, guide=self.guide, scale=self.cfg.scale),
                                n, generator, self.ctx.ranks)

    def update(self, model: DiffusionModel, data: Feedback, round: int) -> dict[str, float]:
        fit = self.reward_model.fit(self.ctx.featuriser(data.designs), data.reward, data.feasible, self.ctx.floor,
                                    self.generator)
        reward = objective(self.reward_model, self.cfg.optimism, self.cfg.bonus, self.generator,
                           feasibility_gradient=True)
        featurise = self.ctx.featuriser.relaxed
        self.guide = lambda x: reward(featurise(x))
        return fit

    def check(self, model: DiffusionModel, schedule: list[int]) -> None:
        self.cfg.check_schedule(self.name, schedule)

    def predict(self, designs: list[Any]) -> np.ndarray | None:
        return self.reward_model.predict(self.ctx.featuriser(designs))

    def predict_value(self, designs: list[Any]) -> np.ndarray | None:
        return self.reward_model.predict_value(self.ctx.featuriser(designs))


VARIANTS = {
    "guidance": Variant(Guidance, GuidanceConfig,
                        "no fine-tuning: sampling steered by the learned reward's gradient (classifier guidance)"),
}
