"""A genetic algorithm on the domain's own representation: the search baseline.

holo-bench (Stanton et al. 2024) uses a genetic algorithm as the reference
optimiser of Ehrlich functions; PMO finds GAs hard to beat on molecules. Round
1 measures samples of the pretrained model; every later round breeds children
from the best measured designs: truncation selection of the top `elite`
feasible designs, uniform crossover with probability `crossover_prob`, then
point mutation at `mutation_rate`, through the domain's `Operators`. The
diffusion model is only the initial population: it is never fine-tuned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from algorithms.method import Context, Feedback, Proposal, SamplingMethod, Variant
from domains.base import CapabilityError, DiffusionModel


@dataclass
class GeneticConfig:
    """Selection and variation of the genetic algorithm."""

    elite: int = 32
    """Parents: the best feasible designs measured so far (truncation selection)."""
    mutation_rate: float = 1 / 32
    """Per-position mutation probability (one letter per 32-long sequence on average)."""
    crossover_prob: float = 0.5
    """Probability that a child is a crossover of two parents before mutation."""

    def __post_init__(self) -> None:
        if self.elite < 1:
            raise ValueError(f"elite must be >= 1, got {self.elite}")
        if not 0 <= self.mutation_rate <= 1 or not 0 <= self.crossover_prob <= 1:
            raise ValueError("mutation_rate and crossover_prob must lie in [0, 1]")


class Genetic(SamplingMethod):
    def __init__(self, config: GeneticConfig, context: Context, name: str = "genetic"):
        if context.operators is None:
            raise CapabilityError(f"{name} needs the domain's search operators (mutate, crossover); this task has none")
        self.cfg, self.ctx, self.name = config, context, name
        self.generator = torch.Generator().manual_seed(context.seed)
        self.data: Feedback | None = None

    def propose(self, model: DiffusionModel, n: int, round: int) -> Proposal:
        parents = self._parents()
        if not parents:  # round 1, or nothing feasible yet: the pretrained model seeds the population
            return super().propose(model, n, round)

        def pick() -> list[Any]:
            return [parents[i] for i in torch.randint(len(parents), (n,), generator=self.generator).tolist()]

        ops = self.ctx.operators
        crossed = ops.crossover(pick(), pick(), self.generator)
        first = pick()
        cross = (torch.rand(n, generator=self.generator) < self.cfg.crossover_prob).tolist()
        children = [c if x else f for c, f, x in zip(crossed, first, cross)]
        return Proposal(ops.mutate(children, self.cfg.mutation_rate, self.generator))

    def _parents(self) -> list[Any]:
        if self.data is None or not self.data.feasible.any():
            return []
        ok = np.flatnonzero(self.data.feasible)
        best = ok[np.argsort(-self.data.reward[ok], kind="stable")]
        unique = list(dict.fromkeys(self.data.designs[i] for i in best))  # repeats are one parent
        return unique[: self.cfg.elite]

    def update(self, model: DiffusionModel, data: Feedback, round: int) -> dict[str, float]:
        self.data = data
        return {"parents": float(len(self._parents()))}


VARIANTS = {
    "genetic": Variant(Genetic, GeneticConfig, "genetic algorithm on the designs, seeded by pretrained samples"),
}
