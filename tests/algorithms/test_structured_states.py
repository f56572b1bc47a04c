"""A model whose state is not one tensor (a pair, as a graph's nodes and edges
would be) runs the methods that join and index states, with no special case."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from algorithms import loop
from algorithms.budgeted_oracle import BudgetedOracle
from algorithms.method import Context, sample_in_chunks
from algorithms.registry import build_method
from domains.base import Batch, OracleOutput, SampleOutput, Trajectory, cat_states, index_states

STD = 0.5


@dataclass
class Pair:
    """Two tensors with the batch first: a stand-in for (node types, adjacency)."""

    a: torch.Tensor  # (N, 2)
    b: torch.Tensor  # (N, 3, 3)

    def __len__(self) -> int:
        return len(self.a)

    def __getitem__(self, rows: torch.Tensor) -> Pair:
        return Pair(self.a[rows], self.b[rows])

    @classmethod
    def cat(cls, parts: Sequence[Pair]) -> Pair:
        return Pair(torch.cat([p.a for p in parts]), torch.cat([p.b for p in parts]))


class PairModel(torch.nn.Module):
    """Three Gaussian steps x_{t+1} = x_t + theta + STD * eps on both parts."""

    num_steps = 3

    def __init__(self):
        super().__init__()
        self.theta_a = torch.nn.Parameter(torch.zeros(2))
        self.theta_b = torch.nn.Parameter(torch.zeros(3, 3))

    def _step_log_prob(self, x: Pair, y: Pair) -> torch.Tensor:
        da, db = y.a - x.a - self.theta_a, y.b - x.b - self.theta_b
        return -(da.pow(2).sum(1) + db.pow(2).sum((1, 2))) / (2 * STD**2)

    def sample(self, n, *, generator, keep_trajectory=False, condition=None) -> SampleOutput:
        x = Pair(torch.zeros(n, 2), torch.zeros(n, 3, 3))
        states, log_probs = [x], []
        with torch.no_grad():
            for _ in range(self.num_steps):
                y = Pair(x.a + self.theta_a + STD * torch.randn(n, 2, generator=generator),
                         x.b + self.theta_b + STD * torch.randn(n, 3, 3, generator=generator))
                log_probs.append(self._step_log_prob(x, y))
                states.append(y)
                x = y
        trajectory = Trajectory(states, torch.stack(log_probs, 1)) if keep_trajectory else None
        return SampleOutput(x, self.decode(x), trajectory)

    def log_prob(self, trajectory: Trajectory, steps=None) -> torch.Tensor:
        steps = range(self.num_steps) if steps is None else steps
        return torch.stack([self._step_log_prob(trajectory.states[i], trajectory.states[i + 1]) for i in steps], 1)

    def denoising_loss(self, x0: Pair, *, generator, weights=None, condition=None) -> torch.Tensor:
        err = (x0.a - self.num_steps * self.theta_a).pow(2).sum(1) + (x0.b - self.num_steps * self.theta_b).pow(2).sum((1, 2))
        return (err if weights is None else weights * err).mean()

    def encode(self, designs) -> Pair:
        values = torch.tensor(designs, dtype=torch.float32)
        return Pair(values[:, :2], values[:, 2:].reshape(-1, 3, 3))

    def decode(self, x: Pair) -> list[tuple[float, ...]]:
        flat = torch.cat([x.a, x.b.flatten(1)], 1)
        return [tuple(round(v, 5) for v in row) for row in flat.tolist()]

    def conditions(self, designs):
        return None

    def trainable_parameters(self):
        return [self.theta_a, self.theta_b]


class Total:
    """Sum of all entries; every design feasible."""

    name, floor, optimum = "total", -100.0, None

    def __call__(self, designs):
        return OracleOutput(np.array([sum(d) for d in designs]), np.ones(len(designs), bool))

    def key(self, design):
        return repr(design)


class Flat:
    dim = 11

    def __call__(self, designs):
        return torch.tensor(designs, dtype=torch.float32)

    def relaxed(self, x):
        return torch.cat([x.a, x.b.flatten(1)], 1)


def test_a_pair_state_is_a_batch_and_joins_and_indexes():
    model = PairModel()
    out = model.sample(5, generator=torch.Generator().manual_seed(0))
    assert isinstance(out.x, Batch)
    joined = cat_states([out.x, out.x])
    assert len(joined) == 10 and torch.equal(joined.b[5:], out.x.b)
    picked = index_states(joined, torch.tensor([1, 6]))
    assert torch.equal(picked.a[0], picked.a[1])


def test_sampling_in_chunks_joins_pair_trajectories_in_order():
    model = PairModel()
    generator = torch.Generator().manual_seed(0)
    parts = [model.sample(k, generator=generator, keep_trajectory=True) for k in (3, 3, 3, 1)]
    chunked = sample_in_chunks(lambda k, g: model.sample(k, generator=g, keep_trajectory=True), 10,
                               torch.Generator().manual_seed(0), chunk=3)
    assert chunked.designs == [d for p in parts for d in p.designs]
    for i, state in enumerate(chunked.trajectory.states):
        assert torch.equal(state.b, torch.cat([p.trajectory.states[i].b for p in parts]))
    assert torch.equal(chunked.x.a, torch.cat([p.x.a for p in parts]))


def _run(method: str, settings: dict) -> PairModel:
    model = PairModel()
    oracle = BudgetedOracle(Total(), 96, method=method, seed=0)
    context = Context(Flat(), floor=Total.floor, seed=0)
    loop.run(build_method(method, context, settings), model, oracle, [32, 32, 32], floor=Total.floor)
    assert oracle.used == 96
    return model


def test_policy_gradient_on_pair_states_raises_the_reward():
    model = _run("ddpo-sf", {"lr": 0.05, "batch_size": 16})
    assert float((model.theta_a.sum() + model.theta_b.sum()).detach()) > 0.1  # it moved towards a larger total


def test_reward_weighted_regression_on_pair_states_raises_the_reward():
    model = _run("rwr", {"lr": 0.05, "batch_size": 16, "beta": 2.0})
    assert float((model.theta_a.sum() + model.theta_b.sum()).detach()) > 0.1
