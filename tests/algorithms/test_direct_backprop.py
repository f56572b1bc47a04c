"""Direct back-propagation proposes designs it has not proposed before: its model has no KL
anchor and collapses onto a few designs, whose repeats the oracle answers free."""

from __future__ import annotations

import pytest
import torch

from algorithms.method import Context
from algorithms.registry import build_method
from domains.sequences.featuriser import SequenceFeaturiser
from domains.sequences.mdlm import MaskedDiffusionModel, MDLMConfig

CFG = MDLMConfig(alphabet="AC", length=2, num_steps=2, d_model=16, n_layers=1, n_heads=2)
"""Four designs in all: plain samples of three repeat one another often."""


def method(name: str, key=str, **settings):
    return build_method(name, Context(SequenceFeaturiser(CFG.alphabet, CFG.length), 0.0, seed=0, key=key), settings)


@pytest.fixture
def model() -> MaskedDiffusionModel:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return MaskedDiffusionModel(CFG)


def test_proposals_are_new_designs_while_there_are_any_then_repeats(model):
    plain = method("greedy").propose(model, 3, 1).designs
    assert len(set(plain)) < 3  # what sampling alone proposes here: a repeat among three
    backprop = method("direct-backprop")
    first, second, third = (backprop.propose(model, 3, r).designs for r in (1, 1, 2))
    assert len(set(first)) == 3
    assert len(second) == 3 and second[0] not in first and set(first) | {second[0]} == {"AA", "AC", "CA", "CC"}
    assert len(third) == 3 and set(third) <= set(first) | set(second)  # nothing new is left: repeats


def test_without_a_design_key_it_is_refused_before_any_query(model):
    with pytest.raises(ValueError, match="direct-backprop: its context names no design key"):
        method("direct-backprop", key=None).check(model, [16, 32])
