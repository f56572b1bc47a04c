"""The DDIM step with eta > 0 as a Gaussian policy step: its draw against diffusers' own step,
its log-probability against the closed-form density, and the closed-form KL against a
Monte-Carlo estimate."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler

from domains.diffusion.ddim import (
    ddim_step_mean,
    ddim_step_with_log_prob,
    gaussian_kl,
    gaussian_log_prob,
    step_std,
)

NUM_STEPS = 10


def scheduler(clip_sample: bool = True, **kwargs) -> DDIMScheduler:
    """The schedule the digits model uses (trailing spacing, a random last step)."""
    s = DDIMScheduler(num_train_timesteps=1000, clip_sample=clip_sample, set_alpha_to_one=False,
                      timestep_spacing="trailing", **kwargs)
    s.set_timesteps(NUM_STEPS)
    return s


def tensors(seed: int, n: int = 3, shape=(1, 8, 8)) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn((n, *shape), generator=g) for _ in range(3)]


def numpy_log_density(x: np.ndarray, mean: np.ndarray, std: float) -> np.ndarray:
    """Per-element log N(x; mean, std^2), written out in float64."""
    return -0.5 * ((x - mean) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi)


def test_log_prob_is_the_gaussian_density_averaged_over_pixels():
    x, mean, _ = tensors(0)
    std = 0.3
    expected = numpy_log_density(x.double().numpy(), mean.double().numpy(), std).reshape(len(x), -1)
    got = gaussian_log_prob(x, mean, std)
    assert got.shape == (len(x),)
    np.testing.assert_allclose(got.numpy(), expected.mean(1), rtol=1e-5, atol=1e-5)
    # Times the number of pixels it is the true log-density of the whole image.
    np.testing.assert_allclose(got.numpy() * x[0].numel(), expected.sum(1), rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("clip_sample", [True, False])
def test_step_log_prob_is_the_density_of_its_own_draw(clip_sample):
    s = scheduler(clip_sample)
    x_t, eps, z = tensors(1)
    for t in s.timesteps.tolist():
        out = ddim_step_with_log_prob(s, eps, t, x_t, eta=1.0, variance_noise=z)
        assert out.std == pytest.approx(step_std(s, t, 1.0)) and out.std > 0
        expected = numpy_log_density(out.prev_sample.double().numpy(), out.mean.double().numpy(), out.std)
        np.testing.assert_allclose(out.log_prob.numpy(), expected.reshape(len(x_t), -1).mean(1), rtol=1e-5, atol=1e-5)
        # At the draw's own noise z the density is that of a standard normal scaled by std.
        standard = (-0.5 * z.double() ** 2).mean(dim=(1, 2, 3)) - math.log(out.std) - 0.5 * math.log(2 * math.pi)
        np.testing.assert_allclose(out.log_prob.numpy(), standard.numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("clip_sample", [True, False])
def test_step_mean_at_eta_zero_is_diffusers_ddim_step(clip_sample):
    s = scheduler(clip_sample)
    x_t, eps, _ = tensors(2)
    for t in s.timesteps.tolist():
        expected = s.step(eps, t, x_t, eta=0.0).prev_sample
        step = ddim_step_mean(s, eps, t, x_t, eta=0.0)
        torch.testing.assert_close(step.mean, expected, rtol=1e-5, atol=1e-5)
        assert step.std == 0.0


@pytest.mark.parametrize("eta", [0.5, 1.0])
@pytest.mark.parametrize("clip_sample", [True, False])
def test_step_draw_with_given_noise_is_diffusers_ddim_step(eta, clip_sample):
    s = scheduler(clip_sample)
    x_t, eps, z = tensors(3)
    for t in s.timesteps.tolist():
        expected = s.step(eps, t, x_t, eta=eta, variance_noise=z)
        out = ddim_step_with_log_prob(s, eps, t, x_t, eta=eta, variance_noise=z)
        torch.testing.assert_close(out.prev_sample, expected.prev_sample, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out.pred_original_sample, expected.pred_original_sample, rtol=1e-5, atol=1e-5)


def test_generator_draw_equals_the_same_noise_given():
    s = scheduler()
    x_t, eps, _ = tensors(4)
    t = s.timesteps.tolist()[3]
    drawn = ddim_step_with_log_prob(s, eps, t, x_t, eta=1.0, generator=torch.Generator().manual_seed(9))
    z = torch.randn(x_t.shape, generator=torch.Generator().manual_seed(9))
    given = ddim_step_with_log_prob(s, eps, t, x_t, eta=1.0, variance_noise=z)
    assert torch.equal(drawn.prev_sample, given.prev_sample)


def test_log_prob_at_a_given_prev_sample_reproduces_the_draws():
    s = scheduler()
    x_t, eps, z = tensors(5)
    t = s.timesteps.tolist()[-1]
    drawn = ddim_step_with_log_prob(s, eps, t, x_t, eta=1.0, variance_noise=z)
    again = ddim_step_with_log_prob(s, eps, t, x_t, eta=1.0, prev_sample=drawn.prev_sample)
    assert torch.equal(again.prev_sample, drawn.prev_sample)
    torch.testing.assert_close(again.log_prob, drawn.log_prob, rtol=0, atol=1e-6)


def test_log_prob_gradient_flows_through_the_mean_not_the_draw():
    s = scheduler(clip_sample=False)
    x_t, eps, z = tensors(6)
    eps.requires_grad_(True)
    t = s.timesteps.tolist()[5]
    out = ddim_step_with_log_prob(s, eps, t, x_t, eta=1.0, variance_noise=z)
    (grad,) = torch.autograd.grad(out.log_prob.sum(), eps)
    # d/d eps of mean_D(-(x - mu)^2 / 2 sigma^2) with x fixed: (x - mu) / sigma^2 * d mu / d eps / D.
    d_mu = ddim_step_mean(s, torch.ones_like(eps), t, torch.zeros_like(x_t), eta=1.0).mean  # linear in eps
    expected = (z / out.std) * d_mu / x_t[0].numel()
    torch.testing.assert_close(grad, expected, rtol=1e-4, atol=1e-6)


def test_kl_of_identical_steps_is_zero():
    _, mean, _ = tensors(7)
    assert torch.equal(gaussian_kl(mean, mean.clone(), 0.2), torch.zeros(len(mean)))


def test_kl_matches_a_monte_carlo_estimate():
    g = torch.Generator().manual_seed(8)
    d, std = 16, 0.5
    mean_p = torch.randn(2, d, generator=g, dtype=torch.float64)
    mean_q = mean_p + 0.3 * torch.randn(2, d, generator=g, dtype=torch.float64)
    kl = gaussian_kl(mean_p, mean_q, std)
    assert (kl > 0.5).all()
    m = 200_000
    for i in range(2):
        x = mean_p[i] + std * torch.randn(m, d, generator=g, dtype=torch.float64)
        # E_p[log p(x) - log q(x)] with true (summed) log-densities.
        log_ratio = (gaussian_log_prob(x, mean_p[i], std) - gaussian_log_prob(x, mean_q[i], std)) * d
        estimate, stderr = float(log_ratio.mean()), float(log_ratio.std()) / math.sqrt(m)
        assert float(kl[i]) == pytest.approx(estimate, abs=5 * stderr + 1e-3)


def test_a_deterministic_last_step_has_no_log_prob():
    s = DDIMScheduler(num_train_timesteps=1000, set_alpha_to_one=True, timestep_spacing="leading")
    s.set_timesteps(NUM_STEPS)
    x_t, eps, _ = tensors(9)
    last = s.timesteps.tolist()[-1]
    assert step_std(s, last, 1.0) == 0.0
    with pytest.raises(ValueError, match="set_alpha_to_one=False"):
        ddim_step_with_log_prob(s, eps, last, x_t, eta=1.0, generator=torch.Generator())


def test_step_needs_exactly_one_source_of_noise():
    s = scheduler()
    x_t, eps, z = tensors(10)
    t = s.timesteps.tolist()[0]
    with pytest.raises(ValueError, match="exactly one"):
        ddim_step_with_log_prob(s, eps, t, x_t, eta=1.0)
    with pytest.raises(ValueError, match="exactly one"):
        ddim_step_with_log_prob(s, eps, t, x_t, eta=1.0, variance_noise=z, generator=torch.Generator())


def test_other_prediction_types_are_rejected():
    s = scheduler(prediction_type="v_prediction")
    x_t, eps, _ = tensors(11)
    with pytest.raises(ValueError, match="epsilon"):
        ddim_step_mean(s, eps, s.timesteps.tolist()[0], x_t, eta=1.0)


def test_scheduler_without_timesteps_is_rejected():
    s = DDIMScheduler(num_train_timesteps=1000)
    x_t, eps, _ = tensors(12)
    with pytest.raises(ValueError, match="set_timesteps"):
        ddim_step_mean(s, eps, 999, x_t, eta=1.0)
