"""Sequence features for reward models: position one-hots and bigram frequencies,
the same map for hard designs and for relaxed (differentiable) samples."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from domains.base import Featuriser
from domains.sequences.alphabet import encode
from domains.sequences.featuriser import OneHotBigramFeaturiser

ALPHABET, LENGTH = "ACDE", 6
V = len(ALPHABET)
DESIGNS = ["AACCDD", "ACACAC", "EEEEEE", "ADCEAD"]


@pytest.fixture
def featuriser() -> OneHotBigramFeaturiser:
    return OneHotBigramFeaturiser(ALPHABET, LENGTH)


def test_featuriser_satisfies_the_protocol(featuriser):
    assert isinstance(featuriser, Featuriser)


def test_dim_matches_the_features(featuriser):
    assert featuriser.dim == LENGTH * V + V * V
    features = featuriser(DESIGNS)
    assert features.shape == (len(DESIGNS), featuriser.dim)
    assert features.dtype == torch.float32


def test_relaxed_of_a_one_hot_equals_the_hard_features(featuriser):
    one_hot = F.one_hot(encode(DESIGNS, ALPHABET, LENGTH), V).float()
    assert torch.equal(featuriser.relaxed(one_hot), featuriser(DESIGNS))


def test_position_block_is_the_flattened_one_hot(featuriser):
    positions = featuriser(["ACDEAC"])[0, : LENGTH * V].reshape(LENGTH, V)
    assert positions.argmax(1).tolist() == [0, 1, 2, 3, 0, 1]
    assert (positions.sum(1) == 1).all()


def test_bigram_block_counts_transitions(featuriser):
    # "ACACAA": A->C twice, C->A twice, A->A once; raw counts, so that one
    # banned transition moves a feature as much as a one-hot does.
    bigrams = featuriser(["ACACAA"])[0, LENGTH * V :].reshape(V, V)
    expected = torch.zeros(V, V)
    a, c = ALPHABET.index("A"), ALPHABET.index("C")
    expected[a, c], expected[c, a], expected[a, a] = 2, 2, 1
    assert torch.allclose(bigrams, expected)


def test_banned_transition_shows_as_a_bigram_feature(featuriser):
    d = ALPHABET.index("D")
    with_dd = featuriser(["ADDCEA"])[0, LENGTH * V :].reshape(V, V)
    without = featuriser(["ADCDEA"])[0, LENGTH * V :].reshape(V, V)
    assert with_dd[d, d] > 0 and without[d, d] == 0


def test_gradient_flows_through_relaxed(featuriser):
    logits = torch.randn(3, LENGTH, V, generator=torch.Generator().manual_seed(0), requires_grad=True)
    x = torch.softmax(logits, -1)
    weights = torch.randn(featuriser.dim, generator=torch.Generator().manual_seed(1))
    (featuriser.relaxed(x) @ weights).sum().backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    assert logits.grad.abs().sum() > 0


def test_bad_design_is_a_value_error(featuriser):
    with pytest.raises(ValueError, match="letter 'B'"):
        featuriser(["AACCDB"])
    with pytest.raises(ValueError, match="length 3"):
        featuriser(["AAC"])
