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
  online version of methods that were published with a fixed reward;
- it proposes designs it has not proposed before: without a KL anchor its model
  collapses onto a few designs, whose repeats the oracle answers free, so
  sampling as the others do it spent 1,569 and 1,645 of its 1,920 queries on
  the protein spec's seeds 0 and 1 (commit b5d8be8's cells). It draws up to `fresh_draws` samples
  per design it needs and keeps the new ones; where even those hold too few,
  the rest of the proposal are repeats, and the leaderboard's repeats column
  shows how often.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from algorithms.method import Context, Proposal, Variant
from algorithms.methods.seiko import ONE_MODEL, Seiko, SeikoConfig
from domains.base import DiffusionModel


@dataclass
class DirectBackpropConfig(SeikoConfig):
    """SEIKO's settings, with no KL by default (the registry's), and how hard a proposal looks
    for new designs."""

    fresh_draws: int = 8
    """Samples a proposal may draw per design it needs, to find designs not proposed before
    (1: one draw of n samples, its new designs first, then its first samples again)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.fresh_draws < 1:
            raise ValueError(f"fresh_draws must be >= 1, got {self.fresh_draws}")


class DirectBackprop(Seiko):
    """SEIKO's fit-then-fine-tune round with no optimism and no KL, proposing new designs."""

    def __init__(self, config: DirectBackpropConfig, context: Context, name: str = "direct-backprop"):
        super().__init__(config, context, name)
        self.proposed: set[str] = set()
        """Keys of every design proposed so far (each was measured, or answered from the cache)."""

    def check(self, model: DiffusionModel, schedule: list[int]) -> None:
        super().check(model, schedule)
        if self.ctx.key is None:
            raise ValueError(f"{self.name}: its context names no design key to tell new designs from repeats "
                             "(Context.from_task gives the oracle's)")

    def propose(self, model: DiffusionModel, n: int, round: int) -> Proposal:
        """n designs, new ones first: samples are drawn n at a time, at most `fresh_draws`
        times, keeping each design whose key no earlier proposal had; the last draw's
        samples fill what is still missing."""
        fresh: dict[str, Any] = {}
        for _ in range(self.cfg.fresh_draws):
            drawn = self.draw(model, n, self.generator).designs
            for design in drawn:
                key = self.ctx.key(design)
                if key not in self.proposed and key not in fresh and len(fresh) < n:
                    fresh[key] = design
            if len(fresh) == n:
                break
        designs = [*fresh.values(), *drawn[:n - len(fresh)]]
        self.proposed.update(map(self.ctx.key, designs))
        return Proposal(designs)


VARIANTS = {
    "direct-backprop": Variant(DirectBackprop, DirectBackpropConfig,
                               "AlignProp on the learned reward: no optimism, no KL anchor, new designs proposed",
                               {"optimism": "none", "kl_weight": 0.0, "reward_model": ONE_MODEL}),
}
