"""Sequence features for reward models: position one-hots, bigram counts and
gapped-pair presences, the same map for hard designs and for relaxed
(differentiable) samples."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from domains.sequences.alphabet import encode
from domains.sequences.featuriser import SequenceFeaturiser

ALPHABET, LENGTH = "ACDE", 6
V = len(ALPHABET)
DESIGNS = ["AACCDD", "ACACAC", "EEEEEE", "ADCEAD"]


@pytest.fixture
def featuriser() -> SequenceFeaturiser:
    return SequenceFeaturiser(ALPHABET, LENGTH)


def test_dim_matches_the_features(featuriser):
    assert featuriser.dim == LENGTH * V + V * V + V * V * (LENGTH - 1)  # gaps up to L - 1 at this length
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
    bigrams = featuriser(["ACACAA"])[0, LENGTH * V : LENGTH * V + V * V].reshape(V, V)
    expected = torch.zeros(V, V)
    a, c = ALPHABET.index("A"), ALPHABET.index("C")
    expected[a, c], expected[c, a], expected[a, a] = 2, 2, 1
    assert torch.allclose(bigrams, expected)


def test_banned_transition_shows_as_a_bigram_feature(featuriser):
    d = ALPHABET.index("D")
    with_dd = featuriser(["ADDCEA"])[0, LENGTH * V : LENGTH * V + V * V].reshape(V, V)
    without = featuriser(["ADCDEA"])[0, LENGTH * V : LENGTH * V + V * V].reshape(V, V)
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


def pair_features(featuriser: SequenceFeaturiser, design: str) -> torch.Tensor:
    """(max_gap, v, v) gapped-pair presences of one design."""
    return featuriser([design])[0, LENGTH * V + V * V :].reshape(featuriser.max_gap, V, V)


def test_a_gapped_pair_is_seen_wherever_it_sits(featuriser):
    # A, then C three positions later: at the start or at the end, the same feature.
    a, c = ALPHABET.index("A"), ALPHABET.index("C")
    for design in ["AEECEE", "EEAEEC"]:
        pairs = pair_features(featuriser, design)
        assert pairs[2, a, c] == 1  # gap 3 is index 2
        assert pairs[:, a, c].sum() == 1  # and at no other gap
    assert pair_features(featuriser, "AECEEE")[2, a, c] == 0


def test_gapped_pairs_are_presences_not_counts(featuriser):
    a = ALPHABET.index("A")
    assert pair_features(featuriser, "AAAAAA")[0, a, a] == 1  # five A-A neighbours, one feature of 1


def test_the_gap_is_capped_at_the_sequence(featuriser):
    assert SequenceFeaturiser(ALPHABET, 40).max_gap == 15
    assert featuriser.max_gap == LENGTH - 1


def test_an_absent_pair_tells_every_position_where_its_partner_sits(featuriser):
    # No A-C pair at gap 2 in "EEEECE": the gradient of that feature must point at
    # putting an A two places before the C (position 2), not vanish.
    x = F.one_hot(encode(["EEEECE"], ALPHABET, LENGTH), V).float().requires_grad_()
    a, c = ALPHABET.index("A"), ALPHABET.index("C")
    start = LENGTH * V + V * V + 1 * V * V  # gap 2 is the second block
    featuriser.relaxed(x)[0, start + a * V + c].backward()
    assert x.grad[0, 2, a] > 0
    assert x.grad[0, :, a].nonzero().flatten().tolist() == [2]
