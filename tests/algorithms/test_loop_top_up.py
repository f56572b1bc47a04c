"""The loop tops a round up when repeats, answered free from the oracle's cache,
left it short of its queries: a bounded number of times, under the same round,
with a policy-gradient method's kept trajectories still row for row its feedback."""

from __future__ import annotations

import numpy as np
import torch

from algorithms.budgeted_oracle import BudgetedOracle
from algorithms.loop import TOP_UPS, run
from algorithms.method import Context, Feedback, Proposal, SamplingMethod
from algorithms.methods.ddpo import DDPO
from algorithms.methods.genetic import Genetic, GeneticConfig
from algorithms.registry import resolve_config
from domains.base import OracleOutput
from domains.sequences.featuriser import SequenceFeaturiser
from domains.sequences.mdlm import MaskedDiffusionModel, MDLMConfig
from domains.sequences.operators import StringOperators

CFG = MDLMConfig(alphabet="ACDE", length=6, num_steps=6, d_model=16, n_layers=1, n_heads=2)
ROUNDS = [8, 8]


class CountA:
    """Reward = number of 'A's, every design feasible; `key_length` letters make a design's key."""

    name = "count-a"
    floor = 0.0
    optimum = None

    def __init__(self, key_length: int | None = None):
        self.key_length = key_length

    def __call__(self, designs):
        return OracleOutput(np.array([float(d.count("A")) for d in designs]), np.ones(len(designs), bool))

    def key(self, design):
        return design[: self.key_length]


class Repeater(SamplingMethod):
    """Proposes one design n times first in every round; after that, fresh designs
    (or, with `stubborn`, the same design again). Records every proposal."""

    requires = ()

    def __init__(self, stubborn: bool = False):
        self.name, self.stubborn = "repeater", stubborn
        self.proposals: list[tuple[int, int]] = []  # (round, designs asked)
        self.fresh = 0

    def propose(self, model, n: int, round: int) -> Proposal:
        first = all(r != round for r, _ in self.proposals)
        self.proposals.append((round, n))
        if first or self.stubborn:
            return Proposal(["AAAAAA"] * n)
        self.fresh += n
        return Proposal([f"fresh-{i}" for i in range(self.fresh - n, self.fresh)])

    def update(self, model, data: Feedback, round: int) -> dict[str, float]:
        return {}


def charged_per_round(oracle: BudgetedOracle) -> list[int]:
    log = oracle.log()
    return [int(log.loc[log["round"] == r, "charged"].sum()) for r in range(1, len(ROUNDS) + 1)]


def test_a_round_short_of_its_queries_is_topped_up_to_them():
    method = Repeater()
    oracle = BudgetedOracle(CountA(), sum(ROUNDS), method="repeater", seed=0)
    records = run(method, object(), oracle, ROUNDS, floor=0.0)
    assert charged_per_round(oracle) == ROUNDS
    assert [r.queries_used for r in records] == [0, 8, 16]
    # round 1: one new design bought, the 7 others asked again; round 2: the repeat is cached
    assert method.proposals == [(1, 8), (1, 7), (2, 8), (2, 8)]


def test_a_method_that_only_repeats_itself_ends_its_rounds_short_after_the_top_ups():
    method = Repeater(stubborn=True)
    oracle = BudgetedOracle(CountA(), sum(ROUNDS), method="repeater", seed=0)
    records = run(method, object(), oracle, ROUNDS, floor=0.0)
    assert charged_per_round(oracle) == [1, 0]
    assert [r.queries_used for r in records] == [0, 1, 1]
    assert method.proposals == [(1, 8)] + [(1, 7)] * TOP_UPS + [(2, 8)] * (1 + TOP_UPS)
    assert len(oracle.log()) == 8 + 7 * TOP_UPS + 8 * (1 + TOP_UPS)  # every answer, cached ones too, is logged


def test_top_ups_are_bounded_by_the_setting():
    method = Repeater(stubborn=True)
    run(method, object(), BudgetedOracle(CountA(), sum(ROUNDS), method="repeater", seed=0), ROUNDS, floor=0.0,
        top_ups=1)
    assert [r for r, _ in method.proposals] == [1, 1, 2, 2]


def tiny_model() -> MaskedDiffusionModel:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return MaskedDiffusionModel(CFG)


def test_policy_gradient_trajectories_line_up_with_a_topped_up_rounds_feedback():
    """A key of the first letter alone: at most 4 designs are ever charged, so every
    round is topped up, and the kept trajectories must follow all its proposals."""
    model = tiny_model()
    method = DDPO(resolve_config("ddpo-is", {"batch_size": 16, "inner_epochs": 1}),
                  Context(SequenceFeaturiser(CFG.alphabet, CFG.length), 0.0, seed=0))
    rows_seen: list[tuple[int, int]] = []
    update = method.update

    def checked(model, data, round):
        latest, _ = data.round_scores(round, 0.0)
        assert model.decode(method.trajectory.states[-1]) == [data.designs[i] for i in latest]
        rows_seen.append((len(latest), len(method.trajectory.log_probs)))
        return update(model, data, round)

    method.update = checked
    oracle = BudgetedOracle(CountA(key_length=1), sum(ROUNDS), method="ddpo-is", seed=0)
    run(method, model, oracle, ROUNDS, floor=0.0)
    assert len(rows_seen) == len(ROUNDS)
    for (feedback_rows, trajectory_rows), n in zip(rows_seen, ROUNDS):
        assert feedback_rows == trajectory_rows > n  # topped up, and every episode kept


def test_genetic_proposes_again_in_the_same_round_from_the_same_parents():
    """Children of few parents at a low mutation rate often repeat a measured design:
    the top-ups breed further children and the round still charges its queries."""
    method = Genetic(GeneticConfig(elite=2, mutation_rate=0.2),
                     Context(SequenceFeaturiser(CFG.alphabet, CFG.length), 0.0, seed=0,
                             operators=StringOperators(CFG.alphabet, CFG.length)))
    proposals = []
    propose = method.propose

    def counted(model, n, round):
        proposals.append(round)
        return propose(model, n, round)

    method.propose = counted
    oracle = BudgetedOracle(CountA(), sum(ROUNDS), method="genetic", seed=0)
    run(method, tiny_model(), oracle, ROUNDS, floor=0.0)
    assert proposals.count(2) > 1  # round 2 was topped up
    assert charged_per_round(oracle) == ROUNDS
    assert oracle.log()["round"].tolist() == sorted(oracle.log()["round"].tolist())
