"""SEIKO's optimism: how a fitted reward model becomes the reward that fine-tuning climbs.

Three ways of being optimistic, all read from one `RewardEnsemble`
(`algorithms.reward_models`), and none at all (Greedy):

- UCB (SEIKO's Eq. 4 with neural features): bonus = c * sqrt(phi(x)^T Sigma^-1 phi(x)),
  phi the last hidden layer, Sigma = lambda * I + sum_i phi(x_i) phi(x_i)^T over the
  training designs. Unlike the released code (a normalised torch.cov), this Gram
  matrix grows with data, so the bonus shrinks where queries accumulate.
- Bootstrap: members trained on bootstrap resamples; optimism = mean + k * std
  (k = `std_weight`), or the max over members when `bootstrap_rule="max"` (the
  released code's rule).
- Thompson sampling: one posterior draw per round = one bootstrap member,
  chosen by the method's generator (not SGLD noise of 1e-8, which is Greedy).

Each rule is one function from the fitted model to a value head (`OPTIMISM`);
`objective` combines the head with the feasibility model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch

from algorithms.reward_models import RewardEnsemble, RewardModelConfig

Optimism = Literal["none", "ucb", "bootstrap", "ts"]
Head = Callable[[torch.Tensor], torch.Tensor]
"""A value head: features (N, D) -> (N,) optimistic values, differentiable in the features."""


class UCBBonus:
    """c * sqrt(phi^T Sigma^-1 phi) with Sigma = lambda*I + sum phi phi^T over the
    training designs (SEIKO Sec. 4.1), clipped at `clip`, differentiable in x.

    c and the clip are in standard deviations of the training rewards (the bonus
    is scaled by the fit's y_std), as the network that makes phi is fitted to
    standardised targets: the same c means as much optimism on a task whose
    rewards spread over 0.05 as on one whose spread over 5. In raw reward units a
    clip of 1.0 let fine-tuning on the protein task chase a bonus 18 times the
    rewards' spread into infeasible designs."""

    def __init__(self, model: RewardEnsemble, x_train: torch.Tensor, *, c: float, lam: float, clip: float):
        with torch.no_grad():
            phi = model.phi(x_train).double()
        gram = phi.T @ phi
        # lambda below the rounding error of the largest entries leaves the Gram
        # matrix singular in floating point (molecule features made one that
        # Cholesky refused): the ridge is at least 1e-10 of the largest diagonal entry.
        ridge = max(lam, 1e-10 * float(gram.diagonal().max()))
        self.cholesky = torch.linalg.cholesky(gram + ridge * torch.eye(phi.shape[1], dtype=torch.float64))
        self.model, self.c, self.clip = model, c, clip

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        phi = self.model.phi(x).double()
        solved = torch.cholesky_solve(phi.T, self.cholesky)  # Sigma^-1 phi, (H, N)
        quad = (phi.T * solved).sum(0).clamp(min=1e-12)
        return ((self.c * quad.sqrt()).clamp(max=self.clip) * self.model.y_std).float()


@dataclass
class OptimismConfig:
    """How the learned reward is made optimistic."""

    bonus_scale: float = 1e-2
    """UCB's c (SEIKO's default, images), in standard deviations of the training rewards."""
    bonus_lambda: float = 1e-3
    """UCB's lambda, the ridge of the Gram matrix (SEIKO's default)."""
    bonus_clip: float = 1.0
    """UCB bonus ceiling, in standard deviations of the training rewards."""
    bootstrap_rule: Literal["mean_std", "max"] = "mean_std"
    """Bootstrap optimism: mean + std_weight * std over members, or max over members."""
    std_weight: float = 1.0
    """k in mean + k * std."""

    def __post_init__(self) -> None:
        if self.bootstrap_rule not in ("mean_std", "max"):
            raise ValueError(f"bootstrap_rule={self.bootstrap_rule!r}: expected mean_std or max")
        if self.bonus_lambda <= 0:
            raise ValueError(f"bonus_lambda must be > 0 (the Gram matrix's ridge), got {self.bonus_lambda}")


def _plain(model: RewardEnsemble, cfg: OptimismConfig, generator: torch.Generator) -> Head:
    """Greedy: the ensemble's mean."""
    return lambda x: model.members(x).mean(0)


def _ucb(model: RewardEnsemble, cfg: OptimismConfig, generator: torch.Generator) -> Head:
    """The mean plus UCB's bonus on the training designs' Gram matrix."""
    bonus = UCBBonus(model, model.x_train, c=cfg.bonus_scale, lam=cfg.bonus_lambda, clip=cfg.bonus_clip)
    return lambda x: model.members(x).mean(0) + bonus(x)


def _bootstrap(model: RewardEnsemble, cfg: OptimismConfig, generator: torch.Generator) -> Head:
    """The max over bootstrap members, or their mean plus k standard deviations."""
    if cfg.bootstrap_rule == "max":
        return lambda x: model.members(x).max(0).values

    def mean_std(x: torch.Tensor) -> torch.Tensor:
        r = model.members(x)
        return r.mean(0) + cfg.std_weight * r.std(0)

    return mean_std


def _thompson(model: RewardEnsemble, cfg: OptimismConfig, generator: torch.Generator) -> Head:
    """One posterior draw: the member the method's generator picks (so build it once a round)."""
    draw = int(torch.randint(model.cfg.ensemble_size, (1,), generator=generator))
    return lambda x: model.members(x)[draw]


OPTIMISM: dict[str, Callable[[RewardEnsemble, OptimismConfig, torch.Generator], Head]] = {
    "none": _plain, "ucb": _ucb, "bootstrap": _bootstrap, "ts": _thompson}


def objective(
    model: RewardEnsemble, optimism: Optimism, cfg: OptimismConfig, generator: torch.Generator,
    *, feasibility_gradient: bool = False,
) -> Head:
    """The (optimistic) reward to maximise: features (N, D) -> (N,), differentiable.
    Fine-tuning climbs `RewardEnsemble.weighted` (p's gradient through the
    features a design has); with `feasibility_gradient`, `expected` (p's
    gradient through every feature), which guidance takes:
    a one-step tilt of each letter, it has no direction to run down, and p's
    gradient keeps its letters feasible (0.255 at 1,920 queries with it).

    Thompson sampling draws its member here, so call once per round."""
    if optimism not in OPTIMISM:
        raise ValueError(f"unknown optimism {optimism!r}: expected one of {', '.join(OPTIMISM)}")
    value = OPTIMISM[optimism](model, cfg, generator)
    combine = model.expected if feasibility_gradient else model.weighted
    return lambda x: combine(value(x), x)


@dataclass
class LearnedRewardConfig:
    """The reward model a method refits every round, and how optimistic it is:
    shared by the methods that optimise (SEIKO) or follow (guidance) a learned reward."""

    optimism: Optimism = "none"
    """none (the plain fit) | ucb | bootstrap | ts."""
    reward_model: RewardModelConfig = field(default_factory=RewardModelConfig)
    """The ensemble fitted each round (UCB and the plain fit use one member on all data)."""
    bonus: OptimismConfig = field(default_factory=OptimismConfig)
    """Optimism settings: UCB's c, lambda, clip; Bootstrap's rule."""

    def __post_init__(self) -> None:
        # Nested settings from a spec are laid over this config's own defaults by
        # `algorithms.config.build`, so a subclass's default (guidance's single
        # network) survives a partial override.
        if self.optimism not in ("none", "ucb", "bootstrap", "ts"):
            raise ValueError(f"optimism={self.optimism!r}: expected one of none, ucb, bootstrap, ts")
        if self.optimism in ("bootstrap", "ts") and self.reward_model.ensemble_size < 2:
            raise ValueError(f"optimism={self.optimism} needs reward_model.ensemble_size >= 2")

    def check_schedule(self, method: str, schedule: list[int]) -> None:
        """Refuse, before any query, a first round too small to hold the feasible designs the value model needs."""
        if schedule and schedule[0] < self.reward_model.min_feasible:
            raise ValueError(f"{method}: the first round buys {schedule[0]} designs, fewer than the "
                             f"{self.reward_model.min_feasible} feasible ones its reward model needs "
                             "(reward_model.min_feasible)")
