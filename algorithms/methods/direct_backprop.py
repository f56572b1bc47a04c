"""Direct reward back-propagation with a learned reward (AlignProp / DRaFT-K).

Prabhudesai et al. 2023, "Aligning Text-to-Image Diffusion Models with Reward
Backpropagation" (AlignProp); Clark et al., ICLR 2024, "Directly Fine-Tuning
Diffusion Models on Differentiable Rewards" (DRaFT-K). AlignProp back-propagates
a differentiable reward through the whole sampling chain, DRaFT-K through its
last K steps. Here the reward is
the reward model fitted on the feedback bought so far, since the oracle itself
is not differentiable.

How it differs from Greedy, which shares its machinery (`seiko.finetune_direct`):
- no KL anchor (kl_weight 0): AlignProp and DRaFT regularise only by the
  truncation and the number of steps, not by a KL to an earlier model;
- the whole chain by default (AlignProp), as Greedy: on a masked sequence
  model DRaFT-1 (`last_k: 1`) leaves the 94% of positions revealed before the
  last step without a reward gradient;
- the reward model is refitted on all feedback every round, as in Greedy: an
  online version of methods that were published with a fixed reward.
"""

from __future__ import annotations

from algorithms.method import Variant
from algorithms.methods.seiko import ONE_MODEL, Seiko, SeikoConfig


class DirectBackprop(Seiko):
    """SEIKO's fit-then-fine-tune round with no optimism and no KL (registry defaults)."""


VARIANTS = {
    "direct-backprop": Variant(DirectBackprop, SeikoConfig,
                               "AlignProp on the learned reward: no optimism, no KL anchor",
                               {"optimism": "none", "kl_weight": 0.0, "reward_model": ONE_MODEL}),
}
