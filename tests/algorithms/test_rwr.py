"""RWR's weights: exponential in the standardised reward, or top-fraction only."""

from __future__ import annotations

import numpy as np

from algorithms.rwr import rwr_weights


def test_weights_are_exponential_in_the_standardised_reward():
    reward = np.array([0.0, 1.0, 2.0])
    weights = rwr_weights(reward, beta=2.0, sparse_fraction=None)
    advantage = (reward - reward.mean()) / reward.std()
    expected = np.exp(2.0 * advantage)
    assert np.allclose(weights, expected / expected.mean())


def test_sparse_weights_keep_only_the_top_fraction():
    weights = rwr_weights(np.array([5.0, 1.0, 3.0, 2.0]), beta=1.0, sparse_fraction=0.5)
    assert (weights > 0).tolist() == [True, False, True, False]
    assert weights.mean() == 1.0


def test_beta_zero_weighs_every_sample_alike():
    assert np.allclose(rwr_weights(np.array([0.0, 10.0, -3.0]), beta=0.0, sparse_fraction=None), 1.0)
