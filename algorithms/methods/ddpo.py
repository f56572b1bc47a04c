"""DDPO: denoising diffusion policy optimisation, online.

Black et al., "Training Diffusion Models with Reinforcement Learning", ICLR 2024.
The reverse process is an MDP whose policy is p_theta(x_{t-1} | x_t); each
round's measured designs are the episodes, their oracle reward the return.
- DDPO-SF (their Eq. 3): REINFORCE, grad = E[ sum_t grad log p_theta(x_{t-1}|x_t) * A ].
- DDPO-IS (Eq. 4 with PPO's clip): per step, the clipped surrogate
  max(-A * ratio, -A * clip(ratio, 1 - eps, 1 + eps)), ratio = p_theta / p_old.
Advantages are rewards normalised per condition and clipped at 5. Online: every
sample learned from is a charged (or cached) query, so the budget is the number
of episodes. The update itself lives in `PolicyGradient`, which large-scale RL
(`algorithms.methods.large_scale_rl`) shares.

Where our defaults leave ddpo-pytorch's (whose base config is kept as the
variant "ddpo-is-published"), and why:
- clip 0.2, not 1e-4. ddpo-pytorch's step log-prob is the Gaussian log-density
  *averaged* over the latent's pixels, so its ratio moves by the mean change per
  pixel and 1e-4 is a clip per pixel. The masked sequence model's per-step
  log-prob is the step's log-probability, a *sum* over positions: after one
  Adam step 86% of the per-step ratios already lay outside 1 +- 1e-4 (issue 12),
  so the surrogate's gradient was nearly all clipped away. On the ratio of whole
  step probabilities, PPO's own clip (Schulman et al. 2017: 0.2) is the one that
  fits. The DDIM models (`domains.diffusion.ddim`: digits, Stable Diffusion)
  keep DDPO's per-element average, for which 0.2 barely clips: there the
  published 1e-4 ("ddpo-is-published", or `clip_range: 1e-4`) is the matching one.
- advantages normalised over this round's episodes of each condition (for an
  unconditional model, the whole round), not over the last 16 rewards: their
  tracker was built for many prompts with a few images each; one unconditional
  round of 128-1024 episodes normalised by its last 16 rewards had a mean
  advantage of +1.89 and 12-15% of its advantages clipped at 5.
- 4 inner epochs for DDPO-IS (PPO's reuse of each round, which the clip exists
  to make safe): with one epoch, batches of 32 over a 1,920-query budget give a
  policy-gradient method only ~60 Adam steps. DDPO-SF keeps one: REINFORCE's
  gradient is unbiased only on the policy that sampled the episodes.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from algorithms.method import Context, Feedback, Proposal, SamplingMethod, Variant, cat_trajectories, sample_in_chunks
from algorithms.parallel import PieceGradients
from domains.base import DiffusionModel, Trajectory, index_states


@dataclass
class PolicyGradientConfig:
    """The policy-gradient update shared by DDPO and large-scale RL (defaults:
    ddpo-pytorch's base config scaled to a CPU, with PPO's clip and reuse for a
    summed per-step log-prob; see the module's docstring)."""

    importance_sampling: bool = True
    """DDPO-IS (PPO clip) if true, DDPO-SF (REINFORCE) if false."""
    clip_range: float = 0.2
    """PPO clip epsilon on the per-step ratio: PPO's 0.2 fits a log-prob summed over
    positions (the sequence model); ddpo-pytorch's 1e-4 fits one averaged over
    pixels (the DDIM models), see the module's docstring."""
    adv_clip_max: float = 5.0
    """Advantages are clipped to [-5, 5]."""
    inner_epochs: int = 4
    """Passes over each round's episodes: PPO-style reuse, which the clip makes safe
    (REINFORCE, importance_sampling false, is on-policy: its variant sets 1)."""
    batch_size: int = 32
    """Episodes per gradient step."""
    timestep_fraction: float = 1.0
    """Fraction of reverse steps trained on per episode (a random subset)."""
    lr: float = 1e-4
    """Adam learning rate."""
    train_last_step: bool = True
    """Train on the last reverse step. False for a model whose last step is a nearly
    deterministic decoding (the digits' DDIM: sigma about 0.01 against 0.3-1 before):
    the gradient of its log-prob scales as 1 / sigma^2, so it is 10^3-10^4 times the
    other steps', the gradient clip then shrinks every step's share to almost nothing,
    and the policy learns only to move its last step's pixels."""

    def __post_init__(self) -> None:
        if not 0 < self.timestep_fraction <= 1:
            raise ValueError(f"timestep_fraction must lie in (0, 1], got {self.timestep_fraction}")
        for name in ("inner_epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.clip_range <= 0 or self.adv_clip_max <= 0:
            raise ValueError("clip_range and adv_clip_max must be > 0")


@dataclass
class DDPOConfig(PolicyGradientConfig):
    """DDPO's settings: the shared update plus the per-condition stat tracker."""

    buffer_size: int | None = None
    """Stat tracker: rewards remembered per condition; None: this round's rewards of
    the condition and no others (ddpo-pytorch: 16, kept across rounds)."""
    min_count: int = 16
    """Stat tracker: below this many, normalise with the whole round's statistics."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.buffer_size is not None and self.buffer_size < 1) or self.min_count < 1:
            raise ValueError(f"buffer_size and min_count must be >= 1, got {self.buffer_size}, {self.min_count}")


class StatTracker:
    """Per-condition reward normalisation (ddpo-pytorch's PerPromptStatTracker):
    (r - mean) / (std + 1e-6) over the last `buffer_size` rewards of the same
    condition, or over the whole batch while a condition has fewer than `min_count`.
    With `buffer_size` None the buffer is each batch's own rewards of the condition:
    a round is normalised by itself, however many episodes it has."""

    def __init__(self, buffer_size: int | None, min_count: int):
        self.buffers: dict[Any, deque] = defaultdict(lambda: deque(maxlen=buffer_size))
        self.min_count = min_count
        self.remembers = buffer_size is not None

    def update(self, conditions: list[Any], rewards: np.ndarray) -> np.ndarray:
        if not self.remembers:
            self.buffers.clear()
        out = np.empty_like(rewards, dtype=np.float64)
        for condition in dict.fromkeys(conditions):
            rows = np.array([c == condition for c in conditions])
            self.buffers[condition].extend(rewards[rows].tolist())
            pool = np.asarray(self.buffers[condition]) if len(self.buffers[condition]) >= self.min_count else rewards
            out[rows] = (rewards[rows] - pool.mean()) / (pool.std() + 1e-6)
        return out


def _rows(trajectory: Trajectory, rows: torch.Tensor) -> Trajectory:
    condition = None if trajectory.condition is None else trajectory.condition[rows]
    return Trajectory([index_states(s, rows) for s in trajectory.states], trajectory.log_probs[rows], condition)


def policy_loss(new_log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantage: torch.Tensor,
                importance_sampling: bool, clip_range: float) -> torch.Tensor:
    """The per-step DDPO loss, averaged over the batch."""
    if not importance_sampling:
        return -(advantage * new_log_prob).mean()
    ratio = torch.exp(new_log_prob - old_log_prob)
    unclipped = -advantage * ratio
    clipped = -advantage * torch.clamp(ratio, 1 - clip_range, 1 + clip_range)
    return torch.maximum(unclipped, clipped).mean()


class PolicyGradient(SamplingMethod):
    """The on-policy update on kept trajectories; subclasses say how rewards
    become advantages and what, if anything, regularises the loss."""

    requires = ("sample", "log_prob", "trainable_parameters")

    def __init__(self, config: PolicyGradientConfig, context: Context, name: str):
        self.cfg, self.ctx, self.name = config, context, name
        self.generator = torch.Generator().manual_seed(context.seed)
        self.trajectory: Trajectory | None = None
        self.trajectory_round: int | None = None
        self.optimizer: torch.optim.Optimizer | None = None

    def check(self, model: DiffusionModel, schedule: list[int]) -> None:
        if not self.cfg.train_last_step and model.num_steps < 2:
            raise ValueError(f"{self.name}: train_last_step=false leaves no step to train in a one-step model")

    def advantages(self, reward: np.ndarray) -> np.ndarray:
        """Normalised advantages of this round's episodes, before clipping."""
        raise NotImplementedError

    def regulariser(self, model: DiffusionModel) -> torch.Tensor | None:
        """A loss added to every gradient step (None: nothing added)."""
        return None

    def propose(self, model: DiffusionModel, n: int, round: int) -> Proposal:
        """Fresh episodes, kept for the update. The loop may ask again in the same
        round (a top-up, when repeats left the round short of its queries): those
        episodes are appended, so the kept trajectory's rows stay those of
        `Feedback.round_scores(round)`, in the order proposed."""
        sample = sample_in_chunks(lambda k, g: model.sample(k, generator=g, keep_trajectory=True), n,
                                  self.generator, self.ctx.ranks)
        if self.trajectory_round == round:
            self.trajectory = cat_trajectories([self.trajectory, sample.trajectory])
        else:
            self.trajectory, self.trajectory_round = sample.trajectory, round
        return Proposal(sample.designs, sample.trajectory)

    def update(self, model: DiffusionModel, data: Feedback, round: int) -> dict[str, float]:
        latest, reward = data.round_scores(round, self.ctx.floor)  # this round's episodes
        if self.trajectory_round != round or len(self.trajectory.log_probs) != len(latest):
            raise RuntimeError(f"{self.name}: round {round} has {len(latest)} episodes in the feedback but the kept "
                               "trajectories are not theirs: every design measured must come from this round's propose")
        advantage = torch.as_tensor(
            np.clip(self.advantages(reward), -self.cfg.adv_clip_max, self.cfg.adv_clip_max), dtype=torch.float32)
        params, ranks = model.trainable_parameters(), self.ctx.ranks
        if self.optimizer is None:  # one optimiser for the whole run: Adam's moments carry across rounds, as in DDPO
            self.optimizer = torch.optim.Adam(params, lr=self.cfg.lr)
        n = len(latest)
        T = self.trajectory.num_steps if self.cfg.train_last_step else self.trajectory.num_steps - 1
        trained_steps = max(1, int(self.cfg.timestep_fraction * T))
        losses, regs, first_ratio = [], [], None
        for _ in range(self.cfg.inner_epochs):
            order = torch.randperm(n, generator=self.generator)
            for start in range(0, n, self.cfg.batch_size):
                minibatch = order[start : start + self.cfg.batch_size]
                steps = torch.randperm(T, generator=self.generator)[:trained_steps].sort().values.tolist()
                self.optimizer.zero_grad()
                grads, pieces = PieceGradients(params, ranks), []
                # This rank's pieces of the minibatch (all of it on one process), each weighted by its share.
                for piece, _ in ranks.pieces(len(minibatch), self.generator):
                    rows = minibatch[piece.start : piece.stop]
                    batch, weight = _rows(self.trajectory, rows), len(rows) / len(minibatch)
                    loss_sum, ratios = 0.0, []
                    # One backward per step, gradients accumulated: the mean over steps has the same gradient,
                    # and only one step's graph is alive at a time (20 UNet graphs kept for one backward cost
                    # Stable Diffusion 2.8 GB at 32x32, issue 17).
                    for step in steps:
                        new = model.log_prob(batch, [step])[:, 0]
                        old = batch.log_probs[:, step]
                        ratios.append(torch.exp(new - old).detach())
                        loss = policy_loss(new, old, advantage[rows], self.cfg.importance_sampling,
                                           self.cfg.clip_range) * weight / len(steps)
                        loss.backward()
                        loss_sum += float(loss.detach())
                    grads.piece_done()
                    pieces.append((loss_sum, torch.cat(ratios)))
                grads.sum()
                pieces = ranks.gather(pieces, len(minibatch))  # every rank's, for the diagnostics
                if first_ratio is None:
                    first_ratio = float(torch.cat([ratios for _, ratios in pieces]).mean())
                losses.append(sum(loss for loss, _ in pieces))
                reg = self.regulariser(model)
                if reg is not None:  # every rank computes it in full, after the ranks' gradients are summed
                    regs.append(float(reg.detach()))
                    reg.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                self.optimizer.step()
        stats = {"policy_loss": float(np.mean(losses)), "first_ratio": first_ratio,
                 "advantage_std": float(advantage.std())}
        return stats | ({"regulariser": float(np.mean(regs))} if regs else {})


class DDPO(PolicyGradient):
    """DDPO-IS / DDPO-SF: advantages from the per-condition stat tracker."""

    def __init__(self, config: DDPOConfig, context: Context, name: str = "ddpo"):
        super().__init__(config, context, name)
        self.tracker = StatTracker(config.buffer_size, config.min_count)

    def advantages(self, reward: np.ndarray) -> np.ndarray:
        condition = self.trajectory.condition
        conditions = [None] * len(reward) if condition is None else condition.tolist()
        return self.tracker.update(conditions, reward)


PUBLISHED = {"importance_sampling": True, "clip_range": 1e-4, "inner_epochs": 1, "buffer_size": 16, "min_count": 16}
"""ddpo-pytorch's base config (clip, inner epochs, per-prompt stat tracking)."""

VARIANTS = {
    "ddpo-is": Variant(DDPO, DDPOConfig, "DDPO with importance sampling (PPO clip 0.2, 4 inner epochs) on "
                       "per-step log-probs, advantages normalised over the round", {"importance_sampling": True}),
    "ddpo-sf": Variant(DDPO, DDPOConfig, "DDPO with the score function (REINFORCE, on-policy) on per-step "
                       "log-probs, advantages normalised over the round",
                       {"importance_sampling": False, "inner_epochs": 1}),
    "ddpo-is-published": Variant(DDPO, DDPOConfig, "DDPO-IS with ddpo-pytorch's settings: clip 1e-4, one inner "
                                 "epoch, stat tracker of the last 16 rewards per condition", PUBLISHED),
}
