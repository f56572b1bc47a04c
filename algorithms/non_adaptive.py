"""Non-adaptive: spend the whole budget at once, then fit and fine-tune once.

The baseline of SEIKO's Table 1 (Uehara et al., ICML 2024): all queries are
drawn from the pretrained model in a single round, one reward model is fitted
on them, and the model is fine-tuned once with the KL anchor at the pretrained
model. It isolates what adaptivity (querying the fine-tuned model) buys.
"""

from __future__ import annotations

from algorithms.method import Variant
from algorithms.seiko import ONE_MODEL, Seiko, SeikoConfig


class NonAdaptive(Seiko):
    """SEIKO's machinery with one round; the config's optimism is normally "none"."""

    def schedule(self, rounds: list[int]) -> list[int]:
        return [sum(rounds)]


VARIANTS = {
    "non-adaptive": Variant(NonAdaptive, SeikoConfig, "whole budget on the pretrained model, fit and fine-tune once",
                            {"optimism": "none", "reward_model": ONE_MODEL}),
}
