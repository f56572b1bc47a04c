"""Non-adaptive: spend the whole budget at once, then fit and fine-tune once.

The baseline of SEIKO's Table 1 (Uehara et al., ICML 2024): all queries are
drawn from the pretrained model in a single round, one reward model is fitted
on them, and the model is fine-tuned once with the KL anchor at the pretrained
model. It isolates what adaptivity (querying the fine-tuned model) buys, so it
gets the same fine-tuning as the round-based methods: `finetune_steps` for each
round of the benchmark's schedule, all in its one update (50 steps once against
SEIKO's 50 in each of 4 rounds would confound adaptivity with 4x less training).
"""

from __future__ import annotations

import dataclasses

from algorithms.method import Context, Variant
from algorithms.methods.seiko import ONE_MODEL, Seiko, SeikoConfig


class NonAdaptive(Seiko):
    """SEIKO's machinery with one round; the config's optimism is normally "none"."""

    def __init__(self, config: SeikoConfig, context: Context, name: str = "non-adaptive"):
        super().__init__(config, context, name)
        self.per_round = config  # `schedule` scales its finetune_steps, however often it is asked

    def schedule(self, rounds: list[int]) -> list[int]:
        """One round of the whole budget, fine-tuned as long as the benchmark's rounds would be in all."""
        self.cfg = dataclasses.replace(self.per_round, finetune_steps=self.per_round.finetune_steps * len(rounds))
        return [sum(rounds)]


VARIANTS = {
    "non-adaptive": Variant(NonAdaptive, SeikoConfig, "whole budget on the pretrained model, fit and fine-tune once "
                            "(as many fine-tuning steps as the schedule's rounds in all)",
                            {"optimism": "none", "reward_model": ONE_MODEL}),
}
