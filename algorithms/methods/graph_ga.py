"""GB-GA, the graph genetic algorithm of Jensen (Chem. Sci. 2019), as PMO runs it.

PMO (Gao et al., NeurIPS 2022) finds it among the strongest molecular
optimisers at equal oracle calls. Its generation: a mating pool drawn from the
population with probability proportional to score, every child a crossover of
two pool members, then mutated with a small probability; the population is the
best `population` designs measured so far. Unlike `genetic` (the project's GA
of holo-bench's kind: one generation per benchmark round, parents drawn
uniformly, half the children crossed), a generation here is `offspring`
children, so the budget buys as many generations as it holds whatever the
benchmark's rounds (1,000 calls: 14 generations of 70 and one of 20). The
moves are the domain's `Operators` (GB-GA's graph edits on molecules). As in
every method of a spec, the first generation is the pretrained model's
samples (PMO's starts from random ZINC molecules); the model is never
fine-tuned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from algorithms.method import Context, Feedback, Proposal, SamplingMethod, Variant
from domains.base import CapabilityError, DiffusionModel


@dataclass
class GraphGAConfig:
    """GB-GA's settings, with PMO's values as defaults."""

    population: int = 120
    """The best feasible designs measured so far, repeats counted once: the mating pool's source."""
    offspring: int = 70
    """Children per generation: each generation is a round of this many queries."""
    mutation_rate: float = 0.067
    """Rate passed to the domain's `mutate`. GB-GA mutates a child with this probability;
    the molecule operators read it per atom, so a spec on molecules divides it by a
    typical molecule's atoms (the molecule spec: 0.0027, about 0.067 for 25 atoms)."""

    def __post_init__(self) -> None:
        if self.population < 1 or self.offspring < 1:
            raise ValueError(f"population and offspring must be >= 1, got {self.population} and {self.offspring}")
        if not 0 <= self.mutation_rate <= 1:
            raise ValueError(f"mutation_rate must lie in [0, 1], got {self.mutation_rate}")


class GraphGA(SamplingMethod):
    def __init__(self, config: GraphGAConfig, context: Context, name: str = "graph-ga"):
        if context.operators is None:
            raise CapabilityError(f"{name} needs the domain's search operators (mutate, crossover); this task has none")
        self.cfg, self.ctx, self.name = config, context, name
        self.generator = torch.Generator().manual_seed(context.seed)
        self.data = Feedback()

    def schedule(self, rounds: list[int]) -> list[int]:
        """Generations of `offspring` children spending the benchmark's whole budget."""
        full, rest = divmod(sum(rounds), self.cfg.offspring)
        return [self.cfg.offspring] * full + [rest] * bool(rest)

    def propose(self, model: DiffusionModel, n: int, round: int) -> Proposal:
        members, scores = self.population()
        if not members:  # the first generation, or nothing feasible yet: the pretrained model's samples
            return super().propose(model, n, round)
        # GB-GA's mating pool: probability proportional to score plus 1e-10 (PMO's scores lie in
        # [0, 1]); a task with negative rewards is shifted so that its lowest member scores 0.
        weights = scores - min(float(scores.min()), 0.0) + 1e-10
        pool = torch.multinomial(torch.as_tensor(weights), 2 * n, replacement=True, generator=self.generator)
        parents = [members[i] for i in pool.tolist()]
        children = self.ctx.operators.crossover(parents[:n], parents[n:], self.generator)
        return Proposal(self.ctx.operators.mutate(children, self.cfg.mutation_rate, self.generator))

    def population(self) -> tuple[list[Any], np.ndarray]:
        """The best `population` feasible designs measured so far, best first, and their rewards."""
        ok = np.flatnonzero(self.data.feasible)
        best: dict[Any, float] = {}
        for i in ok[np.argsort(-self.data.reward[ok], kind="stable")]:
            best.setdefault(self.data.designs[i], float(self.data.reward[i]))
            if len(best) == self.cfg.population:
                break
        return list(best), np.array(list(best.values()))

    def update(self, model: DiffusionModel, data: Feedback, round: int) -> dict[str, float]:
        self.data = data
        return {"population": float(len(self.population()[0]))}


VARIANTS = {
    "graph-ga": Variant(GraphGA, GraphGAConfig,
                        "GB-GA as in PMO: score-proportional mating pool, generations of its own size"),
}
