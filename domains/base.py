"""The protocols every domain implements and every method sees.

Algorithms import a domain only through this module: a diffusion model (the
policy being fine-tuned), an oracle (the costly, feasibility-aware measurement)
and a featuriser (designs to reward-model features). A `Task` bundles the three
with the per-task settings of the budget. Nothing here knows a method.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import torch


class CapabilityError(RuntimeError):
    """A model lacks something a method needs (raised before any query is spent)."""


@runtime_checkable
class Batch(Protocol):
    """A batch of model states that is not one tensor (a graph: node types and
    an adjacency tensor, each with the batch first). Methods never look inside
    a state: they only join batches (`cat_states`) and pick rows (`index_states`),
    so a model whose state is a `Batch` runs every method without special cases."""

    def __len__(self) -> int: ...

    def __getitem__(self, rows: torch.Tensor) -> Batch: ...

    @classmethod
    def cat(cls, parts: Sequence[Batch]) -> Batch: ...


State = torch.Tensor | Batch
"""What a model's `sample`, `encode` and trajectories hold: a tensor with the
batch first, or a `Batch`."""


def cat_states(parts: Sequence[State]) -> State:
    """Join batches of states along the batch."""
    if isinstance(parts[0], torch.Tensor):
        return torch.cat(list(parts))
    return type(parts[0]).cat(parts)


def index_states(x: State, rows: torch.Tensor) -> State:
    """The given rows (a long tensor of indices) of a batch of states."""
    return x[rows]


@dataclass
class Trajectory:
    """A kept reverse trajectory x_T -> x_0 with the sampler's own step log-probs.

    `states[i]` is the state before step i (so `states[0]` is x_T and
    `states[-1]` is x_0); `log_probs[:, i]` is log p_theta(states[i+1] | states[i])
    as computed while sampling (no gradient). Policy-gradient methods recompute
    it with gradients through `DiffusionModel.log_prob`.
    """

    states: list[State]
    log_probs: torch.Tensor  # (N, T)
    condition: torch.Tensor | None = None  # (N, ...) or None for unconditional models

    @property
    def num_steps(self) -> int:
        return len(self.states) - 1


@dataclass
class SampleOutput:
    """Designs drawn from a diffusion model, without gradients."""

    x: State  # (N, ...) final samples in the model's own representation
    designs: list[Any]  # the same samples decoded: what an oracle scores
    trajectory: Trajectory | None = None  # kept only when asked for


@dataclass
class DifferentiableSample:
    """Samples whose relaxed representation carries gradients to the trainable
    parameters through the last K reverse steps (direct reward back-propagation).
    """

    x: torch.Tensor  # (N, ...) relaxed sample, the input of `Featuriser.relaxed`
    designs: list[Any]  # hard decoded designs (no gradient)
    kl: torch.Tensor  # (N, T) per-step KL(this model || reference) along this trajectory; zeros without a reference


@runtime_checkable
class DiffusionModel(Protocol):
    """The policy. One small interface for a DDIM image model, a masked discrete
    sequence model and a graph diffusion model alike."""

    num_steps: int

    def sample(
        self, n: int, *, generator: torch.Generator, keep_trajectory: bool = False, condition: torch.Tensor | None = None
    ) -> SampleOutput: ...

    def log_prob(self, trajectory: Trajectory, steps: Sequence[int] | None = None) -> torch.Tensor:
        """(N, len(steps)) log p_theta(states[i+1] | states[i]) with gradients."""
        ...

    def kl(self, trajectory: Trajectory, reference: DiffusionModel) -> torch.Tensor:
        """(N, T) per-step KL(self || reference) of the step distributions along
        the given trajectory, differentiable in this model's parameters."""
        ...

    def sample_with_grad(
        self,
        n: int,
        *,
        generator: torch.Generator,
        last_k: int,
        reference: DiffusionModel | None = None,
        condition: torch.Tensor | None = None,
        kl_steps: Collection[int] | None = None,
        num_steps: int | None = None,
    ) -> DifferentiableSample:
        """n samples whose last `last_k` reverse steps carry gradients to the parameters, with
        the per-step KL to `reference` (N, T) at the visited states: every step's, or only
        those in `kl_steps` (the others' columns zero, their anchor calls skipped). `num_steps`:
        a coarser reverse process than the model's own, for a model whose network serves any
        T (masked models); a model that cannot raises ValueError."""
        ...

    def sample_guided(
        self,
        n: int,
        *,
        generator: torch.Generator,
        guide: Callable[[torch.Tensor], torch.Tensor],
        scale: float,
        condition: torch.Tensor | None = None,
    ) -> SampleOutput:
        """Samples steered, step by step, by the gradient of `guide` (classifier
        guidance with a reward). `guide` maps the model's current prediction of
        the clean sample, in the representation of `DifferentiableSample.x`,
        to (N,) rewards; each model states how it turns the gradient into a step."""
        ...

    def denoising_loss(
        self,
        x0: State,
        *,
        generator: torch.Generator,
        weights: torch.Tensor | None = None,
        condition: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The pretraining objective on clean samples x0 (with their conditions,
        for conditional models), optionally weighted per sample."""
        ...

    def conditions(self, designs: Sequence[Any]) -> torch.Tensor | None:
        """The condition each design was generated for (None for unconditional
        models): what `denoising_loss` needs besides `encode(designs)`."""
        ...

    def trainable_parameters(self) -> list[torch.nn.Parameter]: ...

    def frozen_copy(self) -> DiffusionModel:
        """A deep copy with gradients off: the KL anchor of a round."""
        ...

    def encode(self, designs: Sequence[Any]) -> State: ...

    def decode(self, x: State) -> list[Any]: ...

    def save(self, path: str | Path) -> None: ...


@dataclass
class OracleOutput:
    """What an oracle says of a batch: reward (NaN where infeasible) and feasibility."""

    reward: np.ndarray  # (N,) float64, NaN exactly where not feasible
    feasible: np.ndarray  # (N,) bool
    components: dict[str, np.ndarray] = field(default_factory=dict)
    """Each component oracle's reward, for an oracle that combines several
    (`domains.composite.WeightedSum`): the query log keeps every one."""


@runtime_checkable
class Oracle(Protocol):
    """A costly measurement. A pure function of the design: the same design always
    gets the same answer, which is what lets the budgeted oracle cache repeats."""

    name: str
    floor: float  # the value an infeasible design counts as in the final-value metric
    optimum: float | None  # the known maximum, where there is one
    # An oracle that calls k others per design (a weighted sum) says so in an
    # optional `calls_per_design = k`; the budgeted oracle logs the calls.

    def __call__(self, designs: Sequence[Any]) -> OracleOutput: ...

    def key(self, design: Any) -> str:
        """Canonical key: two designs with the same key are the same measurement."""
        ...


@runtime_checkable
class Featuriser(Protocol):
    """Designs, and relaxed differentiable samples, to reward-model features."""

    dim: int
    # Optional: `hazard_columns`, a slice of the features that can make a design
    # infeasible (a banned bigram's count, an atom's excess valence): the
    # feasibility model reads only those. Without it, it reads every feature.

    def __call__(self, designs: Sequence[Any]) -> torch.Tensor:
        """(N, dim) float features of hard designs."""
        ...

    def relaxed(self, x: torch.Tensor) -> torch.Tensor:
        """(N, dim) features of `DifferentiableSample.x`, differentiable in x."""
        ...


@runtime_checkable
class Operators(Protocol):
    """Search moves on a domain's designs, for genetic algorithms: they keep the
    design well-formed (alphabet and length for sequences)."""

    def mutate(self, designs: Sequence[Any], rate: float, generator: torch.Generator) -> list[Any]: ...

    def crossover(self, a: Sequence[Any], b: Sequence[Any], generator: torch.Generator) -> list[Any]: ...


@dataclass
class Task:
    """One benchmark task: an oracle, a featuriser and a pretrained model to start from.

    A task is what a user writes to bring their own model and oracle: a function
    that returns a `Task` (any parameters it takes come from the spec) is named
    in a spec by import path, `my_package.my_tasks:make_task` or
    `path/to/my_tasks.py:make_task`, and runs through `seiko-bench run` like a
    shipped one (README, 'Your own task'). The factory is called once to check
    the spec and once in each cell's process, so it should be cheap and
    deterministic: load weights in `load_model`, not in the factory.
    """

    name: str
    domain: str
    description: str
    oracle: Oracle
    featuriser: Featuriser
    load_model: Callable[[], DiffusionModel]
    charge_infeasible: bool = True  # infeasible queries cost budget (PMO makes them free)
    operators: Operators | None = None  # search moves, for methods that search designs directly
    pretraining_data: Callable[[int, torch.Generator], tuple[torch.Tensor, torch.Tensor | None]] | None = None
    """n fresh clean samples (encoded, with conditions or None) of what the model was pretrained on."""
    render: Callable[[Sequence[Any], Sequence[str]], np.ndarray] | None = None
    """Designs to one uint8 picture (a grid of images), for domains people would rather look at, with a
    label for each (the runner passes the held-out samples' oracle rewards, or "infeasible")."""
    draw_keys: Callable[[Sequence[str], Sequence[str]], np.ndarray] | None = None
    """The best designs a run measured, drawn from their cache keys with a label under each (molecules:
    structures from canonical SMILES), for domains whose key is the design itself."""
    design_metrics: Callable[[Sequence[str]], dict[str, float]] | None = None
    """What a domain reports of the best designs a run measured, from their cache keys (the top 10
    by reward): diversity and novelty for molecules, as PMO reports them beside the AUC."""
    info: dict[str, Any] = field(default_factory=dict)  # task parameters, for manifests
    evaluation: Oracle | Literal["oracle"] | None = "oracle"
    """What scores the held-out samples of every round (uncharged, but counted):
    "oracle" (the task's own oracle: right for synthetic tasks, where a call
    is free), another `Oracle` (a cheap proxy of a lab's assay), or None (no
    held-out evaluation: the lab's oracle is too costly to call outside the budget)."""


class DomainModule(Protocol):
    """What a module of shipped tasks provides (`domains/sequences/tasks.py`,
    `domains/images/tasks.py`); `domains.tasks` lists them. A user's own task
    needs none of this: a factory function returning a `Task` is enough."""

    DOMAIN: str
    """The domain's name, as leaderboards group tasks."""
    TASKS: dict[str, Any]
    """Task name -> its fixed parameters."""

    def build(self, name: str, **params: Any) -> Task:
        """The task `name`; `params` are the spec's task parameters (most shipped tasks take none)."""
        ...

    def pretrain(self, name: str, **kwargs: Any) -> dict[str, Any]:
        """Make the task's shipped checkpoint; returns the pretraining report."""
        ...


class UnknownName(ValueError):
    """A task, method or domain name that is not registered; suggests the closest."""

    def __init__(self, kind: str, name: str, choices: Sequence[str]):
        import difflib

        close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(sorted(choices))}"
        super().__init__(f"unknown {kind} {name!r}{hint}")
