"""DDPO's pieces: the stat tracker, the first importance ratio, the SF gradient,
the defaults for a summed per-step log-prob and the published variant."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from algorithms.method import Context, Feedback
from algorithms.methods.ddpo import DDPO, DDPOConfig, PolicyGradientConfig, StatTracker, policy_loss
from algorithms.methods.large_scale_rl import LargeScaleRLConfig
from algorithms.registry import resolve_config
from domains.sequences.featuriser import SequenceFeaturiser
from domains.sequences.mdlm import MaskedDiffusionModel, MDLMConfig

CFG = MDLMConfig(alphabet="ACDE", length=6, num_steps=6, d_model=16, n_layers=1, n_heads=2)


def model() -> MaskedDiffusionModel:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return MaskedDiffusionModel(CFG)


def test_stat_tracker_uses_batch_statistics_below_min_count():
    tracker = StatTracker(buffer_size=16, min_count=16)
    rewards = np.array([1.0, 2.0, 3.0, 4.0])
    out = tracker.update([None] * 4, rewards)
    assert np.allclose(out, (rewards - rewards.mean()) / (rewards.std() + 1e-6))


def test_stat_tracker_normalises_each_condition_by_its_own_buffer():
    tracker = StatTracker(buffer_size=4, min_count=2)
    out = tracker.update(["a", "a", "b", "b"], np.array([0.0, 2.0, 10.0, 30.0]))
    assert np.allclose(out, [-1, 1, -1, 1], atol=1e-5)
    tracker.update(["a"] * 4, np.array([5.0, 5.0, 5.0, 5.0]))  # the buffer keeps only the last 4
    assert np.allclose(tracker.update(["a"], np.array([5.0])), 0.0)


def test_importance_ratio_is_exactly_one_on_the_first_inner_step():
    m = model()
    method = DDPO(DDPOConfig(batch_size=4), Context(SequenceFeaturiser(CFG.alphabet, CFG.length), 0.0, seed=0))
    proposal = method.propose(m, 8, round=1)
    data = Feedback()
    reward = np.array([d.count("A") for d in proposal.designs], dtype=float)
    data.add(proposal.designs, reward, np.ones(8, bool), round=1)
    stats = method.update(m, data, round=1)
    assert stats["first_ratio"] == pytest.approx(1.0, abs=1e-6)


def test_score_function_gradient_matches_per_sample_gradients():
    m = model()
    sample = m.sample(5, generator=torch.Generator().manual_seed(1), keep_trajectory=True)
    advantage = torch.tensor([1.0, -0.5, 2.0, 0.0, -1.5])
    params = m.trainable_parameters()

    log_prob = m.log_prob(sample.trajectory, [2])[:, 0]
    batched = torch.autograd.grad(policy_loss(log_prob, log_prob.detach(), advantage, False, 1e-4), params)

    # independently: -(1/N) sum_i A_i * grad log p_i, one sample at a time
    expected = [torch.zeros_like(p) for p in params]
    for i in range(5):
        lp_i = m.log_prob(sample.trajectory, [2])[i, 0]
        for e, g in zip(expected, torch.autograd.grad(lp_i, params, allow_unused=True)):
            if g is not None:
                e -= advantage[i] * g / 5
    for b, e in zip(batched, expected):
        assert torch.allclose(b, e, atol=1e-6)


def test_clipped_surrogate_stops_the_gradient_past_the_clip():
    new = torch.tensor([0.5], requires_grad=True)  # ratio e^0.5, far past 1 + 1e-4
    loss = policy_loss(new, torch.tensor([0.0]), torch.tensor([1.0]), True, 1e-4)
    (grad,) = torch.autograd.grad(loss, new)
    assert grad.item() == 0.0


def test_unconditional_round_is_normalised_over_the_whole_round():
    """A round larger than ddpo-pytorch's buffer of 16, with rewards rising
    through it: the last 16 alone would put nearly every advantage below 0."""
    method = DDPO(resolve_config("ddpo-is"), Context(SequenceFeaturiser(CFG.alphabet, CFG.length), 0.0, seed=0))
    method.propose(model(), 64, round=1)
    for reward in (np.arange(64.0), 100.0 + 3.0 * np.arange(64.0) ** 0.5):  # two rounds: nothing carried over
        advantage = method.advantages(reward)
        assert advantage.mean() == pytest.approx(0.0, abs=1e-6)
        assert advantage.std() == pytest.approx(1.0, abs=1e-4)


def test_stat_tracker_without_a_buffer_size_normalises_each_condition_by_this_round():
    tracker = StatTracker(buffer_size=None, min_count=2)
    tracker.update(["a", "a"], np.array([100.0, 300.0]))
    out = tracker.update(["a", "a", "b", "b"], np.array([0.0, 2.0, 10.0, 30.0]))
    assert np.allclose(out, [-1, 1, -1, 1], atol=1e-5)


def test_published_variant_resolves_to_ddpo_pytorchs_base_config():
    cfg = resolve_config("ddpo-is-published")
    assert cfg.importance_sampling
    assert (cfg.clip_range, cfg.inner_epochs, cfg.buffer_size, cfg.min_count, cfg.adv_clip_max) == (1e-4, 1, 16, 16, 5.0)


def test_defaults_fit_a_summed_per_step_log_prob():
    for cfg in (PolicyGradientConfig(), LargeScaleRLConfig(), resolve_config("ddpo-is"), resolve_config("ddpo-sf"),
                resolve_config("large-scale-rl")):
        assert cfg.clip_range == 0.2
    assert resolve_config("ddpo-is").inner_epochs == 4  # PPO's reuse of each round
    assert resolve_config("large-scale-rl").inner_epochs == 4
    assert resolve_config("ddpo-sf").inner_epochs == 1  # REINFORCE is on-policy
    assert resolve_config("ddpo-is").buffer_size is None


def test_buffer_size_is_settable_from_yaml():
    assert resolve_config("ddpo-is", {"buffer_size": 16}).buffer_size == 16
    assert resolve_config("ddpo-is-published", {"buffer_size": None}).buffer_size is None


def test_the_update_follows_the_gradient_of_the_mean_over_steps_and_adam_carries_over_rounds():
    """One backward per step (issue 17's memory fix) accumulates the gradient of the mean
    over steps taken in one backward; the optimiser's moments survive into the next round."""
    cfg = DDPOConfig(batch_size=8, inner_epochs=1)
    m, reference = model(), model()
    method = DDPO(cfg, Context(SequenceFeaturiser(CFG.alphabet, CFG.length), 0.0, seed=0))
    proposal = method.propose(m, 8, round=1)
    data = Feedback()
    reward = np.array([d.count("A") for d in proposal.designs], dtype=float)
    data.add(proposal.designs, reward, np.ones(8, bool), round=1)
    method.update(m, data, round=1)  # one minibatch of all 8 rows: its gradient is left in .grad
    advantage = torch.as_tensor(np.clip(method.advantages(reward), -cfg.adv_clip_max, cfg.adv_clip_max),
                                dtype=torch.float32)
    new, old = reference.log_prob(proposal.trajectory), proposal.trajectory.log_probs
    loss = sum(policy_loss(new[:, i], old[:, i], advantage, True, cfg.clip_range) for i in range(6)) / 6
    params = reference.trainable_parameters()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    for a, b in zip(m.trainable_parameters(), params):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-7)
    assert any(p.grad.abs().sum() > 0 for p in params)
    assert next(iter(method.optimizer.state.values()))["step"] == 1
    proposal = method.propose(m, 8, round=2)
    data.add(proposal.designs, np.array([d.count("A") for d in proposal.designs], float), np.ones(8, bool), round=2)
    method.update(m, data, round=2)
    assert next(iter(method.optimizer.state.values()))["step"] == 2


@pytest.mark.parametrize("train_last_step", [True, False])
def test_without_the_last_step_the_update_never_trains_it(monkeypatch, train_last_step):
    m = model()
    method = DDPO(DDPOConfig(batch_size=4, train_last_step=train_last_step),
                  Context(SequenceFeaturiser(CFG.alphabet, CFG.length), 0.0, seed=0))
    proposal = method.propose(m, 8, round=1)
    data = Feedback()
    data.add(proposal.designs, np.arange(8, dtype=float), np.ones(8, bool), round=1)
    trained = []
    log_prob = m.log_prob
    monkeypatch.setattr(m, "log_prob", lambda trajectory, steps: trained.extend(steps) or log_prob(trajectory, steps))
    method.update(m, data, round=1)
    expected = set(range(CFG.num_steps)) if train_last_step else set(range(CFG.num_steps - 1))
    assert set(trained) == expected


def test_a_one_step_model_without_its_last_step_is_refused():
    one_step = MaskedDiffusionModel(MDLMConfig(alphabet="ACDE", length=1, num_steps=1, d_model=16, n_layers=1,
                                               n_heads=2))
    method = DDPO(DDPOConfig(train_last_step=False), Context(SequenceFeaturiser("ACDE", 1), 0.0, seed=0))
    with pytest.raises(ValueError, match="train_last_step=false leaves no step to train in a one-step model"):
        method.check(one_step, [16])
