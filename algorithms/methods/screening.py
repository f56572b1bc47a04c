"""Screening: measure designs of the data the model was pretrained on, keep the best.

GuacaMol's and PMO's "best of the training set": what the budget buys with no
generative model at all, beside best-of-N's "best of the pretrained model's
samples". A method that cannot beat it with the same budget has learnt
nothing the data did not already hold. Draws come from the task's
`pretraining_data` (a fresh draw each proposal, seeded; a repeat is free, as
every repeat is); the model is never changed, so the held-out value stays
the pretrained model's and the best designs, top-10 and AUC are what count.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from algorithms.method import Context, Proposal, SamplingMethod, Variant
from domains.base import CapabilityError, DiffusionModel


@dataclass
class ScreeningConfig:
    """Screening has nothing to set: it spends the benchmark's schedule as given."""


class Screening(SamplingMethod):
    requires = ("sample",)  # only for the held-out evaluation; proposals come from the data

    def __init__(self, config: ScreeningConfig, context: Context, name: str = "screening"):
        if context.pretraining_data is None:
            raise CapabilityError(f"{name} screens the task's pretraining data, and this task has none "
                                  "(Task.pretraining_data)")
        self.cfg, self.ctx, self.name = config, context, name
        self.data = context.pretraining_data
        self.generator = torch.Generator().manual_seed(context.seed)

    def propose(self, model: DiffusionModel, n: int, round: int) -> Proposal:
        x, condition = self.data(n, self.generator)
        # A conditional model's designs carry their condition (a digit's label), which x alone does not say.
        return Proposal(model.decode(x) if condition is None else model.decode(x, condition=condition))

    def update(self, model: DiffusionModel, data, round: int) -> dict[str, float]:
        return {}


VARIANTS = {
    "screening": Variant(Screening, ScreeningConfig, "measure designs of the pretraining data and keep the best; "
                         "no model"),
}
