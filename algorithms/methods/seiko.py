"""SEIKO: optimistic fine-tuning of diffusion models with a KL constraint.

Uehara et al., "Feedback Efficient Online Fine-Tuning of Diffusion Models",
ICML 2024 (Algorithm 1). Round r:
  1. propose: sample n_r designs from the current model p^{r-1} and measure them;
  2. fit a reward model with uncertainty on all feedback so far (`reward_models`);
  3. fine-tune p^r = argmax E_p[r_hat(x) + bonus(x)] - alpha * KL(p || p^{r-1})
     by direct back-propagation through the (truncated) sampler (`finetune_direct`).
The variants differ only in step 3's optimism: UCB, Bootstrap, Thompson sampling,
and none at all, which is the Greedy baseline (also registered from this file).

Example::

    method = build_method("seiko-ucb", Context.from_task(task, seed=0))
    loop.run(method, task.load_model(), budgeted_oracle, [128, 256, 512, 1024], floor=task.oracle.floor)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from algorithms.method import Context, Feedback, SamplingMethod, Variant
from algorithms.optimism import LearnedRewardConfig, Optimism, objective
from algorithms.parallel import ONE_PROCESS, PieceGradients, Ranks
from algorithms.reward_models import RewardEnsemble
from domains.base import DiffusionModel


@dataclass
class SeikoConfig(LearnedRewardConfig):
    """SEIKO's settings. These defaults are a starting point, with the paper's
    image values beside each; every shipped spec sets its task's own values in
    its `config` block (the protein spec: 100 steps, KL weight 0.005, chosen on
    tuning seeds 100-102, docs/research-notes.md), which is where to read them."""

    optimism: Optimism = "ucb"
    """none (Greedy) | ucb | bootstrap | ts."""
    kl_weight: float = 0.01
    """alpha, the weight of KL(new || previous round's model) (paper: 0.01, images)."""
    finetune_steps: int = 50
    """Gradient steps of fine-tuning per round (tuned on seed 100: 50 steps at lr 1e-3)."""
    batch_size: int = 32
    """Samples per fine-tuning step."""
    last_k: int | None = None
    """Reverse steps that carry the reward gradient, counted from the last; None: all
    of them. A masked model reveals each position once, at a random step, so
    truncating to the last 4 of 16 steps left 75% of the positions without a
    reward gradient: Greedy ended at 0.05 with 4, 0.17-0.35 with all 16."""
    lr: float = 1e-3
    """Adam learning rate of fine-tuning (seed 100, Greedy: 1e-3 beat 3e-3 after 3 rounds)."""
    kl_steps: int | None = None
    """Reverse steps whose KL a fine-tuning step computes, drawn afresh each step, the sum
    rescaled by (steps / kl_steps) so that it stays unbiased; None: every step. Skipping a
    step's KL skips the anchor's forward there (about 15% of a protein round)."""
    kl_bound: float | None = None
    """A trust region: a round's fine-tuning stops at the first step whose batch's mean KL to
    the anchor (the round's starting model) exceeds this many nats, before that step's
    update; None: every step is taken. The KL weight alone does not hold a model near its
    anchor when Adam's step is set by the learning rate (molecules moved 10-100 nats a round)."""
    finetune_reverse_steps: int | None = None
    """Reverse steps of the sampler that fine-tuning differentiates, when coarser than the
    model's own (which proposals and evaluation always use); None: the model's. Half the
    steps halve a fine-tuning step's passes."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.kl_weight < 0:
            raise ValueError(f"kl_weight must be >= 0, got {self.kl_weight}")
        if self.kl_bound is not None and self.kl_bound <= 0:
            raise ValueError(f"kl_bound must be > 0, got {self.kl_bound}")
        for name in ("finetune_steps", "batch_size", "last_k", "kl_steps", "finetune_reverse_steps"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


def finetune_direct(
    model: DiffusionModel,
    reward: Callable[[torch.Tensor], torch.Tensor],
    anchor: DiffusionModel | None,
    *,
    steps: int,
    batch_size: int,
    last_k: int,
    kl_weight: float,
    lr: float,
    generator: torch.Generator,
    grad_clip: float = 1.0,
    ranks: Ranks = ONE_PROCESS,
    num_steps: int | None = None,
    kl_steps: int | None = None,
    kl_bound: float | None = None,
) -> dict[str, float]:
    """SEIKO's step 3: maximise E[r(x)] - alpha * KL(p_theta || p_anchor) over
    trajectories by direct back-propagation through the sampler, with the KL
    summed over reverse steps along the sampled trajectory (SEIKO Eq. 6, the
    trajectory-wise KL of Sec. 4.2); gradients flow through the last `last_k`
    steps only (DRaFT-K, Clark et al. 2024; AlignProp, Prabhudesai et al. 2023).

    `reward` maps `DifferentiableSample.x` to (N,) rewards. Each step's batch
    is drawn and differentiated piece by piece (`Ranks.pieces`: this rank's
    pieces, one piece on one process unless `shards` says otherwise), each
    piece's gradient weighted by its share of the batch. Returns the last step's
    mean reward and KL (diagnostics for the round record).

    With `num_steps` the sampler differentiated is that coarser reverse process; with
    `kl_steps` each step computes the KL on that many of its reverse steps, drawn uniformly
    without replacement, and rescales their sum (an unbiased estimate of the whole sum). With
    `kl_bound` it stops at the first step whose batch's mean KL exceeds it, before that step's
    update (the KL is then computed whatever `kl_weight`)."""
    params = model.trainable_parameters()
    T = num_steps or model.num_steps
    opt = torch.optim.Adam(params, lr=lr)
    reference = anchor if kl_weight > 0 or kl_bound is not None else None
    r = kl = torch.zeros(())
    taken = 0
    for _ in range(steps):
        opt.zero_grad()
        grads, rewards, kls = PieceGradients(params, ranks), [], []
        subset = None if kl_steps is None else set(torch.randperm(T, generator=generator)[:kl_steps].tolist())
        scale = 1.0 if kl_steps is None else T / kl_steps
        extra = {} if num_steps is None and subset is None else {"num_steps": num_steps, "kl_steps": subset}
        for rows, piece_generator in ranks.pieces(batch_size, generator):
            sample = model.sample_with_grad(len(rows), generator=piece_generator, last_k=last_k, reference=reference,
                                            **extra)
            r, kl = reward(sample.x), sample.kl.sum(1) * scale
            loss = -(r - kl_weight * kl).mean() * (len(rows) / batch_size)
            loss.backward()
            grads.piece_done()
            rewards.append(r.detach())
            kls.append(kl.detach())
        grads.sum()
        if kl_bound is not None and float(torch.cat(ranks.gather(kls, batch_size)).mean()) > kl_bound:
            break  # every rank gathers the same batch, so all stop at the same step
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
        opt.step()
        taken += 1
    if steps:  # the last step's whole batch, every rank's pieces
        r, kl = torch.cat(ranks.gather(rewards, batch_size)), torch.cat(ranks.gather(kls, batch_size))
    return {"finetune_reward": float(r.mean()), "finetune_kl": float(kl.mean()), "finetune_steps_taken": taken}


class Seiko(SamplingMethod):
    """SEIKO-UCB / -Bootstrap / -TS, and Greedy (optimism "none")."""

    requires = ("sample", "sample_with_grad", "kl", "frozen_copy", "trainable_parameters")

    def __init__(self, config: SeikoConfig, context: Context, name: str = "seiko"):
        self.cfg, self.ctx, self.name = config, context, name
        self.generator = torch.Generator().manual_seed(context.seed)
        self.reward_model = RewardEnsemble.for_featuriser(context.featuriser, config.reward_model)
        self.anchor: DiffusionModel | None = None

    def check(self, model: DiffusionModel, schedule: list[int]) -> None:
        """Settings the model or the schedule cannot meet, refused before any query."""
        steps = self.reverse_steps(model)
        for name in ("last_k", "kl_steps"):
            value = getattr(self.cfg, name)
            if value is not None and value > steps:
                raise ValueError(f"{self.name}: {name}={value} exceeds the {steps} reverse steps fine-tuning "
                                 f"differentiates; use at most that many, or leave {name} unset for all of them")
        self.cfg.check_schedule(self.name, schedule)

    def reverse_steps(self, model: DiffusionModel) -> int:
        """Reverse steps of the sampler that fine-tuning differentiates on `model`."""
        return self.cfg.finetune_reverse_steps or model.num_steps

    def reach(self, model: DiffusionModel) -> int:
        """Reverse steps that carry the reward gradient on `model`."""
        return self.cfg.last_k or self.reverse_steps(model)

    def begin_round(self, model: DiffusionModel, round: int) -> None:
        """p^{r-1}, the model this round's designs come from, is its KL anchor."""
        self.anchor = model.frozen_copy()

    def update(self, model: DiffusionModel, data: Feedback, round: int) -> dict[str, float]:
        x = self.ctx.featuriser(data.designs)
        fit = self.reward_model.fit(x, data.reward, data.feasible, self.ctx.floor, self.generator)
        reward = objective(self.reward_model, self.cfg.optimism, self.cfg.bonus, self.generator)
        with torch.no_grad():  # how much optimism adds where this round's queries are: a diagnostic
            latest = x[torch.as_tensor(data.round == round)]
            plain = self.reward_model.expected(self.reward_model.members(latest).mean(0), latest)
            gap = float((reward(latest) - plain).mean())
        featurise = self.ctx.featuriser.relaxed
        stats = finetune_direct(
            model,
            lambda sample: reward(featurise(sample)),
            self.anchor,
            steps=self.cfg.finetune_steps,
            batch_size=self.cfg.batch_size,
            last_k=self.reach(model),
            kl_weight=self.cfg.kl_weight,
            lr=self.cfg.lr,
            generator=self.generator,
            ranks=self.ctx.ranks,
            num_steps=self.cfg.finetune_reverse_steps,
            kl_steps=self.cfg.kl_steps,
            kl_bound=self.cfg.kl_bound,
        )
        return {**fit, "optimism_gap": gap, **stats}

    def predict(self, designs: list[Any]) -> np.ndarray | None:
        return self.reward_model.predict(self.ctx.featuriser(designs))

    def predict_value(self, designs: list[Any]) -> np.ndarray | None:
        return self.reward_model.predict_value(self.ctx.featuriser(designs))


ONE_MODEL = {"ensemble_size": 1, "bootstrap": False}
"""UCB and Greedy fit one network on all data (SEIKO Sec. 4.1)."""

VARIANTS = {
    "seiko-ucb": Variant(Seiko, SeikoConfig, "SEIKO with a UCB bonus on last-layer features",
                         {"optimism": "ucb", "reward_model": ONE_MODEL}),
    "seiko-bootstrap": Variant(Seiko, SeikoConfig, "SEIKO with bootstrap-ensemble optimism (mean + k*std)",
                               {"optimism": "bootstrap"}),
    "seiko-ts": Variant(Seiko, SeikoConfig, "SEIKO with Thompson sampling (one ensemble member per round)",
                        {"optimism": "ts"}),
    "greedy": Variant(Seiko, SeikoConfig, "SEIKO without optimism: fit, then fine-tune on the fitted reward",
                      {"optimism": "none", "reward_model": ONE_MODEL}),
}
