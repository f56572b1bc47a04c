"""What a method is: a (propose, update) pair that `algorithms.loop` runs.

A method never calls the oracle and never loops over rounds itself: the loop
hands it the feedback bought so far (`Feedback`) and asks for the next designs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from algorithms.parallel import ONE_PROCESS, Ranks
from domains.base import (
    CapabilityError,
    DiffusionModel,
    Featuriser,
    Operators,
    SampleOutput,
    Task,
    Trajectory,
    cat_states,
)


@dataclass
class Context:
    """What a method may know of its task besides the model it is given."""

    featuriser: Featuriser
    floor: float  # what an infeasible design is worth: the reward-model target for it
    seed: int
    operators: Operators | None = None  # the domain's search moves, if it has them
    pretraining_data: Callable[[int, torch.Generator], tuple[torch.Tensor, torch.Tensor | None]] | None = None
    """n clean samples (and their conditions) of the data the model was pretrained on, if the domain has it."""
    ranks: Ranks = field(default_factory=Ranks)
    """The processes the cell runs on, and the pieces a batch is cut into (`algorithms.parallel`)."""
    key: Callable[[Any], str] | None = None
    """The oracle's canonical key of a design: two designs with one key are one measurement."""

    @classmethod
    def from_task(cls, task: Task, seed: int, ranks: Ranks | None = None) -> Context:
        """Everything a method may know of `task`: its featuriser, floor, search moves, pretraining
        data and which designs the oracle counts as one."""
        return cls(task.featuriser, task.oracle.floor, seed, task.operators, task.pretraining_data, ranks or Ranks(),
                   task.oracle.key)


@dataclass(frozen=True)
class Variant:
    """A registered method name: the class that runs it, its config class and
    the settings that make this variant (laid under a spec's own settings).
    Each method module declares its variants beside the method (`VARIANTS`)."""

    cls: type
    config_cls: type
    summary: str
    defaults: dict[str, Any] = field(default_factory=dict)


@dataclass
class Proposal:
    """Designs to measure this round."""

    designs: list[Any]
    trajectory: Trajectory | None = None  # kept by policy-gradient methods


@dataclass
class Feedback:
    """All feedback bought so far, in the order asked (repeats included)."""

    designs: list[Any] = field(default_factory=list)
    reward: np.ndarray = field(default_factory=lambda: np.empty(0))  # NaN where infeasible
    feasible: np.ndarray = field(default_factory=lambda: np.empty(0, bool))
    round: np.ndarray = field(default_factory=lambda: np.empty(0, int))

    def add(self, designs: list[Any], reward: np.ndarray, feasible: np.ndarray, round: int) -> None:
        self.designs += list(designs)
        self.reward = np.concatenate([self.reward, reward])
        self.feasible = np.concatenate([self.feasible, feasible])
        self.round = np.concatenate([self.round, np.full(len(designs), round)])

    def targets(self, floor: float) -> torch.Tensor:
        """Rewards with infeasible designs at the floor: a reward model trained on
        these learns to stay feasible, because leaving the feasible set costs."""
        return torch.as_tensor(np.where(self.feasible, self.reward, floor), dtype=torch.float32)

    def round_scores(self, round: int, floor: float) -> tuple[np.ndarray, np.ndarray]:
        """(positions, scores) of one round's queries, in the order proposed, with
        infeasible designs at the floor: what on-policy methods learn from."""
        rows = np.flatnonzero(self.round == round)
        return rows, np.where(self.feasible[rows], self.reward[rows], floor)

    def __len__(self) -> int:
        return len(self.designs)


class Method(Protocol):
    """A fine-tuning (or search) method, as run by `algorithms.loop.run`."""

    name: str
    requires: tuple[str, ...]
    """The `DiffusionModel` methods this method calls: checked before any query."""

    def schedule(self, rounds: list[int]) -> list[int]:
        """Queries per round for this method, given the benchmark's schedule."""
        ...

    def check(self, model: DiffusionModel, schedule: list[int]) -> None:
        """Refuse, before any query, settings that `model` or the schedule cannot meet."""
        ...

    def begin_round(self, model: DiffusionModel, round: int) -> None:
        """Called once at the start of each round, before its first proposal (the
        loop may ask for more proposals in a round whose repeats were free)."""
        ...

    def propose(self, model: DiffusionModel, n: int, round: int) -> Proposal:
        """The designs to measure next: n of them, or the rest of the round's queries."""
        ...

    def draw(self, model: DiffusionModel, n: int, generator: torch.Generator) -> SampleOutput:
        """How this method generates designs from its model: what held-out evaluation scores."""
        ...

    def update(self, model: DiffusionModel, data: Feedback, round: int) -> dict[str, float]:
        """Learn from all feedback so far; returns diagnostics for the round record."""
        ...

    def predict(self, designs: list[Any]) -> np.ndarray | None:
        """The method's learned reward of designs (None if it has none)."""
        ...

    def predict_value(self, designs: list[Any]) -> np.ndarray | None:
        """The learned value of designs taken as feasible (None without a reward model)."""
        ...


def check_capabilities(method: Method, model: DiffusionModel) -> None:
    """Raise `CapabilityError` naming what `model` lacks for `method` (before any query)."""
    missing = [name for name in method.requires if not callable(getattr(model, name, None))]
    if missing:
        raise CapabilityError(f"{method.name} needs the model's {', '.join(missing)}, which "
                              f"{type(model).__name__} does not have")


def sample_in_chunks(draw: Callable[[int, torch.Generator], SampleOutput], n: int, generator: torch.Generator,
                     ranks: Ranks = ONE_PROCESS, chunk: int = 256) -> SampleOutput:
    """n designs drawn by `draw(k, generator)` in chunks of at most `chunk`, so
    that an 8,192-query round fits in memory; kept trajectories are joined
    along the batch. Each rank draws its pieces of the batch (`Ranks.pieces`)
    and every rank gets them all."""

    def piece(rows: range, piece_generator: torch.Generator) -> list[SampleOutput]:
        return [draw(min(chunk, len(rows) - i), piece_generator) for i in range(0, len(rows), chunk)]

    outs = [out for part in ranks.gather([piece(*p) for p in ranks.pieces(n, generator)], n) for out in part]
    trajectory = None if outs[0].trajectory is None else cat_trajectories([o.trajectory for o in outs])
    return SampleOutput(cat_states([o.x for o in outs]), [d for o in outs for d in o.designs], trajectory)


def cat_trajectories(parts: list[Trajectory]) -> Trajectory:
    """Trajectories of the same sampler joined along the batch, rows in the order given."""
    return Trajectory(
        [cat_states(states) for states in zip(*(t.states for t in parts))],
        torch.cat([t.log_probs for t in parts]),
        None if parts[0].condition is None else torch.cat([t.condition for t in parts]),
    )


class SamplingMethod:
    """Shared defaults: the benchmark's schedule as given, and proposals that
    are fresh samples of the current model drawn with the method's generator."""

    generator: torch.Generator
    ctx: Context
    requires: tuple[str, ...] = ("sample",)

    def schedule(self, rounds: list[int]) -> list[int]:
        return list(rounds)

    def draw(self, model: DiffusionModel, n: int, generator: torch.Generator) -> SampleOutput:
        return sample_in_chunks(lambda k, g: model.sample(k, generator=g), n, generator, self.ctx.ranks)

    def begin_round(self, model: DiffusionModel, round: int) -> None:
        """Nothing to set up: most methods propose from the model as it stands."""

    def propose(self, model: DiffusionModel, n: int, round: int) -> Proposal:
        return Proposal(self.draw(model, n, self.generator).designs)

    def check(self, model: DiffusionModel, schedule: list[int]) -> None:
        """Refuse, before any query, settings that `model` or this method's `schedule` cannot meet."""

    def predict(self, designs: list[Any]) -> np.ndarray | None:
        return None  # no learned reward, unless a method fits one

    def predict_value(self, designs: list[Any]) -> np.ndarray | None:
        """The learned value of designs taken as feasible (None without a reward model)."""
        return None
