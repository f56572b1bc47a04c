"""Best-of-N: measure samples of the pretrained model, keep the best; no learning.

The first thing a lab tries, and the floor any fine-tuning method must clear:
the same budget spent on the pretrained model, round by round. The model is
never changed, so its held-out value stays the pretrained one; what it offers
is the best designs among its queries (best, top-10 and AUC in the log).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from algorithms.method import Context, Feedback, SamplingMethod, Variant
from domains.base import DiffusionModel


@dataclass
class BestOfNConfig:
    """Best-of-N has nothing to set: it spends the benchmark's schedule as given."""


class BestOfN(SamplingMethod):
    def __init__(self, config: BestOfNConfig, context: Context, name: str = "best-of-n"):
        self.cfg, self.ctx, self.name = config, context, name
        self.generator = torch.Generator().manual_seed(context.seed)

    def update(self, model: DiffusionModel, data: Feedback, round: int) -> dict[str, float]:
        return {}


VARIANTS = {
    "best-of-n": Variant(BestOfN, BestOfNConfig, "measure pretrained samples and keep the best; no learning"),
}
