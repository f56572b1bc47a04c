"""Direct reward back-propagation with a learned reward (AlignProp / DRaFT-K).

Prabhudesai et al. 2023, "Aligning Text-to-Image Diffusion Models with Reward
Backpropagation" (AlignProp); Clark et al., ICLR 2024, "Directly Fine-Tuning
Diffusion Models on Differentiable Rewards" (DRaFT-K). Both back-propagate a
differentiable reward through the last K sampling steps. Here the reward is
the reward model fitted on the feedback bought so far, since the oracle itself
is not differentiable.

How it differs from Greedy, which shares its machinery (`algorithms.finetune`):
- no KL anchor (kl_weight 0): AlignProp and DRaFT regularise only by the
  truncation and the number of steps, not by a KL to an earlier model;
- truncation K = 1 by default (DRaFT-1, their recommended setting), against
  Greedy's 4;
- the reward model is refitted on all feedback every round, as in Greedy: an
  online version of methods that were published with a fixed reward.
"""

from __future__ import annotations

from algorithms.method import Variant
from algorithms.seiko import ONE_MODEL, Seiko, SeikoConfig


class DirectBackprop(Seiko):
    """SEIKO's fit-then-fine-tune round with no optimism, no KL and K = 1 (registry defaults)."""


VARIANTS = {
    "direct-backprop": Variant(DirectBackprop, SeikoConfig,
                               "AlignProp / DRaFT-1 on the learned reward: no optimism, no KL, last step only",
                               {"optimism": "none", "kl_weight": 0.0, "last_k": 1, "reward_model": ONE_MODEL}),
}
