"""Several oracles as one: the multi-reward objective of Zhang et al. 2024.

"Large-scale Reinforcement Learning for Diffusion Models" trains one model on
several rewards at once. Here that is a task whose oracle is a weighted sum of
component oracles, so every method, not only theirs, can be run on it. One
measurement of a design calls every component once: the budget counts
measurements (as for any task), and the query log records each component's
reward and the number of component calls, so every oracle call is accounted for.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from domains.base import Oracle, OracleOutput


class WeightedSum:
    """sum_i w_i * r_i(x), feasible where every component is feasible."""

    def __init__(self, components: Sequence[tuple[Oracle, float]], *, optimum: float | None = None):
        if len(components) < 2:
            raise ValueError(f"a weighted sum needs at least two oracles, got {len(components)}")
        names = [oracle.name for oracle, _ in components]
        if len(set(names)) != len(names):
            raise ValueError(f"component oracles must have distinct names, got {names}")
        if any(weight <= 0 for _, weight in components):
            raise ValueError("component weights must be > 0 (a floor is only a floor under positive weights)")
        self.components = list(components)
        self.name = " + ".join(f"{weight:g}*{oracle.name}" for oracle, weight in components)
        self.floor = float(sum(weight * oracle.floor for oracle, weight in components))
        self.optimum = optimum  # sum of the optima only where one design attains them all
        self.calls_per_design = len(components)

    def __call__(self, designs: Sequence[Any]) -> OracleOutput:
        outs = [oracle(designs) for oracle, _ in self.components]
        feasible = np.logical_and.reduce([np.asarray(out.feasible, bool) for out in outs])
        total = sum(weight * np.asarray(out.reward, np.float64) for out, (_, weight) in zip(outs, self.components))
        return OracleOutput(
            reward=np.where(feasible, total, np.nan),
            feasible=feasible,
            components={oracle.name: np.asarray(out.reward, np.float64) for out, (oracle, _) in zip(outs, self.components)},
        )

    def reasons(self, designs: Sequence[Any]) -> list[str | None]:
        """Each design's first refusal among the components that say why (None where none refused)."""
        said = [oracle.reasons(designs) for oracle, _ in self.components if hasattr(oracle, "reasons")]
        return [next((r for r in why if r is not None), None) for why in zip(*said)] if said else [None] * len(designs)

    def key(self, design: Any) -> str:
        return self.components[0][0].key(design)
