"""Best-of-N and the genetic algorithm: search methods that never fine-tune."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from algorithms.method import Context, Feedback
from algorithms.registry import build_method
from domains.base import CapabilityError
from domains.sequences.featuriser import SequenceFeaturiser
from domains.sequences.mdlm import MaskedDiffusionModel, MDLMConfig
from domains.sequences.operators import StringOperators

CFG = MDLMConfig(alphabet="ACDE", length=6, num_steps=6, d_model=16, n_layers=1, n_heads=2)


def context(operators: bool = True) -> Context:
    ops = StringOperators(CFG.alphabet, CFG.length) if operators else None
    return Context(SequenceFeaturiser(CFG.alphabet, CFG.length), 0.0, seed=0, operators=ops)


def model() -> MaskedDiffusionModel:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return MaskedDiffusionModel(CFG)


def feedback(designs: list[str], reward: list[float], feasible: list[bool]) -> Feedback:
    data = Feedback()
    data.add(designs, np.where(feasible, reward, np.nan), np.array(feasible), round=1)
    return data


def test_genetic_without_operators_fails_before_any_query_naming_the_capability():
    with pytest.raises(CapabilityError, match="search operators"):
        build_method("genetic", context(operators=False))


def test_genetic_first_round_samples_the_pretrained_model():
    ga = build_method("genetic", context())
    designs = ga.propose(model(), 8, round=1).designs
    assert len(designs) == 8 and all(len(d) == CFG.length for d in designs)


def test_genetic_breeds_only_from_the_best_feasible_designs():
    ga = build_method("genetic", context(), {"elite": 2, "mutation_rate": 0.0, "crossover_prob": 0.0})
    data = feedback(["AAAAAA", "CCCCCC", "DDDDDD", "EEEEEE"], [3.0, 2.0, 1.0, 9.0], [True, True, True, False])
    ga.update(model(), data, round=1)
    children = ga.propose(model(), 50, round=2).designs
    assert set(children) == {"AAAAAA", "CCCCCC"}  # the infeasible 9.0 and the third-best are not parents


def test_genetic_crossover_mixes_parents_position_by_position():
    ga = build_method("genetic", context(), {"elite": 2, "mutation_rate": 0.0, "crossover_prob": 1.0})
    ga.update(model(), feedback(["AAAAAA", "CCCCCC"], [1.0, 2.0], [True, True]), round=1)
    children = ga.propose(model(), 50, round=2).designs
    assert all(set(c) <= {"A", "C"} for c in children)
    assert any(len(set(c)) == 2 for c in children)


def test_graph_ga_draws_parents_in_proportion_to_score_from_its_best_feasible_designs():
    ga = build_method("graph-ga", context(), {"population": 3, "mutation_rate": 0.0})
    first = ga.propose(model(), 6, round=1).designs  # the first generation: the pretrained model's samples
    assert len(first) == 6 and all(len(d) == CFG.length for d in first)
    data = feedback(["AAAAAA", "CCCCCC", "DDDDDD", "EEEEEE", "AAAAAA"],
                    [3.0, 1.0, 0.0, 9.0, 3.0], [True, True, True, False, True])
    ga.update(model(), data, round=1)
    assert ga.population()[0] == ["AAAAAA", "CCCCCC", "DDDDDD"]  # feasible, best first, repeats once
    # Every child is a crossover of two pool members: a letter comes from A (weight 3/4) or C (1/4); D scores 0.
    children = ga.propose(model(), 2000, round=2).designs
    letters = "".join(children)
    assert set(letters) == {"A", "C"}
    assert abs(letters.count("A") / len(letters) - 0.75) < 0.03


def test_graph_ga_runs_generations_of_its_own_size_whatever_the_rounds():
    ga = build_method("graph-ga", context())
    assert ga.schedule([100, 200, 300, 400]) == [70] * 14 + [20]
    assert build_method("graph-ga", context(), {"offspring": 50}).schedule([100, 200]) == [50] * 6


def test_best_of_n_has_no_learned_reward_and_samples_the_model():
    method = build_method("best-of-n", context())
    assert len(method.propose(model(), 5, round=1).designs) == 5
    assert method.update(model(), Feedback(), round=1) == {} and method.predict(["AAAAAA"]) is None


def test_screening_proposes_the_pretraining_data_and_needs_it():
    def data(n: int, generator: torch.Generator) -> tuple[torch.Tensor, None]:
        return torch.zeros(n, CFG.length, dtype=torch.long), None  # every training design is "AAAAAA"

    method = build_method("screening", Context(SequenceFeaturiser(CFG.alphabet, CFG.length), 0.0, seed=0,
                                               pretraining_data=data))
    assert method.propose(model(), 5, round=1).designs == ["AAAAAA"] * 5
    with pytest.raises(CapabilityError, match="pretraining data"):
        build_method("screening", context())
