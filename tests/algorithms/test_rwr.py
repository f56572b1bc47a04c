"""RWR's weights: exponential in the standardised reward, or top-fraction only,
normalised over the round and kept so by the minibatch losses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from algorithms.method import Context, Feedback
from algorithms.methods.rwr import RWR, RWRConfig, effective_sample_size, rwr_weights


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


class OneParameterPerDesign:
    """A fake model whose loss on design i is theta[i], so the gradient of a
    minibatch's loss with respect to theta[i] is the weight design i gets there.
    Its `denoising_loss` averages with the weights as the domain models do
    (divided by the minibatch's weight sum); every backward pass is recorded."""

    def __init__(self, n: int):
        self.theta = torch.zeros(n, requires_grad=True)
        self.grads: list[torch.Tensor] = []
        self.theta.register_hook(lambda grad: self.grads.append(grad.clone()))  # before clipping and Adam

    def encode(self, designs):
        return torch.tensor(designs)

    def conditions(self, designs):
        return None

    def trainable_parameters(self):
        return [self.theta]

    def denoising_loss(self, x0, *, generator, weights=None, condition=None):
        return (weights * self.theta[x0]).sum() / weights.sum()


def test_each_design_is_weighted_by_its_round_weight_over_an_epoch():
    n, batch = 16, 4
    reward = np.linspace(0.0, 3.0, n) ** 2  # skewed: minibatches differ in weight sum whatever the order
    data = Feedback()
    data.add(list(range(n)), reward, np.ones(n, bool), round=1)
    model = OneParameterPerDesign(n)
    method = RWR(RWRConfig(beta=2.0, epochs=1, batch_size=batch), Context(None, 0.0, seed=0))
    stats = method.update(model, data, round=1)
    assert len(model.grads) == n // batch
    effective = torch.stack(model.grads).sum(0) * batch  # relative to an unweighted minibatch mean
    expected = rwr_weights(reward, beta=2.0, sparse_fraction=None)
    assert np.allclose(effective.numpy(), expected, rtol=1e-5)
    assert stats["weights_ess"] == pytest.approx(expected.sum() ** 2 / (expected**2).sum())


def test_effective_sample_size_runs_from_one_to_the_round_size():
    assert effective_sample_size(np.ones(8)) == pytest.approx(8.0)
    assert effective_sample_size(np.array([8.0, 0, 0, 0, 0, 0, 0, 0])) == pytest.approx(1.0)
