# Ported from ddpo-pytorch, ddpo_pytorch/diffusers_patch/ddim_with_logprob.py at commit
# 1958463f020112c9a7bc85768d296daacc2e1b4b (itself a copy of diffusers' DDIMScheduler.step), with
# these changes:
# - the mean of the step is split from the draw (`ddim_step_mean`), so that the per-step KL and
#   classifier guidance reuse it without drawing;
# - the noise comes from an explicit `variance_noise` or `generator`, or the step is evaluated at a
#   given `prev_sample` (the log-prob of a kept trajectory);
# - the previous timestep follows diffusers' own rule (final_alpha_cumprod past the start) instead
#   of ddpo-pytorch's clamp to timestep 0; with `set_alpha_to_one=False`, as our models use, the
#   two agree;
# - the step's coefficients are computed in float64: at eta = 1 the direction coefficient
#   sqrt(1 - alpha_bar_prev - sigma_t^2) of the last step is a difference of numbers of size 1e-4
#   whose true value is about 1e-7, which float32 can round below zero (NaN);
# - only epsilon prediction, single (Python int) timesteps, no thresholding.
"""The DDIM reverse step with eta > 0 as a Gaussian policy step: its mean, its draw and the
log-probability of a draw, as DDPO computes them (Black et al. 2024, "Training Diffusion Models
with Reinforcement Learning", Sec. 4.3), and the closed-form KL between two such steps.

DDIM (Song et al. 2021, "Denoising Diffusion Implicit Models", Eq. 12 and 16), in the notation
alpha_bar_t = `scheduler.alphas_cumprod[t]`:

    x0_hat = (x_t - sqrt(1 - alpha_bar_t) * eps_theta(x_t, t)) / sqrt(alpha_bar_t)      (Eq. 12, "predicted x_0")
    sigma_t = eta * sqrt((1 - alpha_bar_prev) / (1 - alpha_bar_t)) * sqrt(1 - alpha_bar_t / alpha_bar_prev)   (Eq. 16)
    mu_t = sqrt(alpha_bar_prev) * x0_hat + sqrt(1 - alpha_bar_prev - sigma_t^2) * eps_theta(x_t, t)
    x_prev = mu_t + sigma_t * z,  z ~ N(0, I)

so with eta > 0 every step is a Gaussian N(mu_t, sigma_t^2 I) whose mean carries the parameters:
a policy with a tractable log-probability. diffusers' `DDIMScheduler.step` computes the same draw
but returns no log-probability (and no mean), hence this module. The schedule itself (betas,
alphas_cumprod, the inference timesteps from `set_timesteps`) is read from diffusers'
`DDIMScheduler`, never recomputed here.

Nothing here knows what a state is (pixels, VAE latents, any continuous tensor (N, ...)): every
continuous diffusion model of any domain uses these functions, through the sampler written once
over them in `ddim_policy.py`.

Log-prob convention: `log_prob` is the Gaussian log-density of x_prev averaged, not summed, over
the non-batch dimensions (the pixels of an image, the elements of a latent), as ddpo-pytorch does.
That is the true log-density divided by the number of elements D; PPO's ratio exp(new - old) is then
the D-th root of the true density ratio, and DDPO's clip range (1e-4) was tuned for this per-pixel
scale. The DDPO method of this project is domain-agnostic and uses that clip range, so the DDIM
models follow DDPO.
`gaussian_kl`, by contrast, is the true KL (summed over dimensions): it is a regulariser whose
weight is set per benchmark, and a true KL is comparable across steps and state sizes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from diffusers import DDIMScheduler

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


@dataclass
class DDIMStepMean:
    """The Gaussian of one reverse step t -> prev, before drawing from it."""

    mean: torch.Tensor
    """(N, ...) mu_t, the mean of x_prev; carries gradients to the model output and to x_t."""
    std: float
    """sigma_t = eta * sqrt(variance(t, prev)), shared by every element and every model on this schedule."""
    pred_original_sample: torch.Tensor
    """(N, ...) x0_hat, the clean sample predicted at t (clipped when the scheduler clips)."""


@dataclass
class DDIMStepOutput:
    """One drawn (or given) reverse step and its log-probability under the step's Gaussian."""

    prev_sample: torch.Tensor
    """(N, ...) x_prev, drawn or given."""
    log_prob: torch.Tensor
    """(N,) log N(x_prev; mu_t, sigma_t^2 I) averaged over the non-batch dimensions (DDPO's convention)."""
    mean: torch.Tensor
    """(N, ...) mu_t."""
    std: float
    """sigma_t."""
    pred_original_sample: torch.Tensor
    """(N, ...) x0_hat."""


def alpha_bars(scheduler: DDIMScheduler, timestep: int) -> tuple[float, float]:
    """(alpha_bar_t, alpha_bar_prev) in float64 for a step from `timestep`, with diffusers' rule for
    the previous timestep: t - num_train_timesteps // num_inference_steps, and
    `final_alpha_cumprod` once that falls below 0."""
    if scheduler.num_inference_steps is None:
        raise ValueError("the scheduler has no inference timesteps: call scheduler.set_timesteps(num_steps) first")
    prev = timestep - scheduler.config.num_train_timesteps // scheduler.num_inference_steps
    alpha_bar_t = float(scheduler.alphas_cumprod[timestep])
    alpha_bar_prev = float(scheduler.alphas_cumprod[prev]) if prev >= 0 else float(scheduler.final_alpha_cumprod)
    return alpha_bar_t, alpha_bar_prev


def step_std(scheduler: DDIMScheduler, timestep: int, eta: float) -> float:
    """sigma_t of DDIM Eq. 16 (diffusers' `_get_variance`, times eta)."""
    alpha_bar_t, alpha_bar_prev = alpha_bars(scheduler, timestep)
    variance = (1 - alpha_bar_prev) / (1 - alpha_bar_t) * (1 - alpha_bar_t / alpha_bar_prev)
    return eta * math.sqrt(max(variance, 0.0))


def check_scheduler(scheduler: DDIMScheduler) -> None:
    if scheduler.config.prediction_type != "epsilon":
        raise ValueError(
            f"only epsilon prediction is supported, the scheduler has {scheduler.config.prediction_type!r}")
    if scheduler.config.thresholding:
        raise ValueError("dynamic thresholding is not supported: build the DDIMScheduler with thresholding=False")


def predicted_original_sample(
    scheduler: DDIMScheduler, model_output: torch.Tensor, timestep: int, sample: torch.Tensor
) -> torch.Tensor:
    """x0_hat of DDIM Eq. 12 from the predicted noise, clipped to +-clip_sample_range when the
    scheduler clips (as its `step` does). Differentiable in `model_output` and `sample`."""
    check_scheduler(scheduler)
    alpha_bar_t, _ = alpha_bars(scheduler, timestep)
    x0 = (sample - math.sqrt(1 - alpha_bar_t) * model_output) / math.sqrt(alpha_bar_t)
    if scheduler.config.clip_sample:
        r = scheduler.config.clip_sample_range
        x0 = x0.clamp(-r, r)
    return x0


def reward_guided_eps(
    scheduler: DDIMScheduler,
    x: torch.Tensor,
    timestep: int,
    eps_of: Callable[[torch.Tensor], torch.Tensor],
    reward_of_x0: Callable[[torch.Tensor], torch.Tensor],
    scale: float,
) -> torch.Tensor:
    """Classifier guidance with a reward on the predicted clean sample: the noise
    prediction eps_of(x) shifted by -scale * sqrt(1 - alpha_bar_t) * grad_x reward(x0_hat(x)),
    without a gradient (Dhariwal & Nichol 2021, Eq. 14, with the reward as the
    classifier's log-probability and x0_hat's reward as the noisy classifier).
    A guide that ignores its input steers nothing."""
    n = x.shape[0]
    with torch.enable_grad():
        x_in = x.detach().requires_grad_(True)
        eps = eps_of(x_in)
        reward = reward_of_x0(predicted_original_sample(scheduler, eps, timestep, x_in))
        if reward.shape != (n,):
            raise ValueError(f"guide must return {n} rewards, one per sample, got shape {tuple(reward.shape)}")
        g = torch.autograd.grad(reward.sum(), x_in, allow_unused=True)[0] if reward.requires_grad else None
    if g is None:
        g = torch.zeros_like(x)
    alpha_bar_t, _ = alpha_bars(scheduler, timestep)
    return eps.detach() - scale * math.sqrt(1 - alpha_bar_t) * g


def ddim_step_mean(
    scheduler: DDIMScheduler, model_output: torch.Tensor, timestep: int, sample: torch.Tensor, *, eta: float
) -> DDIMStepMean:
    """mu_t and sigma_t of the reverse step from `sample` = x_t (DDIM Eq. 12 with Eq. 16)."""
    _, alpha_bar_prev = alpha_bars(scheduler, timestep)
    std = step_std(scheduler, timestep, eta)
    x0 = predicted_original_sample(scheduler, model_output, timestep, sample)
    # "direction pointing to x_t" of Eq. 12; clamped at 0 against rounding (see the header).
    direction = math.sqrt(max(1 - alpha_bar_prev - std**2, 0.0)) * model_output
    return DDIMStepMean(math.sqrt(alpha_bar_prev) * x0 + direction, std, x0)


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, std: float) -> torch.Tensor:
    """(N,) log N(x; mean, std^2 I) averaged over the non-batch dimensions (DDPO's convention; the
    true log-density is this times the number of elements per sample)."""
    if std <= 0:
        raise ValueError(f"a step with std {std} has no density: use eta > 0 and a schedule whose last step is random"
                         " (set_alpha_to_one=False, timestep_spacing='trailing')")
    per_element = -((x - mean) ** 2) / (2 * std**2) - math.log(std) - _LOG_SQRT_2PI
    return per_element.mean(dim=tuple(range(1, per_element.ndim)))


def gaussian_kl(mean_p: torch.Tensor, mean_q: torch.Tensor, std: float) -> torch.Tensor:
    """(N,) KL(N(mean_p, std^2 I) || N(mean_q, std^2 I)) = ||mean_p - mean_q||^2 / (2 std^2),
    summed over the non-batch dimensions: the true KL of two steps that share sigma_t."""
    if std <= 0:
        raise ValueError(f"steps with std {std} have no finite KL: use eta > 0 and a schedule whose last step is random"
                         " (set_alpha_to_one=False, timestep_spacing='trailing')")
    sq = (mean_p - mean_q) ** 2
    return sq.sum(dim=tuple(range(1, sq.ndim))) / (2 * std**2)


def ddim_step_with_log_prob(
    scheduler: DDIMScheduler,
    model_output: torch.Tensor,
    timestep: int,
    sample: torch.Tensor,
    *,
    eta: float,
    generator: torch.Generator | None = None,
    variance_noise: torch.Tensor | None = None,
    prev_sample: torch.Tensor | None = None,
) -> DDIMStepOutput:
    """One DDIM reverse step x_t -> x_prev with its log-probability.

    Exactly one of `generator` (draw z), `variance_noise` (a given z, as diffusers' `step` takes
    it) or `prev_sample` (a given x_prev: the log-prob of a kept trajectory) must be given. The
    log-prob is taken at `prev_sample.detach()`, as in DDPO: it is the score-function term, whose
    gradient flows through the mean only, never through a reparameterised draw.
    """
    if sum(a is not None for a in (generator, variance_noise, prev_sample)) != 1:
        raise ValueError("give exactly one of generator, variance_noise or prev_sample")
    step = ddim_step_mean(scheduler, model_output, timestep, sample, eta=eta)
    if prev_sample is None:
        if variance_noise is None:
            variance_noise = torch.randn(
                step.mean.shape, generator=generator, dtype=step.mean.dtype, device=step.mean.device)
        prev_sample = step.mean + step.std * variance_noise
    log_prob = gaussian_log_prob(prev_sample.detach(), step.mean, step.std)
    return DDIMStepOutput(prev_sample, log_prob, step.mean, step.std, step.pred_original_sample)
