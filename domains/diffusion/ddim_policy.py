"""One DDIM sampler for every continuous diffusion model: `sample`, `log_prob`, `kl`,
`sample_with_grad`, `sample_guided` and `denoising_loss` of the `DiffusionModel` protocol
(`domains/base.py`), written once over a few hooks that each backend supplies.

Why one class: the five ways the methods use a sampler (plain draws with the trajectory kept,
the recomputed per-step log-probs of policy gradients, the per-step KL to an anchor, truncated
back-propagation through reparameterised steps, reward-guided draws) are the same loop over the
same DDIM step for a pixel-space UNet and for a latent model with a VAE, text conditioning and
classifier-free guidance. What differs is the network (eps_theta), the conditions, the start
state and what a final state means (pixels, or latents to decode). Written once, the guarantees
the methods rely on hold for every backend by construction: equal generators give equal draws
across `sample`, `sample_with_grad` and `sample_guided` (every random number is drawn in the same
order in all three), a kept trajectory's log-probs are what `log_prob` recomputes, and the KL is
that of the very steps the sampler takes.

Notation (DDIM, Song et al. 2021; DDPO, Black et al. 2024) and the names below:
    x_t, x_prev      `x`, a state (N, *state_shape), float32, on `device`; states[j] of a kept
                     trajectory is the state before step j, at timestep t_j = timesteps[j]
    c                `condition`: what the model is conditioned on (None for unconditional models)
    eps_theta        `_eps(x, j, c)`: the noise prediction the sampler steps with
    x0_hat           `DDIMStepMean.pred_original_sample`: the predicted clean state (Eq. 12)
    mu_t, sigma_t    `DDIMStepMean.mean`, `.std` (`_mean`): the step's Gaussian (Eq. 12, 16)
    z                the step noise (`_noise`); x_prev = mu_t + sigma_t * z
    x_T ~ N(0, I)    `_start`
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Sequence
from typing import Any

import torch
from diffusers import DDIMScheduler

from domains.base import DifferentiableSample, SampleOutput, Trajectory
from domains.diffusion.ddim import (
    DDIMStepMean,
    ddim_step_mean,
    ddim_step_with_log_prob,
    gaussian_kl,
    reward_guided_eps,
)


class DDIMPolicy(ABC):
    """A `DiffusionModel` whose reverse process is DDIM with eta > 0 (Song et al. 2021,
    "Denoising Diffusion Implicit Models", Eq. 12 and 16): every reverse step x_t -> x_prev is the
    Gaussian N(mu_theta(x_t, t, c), sigma_t^2 I), so the sampler is a policy with a tractable
    per-step log-probability, as DDPO (Black et al. 2024, "Training Diffusion Models with
    Reinforcement Learning", Sec. 4.3) frames it. Log-probs follow DDPO's convention (the Gaussian
    log-density averaged over the elements of a state), the KL is the true one (summed); see
    `ddim.py` for why.

    A subclass supplies, and keeps only, what is its own:

    - attributes `scheduler` (a diffusers `DDIMScheduler` with `set_timesteps` called, epsilon
      prediction, a random last step) and `timesteps` (its inference timesteps as ints, t_T first);
      properties `eta`, `state_shape` (a state without the batch dimension) and `device` (where
      states live; random numbers are always drawn on the CPU and moved, so that draws do not
      depend on the device);
    - `_eps(x, j, condition, checkpointed)`: eps_theta at step j (guidance and micro-batching are
      the backend's business), and `_predict_noise(x_t, t, condition)`: the network's conditional
      prediction at training timesteps, for `denoising_loss`;
    - `_to_x(state, differentiable)`: the model's representation x of a state (the final state of
      a sample, or the predicted clean state that a guide scores), and `_designs(x, condition)`;
    - conditions: `num_conditions` and `condition_name` for a model conditioned on class indices
      (labels, prompts), drawn uniformly when none are given (the defaults: an unconditional model);
      other kinds of condition override `_draw_condition` and `_check_condition`;
    - `_clean_state(x0, generator)` when the diffused state is not x0 itself (a VAE latent);
    - `conditions`, `encode`, `trainable_parameters`, `frozen_copy`, `save` (and a `load`).
    """

    scheduler: DDIMScheduler
    timesteps: list[int]
    num_conditions: int | None = None
    """Number of class conditions (digit labels, prompts); None for an unconditional model."""
    condition_name: str = "conditions"
    """What a condition is called in error messages ("digit labels", "prompt indices")."""
    _checkpoint_steps: bool = True
    """Recompute, in the backward pass, each network call that `sample_with_grad` back-propagates
    through (gradient checkpointing): K differentiable steps then keep K inputs, not K networks'
    activations. Changes memory and time, never a value."""
    _checkpoint_guidance: bool = False
    """The same for the network call inside each guided step. Off by default: that call is
    back-propagated right away, so recomputing it only saves memory when a costly guide (a VAE
    decode, say) runs between its forward and backward passes."""

    # ----- hooks ---------------------------------------------------------------------
    @property
    @abstractmethod
    def eta(self) -> float:
        """DDIM's eta (Eq. 16), > 0 so that every step has a density."""

    @property
    @abstractmethod
    def state_shape(self) -> tuple[int, ...]:
        """The shape of one state x_t, without the batch dimension."""

    @property
    @abstractmethod
    def device(self) -> torch.device:
        """Where the states and the network live."""

    @abstractmethod
    def _eps(self, x: torch.Tensor, j: int, condition: Any, checkpointed: bool = False) -> torch.Tensor:
        """eps_theta(x, t_j, c): the noise prediction the sampler steps with at step j (after any
        classifier-free guidance), same shape as x. `checkpointed`: recompute the network's
        activations in the backward pass instead of keeping them."""

    @abstractmethod
    def _predict_noise(self, x_t: torch.Tensor, t: torch.Tensor, condition: Any) -> torch.Tensor:
        """The network's conditional eps prediction at training timesteps t (N,) on the CPU."""

    @abstractmethod
    def _to_x(self, state: torch.Tensor, *, differentiable: bool = False) -> torch.Tensor:
        """The model's representation x of states (what `SampleOutput.x` and
        `DifferentiableSample.x` hold and what a guide scores). `differentiable`: keep the graph
        to the state (for `sample_with_grad` and the guide), else a plain tensor."""

    @abstractmethod
    def _designs(self, x: torch.Tensor, condition: Any) -> list[Any]:
        """Designs from x and their conditions."""

    def _clean_state(self, x0: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The clean state z_0 the process diffuses, for clean samples x0 of the model's
        representation: x0 itself unless the model diffuses something else (a VAE latent)."""
        return x0

    def _draw_condition(self, n: int, generator: torch.Generator) -> torch.Tensor | None:
        """n conditions drawn uniformly from the generator (None for an unconditional model)."""
        if self.num_conditions is None:
            return None
        return torch.randint(0, self.num_conditions, (n,), generator=generator)

    def _check_condition(self, n: int, condition: Any) -> torch.Tensor | None:
        """The given conditions, checked: n integer class indices in range, as int64 on the CPU
        (None, and only None, for an unconditional model)."""
        if self.num_conditions is None:
            if condition is not None:
                raise ValueError(f"{type(self).__name__} is unconditional: it takes no condition")
            return None
        c = torch.as_tensor(condition)
        if c.shape != (n,) or c.is_floating_point() or c.dtype == torch.bool:
            raise ValueError(
                f"condition must be {n} integer {self.condition_name}, got shape {tuple(c.shape)} of {c.dtype}")
        return self._check_condition_range(c.long().cpu())

    def _check_condition_range(self, c: torch.Tensor) -> torch.Tensor:
        if c.numel() and (c.min() < 0 or c.max() >= self.num_conditions):
            raise ValueError(f"{self.condition_name} must lie in [0, {self.num_conditions - 1}],"
                             f" got {int(c.min())}..{int(c.max())}")
        return c

    # ----- shared pieces ---------------------------------------------------------------
    @property
    def num_steps(self) -> int:
        """T, the reverse steps of one sample."""
        return len(self.timesteps)

    def _condition_for(self, n: int, generator: torch.Generator, condition: Any) -> Any:
        """The conditions to sample for: the given ones, checked, or draws from the generator (first,
        before any noise, in every sampler)."""
        return self._draw_condition(n, generator) if condition is None else self._check_condition(n, condition)

    def _required_condition(self, n: int, condition: Any, what: str) -> Any:
        """Checked conditions for `what`, which a conditional model cannot do without them."""
        if condition is None and self.num_conditions is not None:
            raise ValueError(f"{type(self).__name__}.{what} needs the {self.condition_name}:"
                             f" pass condition=model.conditions(designs)")
        return self._check_condition(n, condition)

    def _start(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """x_T ~ N(0, I), drawn on the CPU."""
        return torch.randn((n, *self.state_shape), generator=generator).to(self.device)

    def _noise(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        # z ~ N(0, I) like x. Every sampler draws its step noise here, on the CPU and in the same
        # order, so that equal generators give equal samples across `sample`, `sample_with_grad`
        # and `sample_guided`, and across devices.
        return torch.randn(x.shape, generator=generator, dtype=x.dtype).to(self.device)

    def _mean(self, x: torch.Tensor, j: int, condition: Any, checkpointed: bool = False) -> DDIMStepMean:
        """mu_t and sigma_t of step j from x = x_{t_j} (DDIM Eq. 12 with Eq. 16)."""
        return ddim_step_mean(self.scheduler, self._eps(x, j, condition, checkpointed), self.timesteps[j], x,
                              eta=self.eta)

    def _trajectory_condition(self, trajectory: Trajectory) -> Any:
        if trajectory.num_steps != self.num_steps:
            raise ValueError(f"the trajectory has {trajectory.num_steps} steps, this model samples {self.num_steps}")
        if trajectory.condition is None and self.num_conditions is not None:
            raise ValueError(f"the trajectory has no condition: {type(self).__name__} needs the"
                             f" {self.condition_name} it was sampled for")
        return self._check_condition(len(trajectory.states[0]), trajectory.condition)

    def _check_reference(self, reference: Any) -> None:
        """A KL anchor must take the same steps: same class, timesteps, noise schedule, eta and state."""
        same = isinstance(reference, type(self)) and reference.timesteps == self.timesteps \
            and reference.eta == self.eta and reference.state_shape == self.state_shape \
            and torch.equal(reference.scheduler.alphas_cumprod, self.scheduler.alphas_cumprod) \
            and float(reference.scheduler.final_alpha_cumprod) == float(self.scheduler.final_alpha_cumprod)
        if not same:
            raise ValueError(f"the reference must be a {type(self).__name__} with the same schedule, num_steps, eta"
                             " and state shape")

    # ----- the protocol ---------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        generator: torch.Generator,
        keep_trajectory: bool = False,
        condition: Any = None,
    ) -> SampleOutput:
        """n samples (for `condition`, or conditions drawn uniformly). The kept trajectory holds the
        states x_T..x_0 as the sampler drew them (on `device`; the last one is the Gaussian draw
        that the last log-prob is the density of, before `_to_x`), the per-step log-probs (N, T) on
        the CPU and the conditions."""
        c = self._condition_for(n, generator, condition)
        x = self._start(n, generator)
        states, log_probs = [x], []
        for j, t in enumerate(self.timesteps):
            step = ddim_step_with_log_prob(self.scheduler, self._eps(x, j, c), t, x, eta=self.eta,
                                           variance_noise=self._noise(x, generator))
            x = step.prev_sample
            if keep_trajectory:
                states.append(x)
                log_probs.append(step.log_prob.cpu())
        trajectory = Trajectory(states, torch.stack(log_probs, 1), c) if keep_trajectory else None
        x = self._to_x(x)
        return SampleOutput(x, self._designs(x, c), trajectory)

    def log_prob(self, trajectory: Trajectory, steps: Sequence[int] | None = None) -> torch.Tensor:
        """(N, len(steps)) log N(states[j+1]; mu_theta(states[j]), sigma_j^2 I) averaged over the
        elements (DDPO's convention), with gradients through the step means, on the CPU. The
        score-function term of policy gradients: no gradient flows through the kept states."""
        c = self._trajectory_condition(trajectory)
        steps = range(trajectory.num_steps) if steps is None else steps
        out = []
        for j in steps:
            x = trajectory.states[j].to(self.device)
            step = ddim_step_with_log_prob(self.scheduler, self._eps(x, j, c), self.timesteps[j], x, eta=self.eta,
                                           prev_sample=trajectory.states[j + 1].to(self.device))
            out.append(step.log_prob)
        return torch.stack(out, 1).cpu()

    def kl(self, trajectory: Trajectory, reference: DDIMPolicy) -> torch.Tensor:
        """(N, T) closed-form KL(this step || reference step) at the kept states: both are Gaussians
        with the same sigma_t, so KL = ||mu - mu_ref||^2 / (2 sigma_t^2), summed over the elements
        (the true KL, unlike the per-element log-probs), differentiable in this model's parameters,
        on the CPU.

        The last step dominates: with a random last step its sigma is about 0.01 against 0.3-1 for
        the others (eta = 1), so the same change of the mean costs 1e3-1e4 times more KL there. That
        is the true KL of the sampler (DDPM's last step is nearly deterministic too); a method that
        wants another weighting can weight the columns."""
        c = self._trajectory_condition(trajectory)
        self._check_reference(reference)
        out = []
        for j in range(trajectory.num_steps):
            x = trajectory.states[j].to(self.device)
            step = self._mean(x, j, c)
            with torch.no_grad():
                ref = reference._mean(x, j, c)
            out.append(gaussian_kl(step.mean, ref.mean, step.std))
        return torch.stack(out, 1).cpu()

    def sample_with_grad(
        self,
        n: int,
        *,
        generator: torch.Generator,
        last_k: int,
        reference: DDIMPolicy | None = None,
        condition: Any = None,
        kl_steps: Collection[int] | None = None,
        num_steps: int | None = None,
    ) -> DifferentiableSample:
        """Reparameterised sampling, x_prev = mu_theta(x_t) + sigma_t z, whose last `last_k` steps
        (and `_to_x`) carry gradients to the trainable parameters (truncated back-propagation, as
        DRaFT-K and AlignProp); earlier steps run without a gradient path. With the same generator
        it draws what `sample` draws. With `_checkpoint_steps`, each network call that
        back-propagation goes through keeps only its inputs, so a larger last_k costs time more
        than memory.

        With a reference, `kl[:, j]` (on the CPU) is the closed-form KL of step j at the visited
        state. Every step's KL is differentiated in this model's parameters; in the last `last_k`
        steps also through the state (the reference's mean too, so that this is the exact
        derivative of the KL along the reparameterised path). Without one, the KL is zeros; with
        `kl_steps`, only those steps' KL is computed (the others' columns are zero). A DDIM
        model fine-tunes on its own timesteps: `num_steps` must be None or its T."""
        T = self.num_steps
        if num_steps not in (None, T):
            raise ValueError(f"{type(self).__name__} fine-tunes on its own {T} timesteps, not {num_steps}: "
                             "leave finetune_reverse_steps unset for this model")
        if not 1 <= last_k <= T:
            raise ValueError(f"last_k must be in [1, {T}], got {last_k}")
        if reference is not None:
            self._check_reference(reference)
        c = self._condition_for(n, generator, condition)
        x = self._start(n, generator)
        kls = []
        for j in range(T):
            differentiable = j >= T - last_k
            with_kl = reference is not None and (kl_steps is None or j in kl_steps)
            grad = differentiable or with_kl
            with torch.set_grad_enabled(grad):
                step = self._mean(x, j, c, checkpointed=grad and self._checkpoint_steps)
            if with_kl:
                with torch.set_grad_enabled(x.requires_grad):
                    ref = reference._mean(x, j, c, checkpointed=x.requires_grad and self._checkpoint_steps)
                kls.append(gaussian_kl(step.mean, ref.mean, step.std).cpu())
            elif reference is not None:
                kls.append(torch.zeros(n))
            mean = step.mean if differentiable else step.mean.detach()
            x = mean + step.std * self._noise(x, generator)
        kl = torch.stack(kls, 1) if kls else torch.zeros(n, T)
        x = self._to_x(x, differentiable=True)
        return DifferentiableSample(x, self._designs(x, c), kl)

    def sample_guided(
        self,
        n: int,
        *,
        generator: torch.Generator,
        guide: Callable[[torch.Tensor], torch.Tensor],
        scale: float,
        condition: Any = None,
    ) -> SampleOutput:
        """Classifier guidance with a reward (Dhariwal & Nichol 2021, Algorithm 2), the reward taken
        at the predicted clean sample as in universal guidance's forward guidance (Bansal et al.
        2023). At each step, with x0_hat(x_t) the step's own (clipped) prediction of the clean state
        and `_to_x` mapping it to the representation the guide scores (that of
        `DifferentiableSample.x`):

            g = grad_{x_t} sum_i guide(_to_x(x0_hat(x_t)))_i      (through the network)
            eps_hat = eps_theta(x_t) - scale * sqrt(1 - alpha_bar_t) * g

        and the DDIM step is taken with eps_hat (`ddim.reward_guided_eps`). This moves x0_hat by
        scale * (1 - alpha_bar_t) / sqrt(alpha_bar_t) * g, towards higher reward. Elements that a
        clip saturates pass no gradient, so early (noisy) steps are steered less than late ones.
        With scale = 0 the draws equal `sample`'s with the same generator. No trajectory is kept:
        guided steps are not this model's policy, and nothing is trained."""
        c = self._condition_for(n, generator, condition)
        x = self._start(n, generator)
        for j, t in enumerate(self.timesteps):
            eps_hat = reward_guided_eps(
                self.scheduler, x, t,
                lambda x_in: self._eps(x_in, j, c, checkpointed=self._checkpoint_guidance),  # noqa: B023 (called at once)
                lambda x0: guide(self._to_x(x0, differentiable=True)), scale)
            with torch.no_grad():
                x = ddim_step_with_log_prob(self.scheduler, eps_hat, t, x, eta=self.eta,
                                            variance_noise=self._noise(x, generator)).prev_sample
        x = self._to_x(x)
        return SampleOutput(x, self._designs(x, c))

    def denoising_loss(
        self,
        x0: torch.Tensor,
        *,
        generator: torch.Generator,
        weights: torch.Tensor | None = None,
        condition: Any = None,
    ) -> torch.Tensor:
        """DDPM's simple loss (Ho et al. 2020, Eq. 14; on VAE latents, Rombach et al. 2022, Eq. 2):
        ||z - eps_theta(x_t, t, c)||^2 with x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) z at
        t ~ U{0..num_train_timesteps - 1}, averaged over the elements per sample, then over samples
        with `weights`; a scalar on the CPU. x_0 is `_clean_state(x0)`. The conditional prediction is
        trained (no guidance, no condition dropout); a conditional model needs `condition`
        (`conditions(designs)`)."""
        n = x0.shape[0]
        c = self._required_condition(n, condition, "denoising_loss")
        z0 = self._clean_state(x0, generator)
        t = torch.randint(0, self.scheduler.config.num_train_timesteps, (n,), generator=generator)
        noise = self._noise(z0, generator)
        x_t = self.scheduler.add_noise(z0, noise, t.to(self.device))
        per_sample = (self._predict_noise(x_t, t, c) - noise).pow(2).mean(dim=tuple(range(1, noise.ndim))).cpu()
        if weights is None:
            return per_sample.mean()
        weights = torch.as_tensor(weights, dtype=per_sample.dtype)
        return (weights * per_sample).sum() / weights.sum()

    def decode(self, x: torch.Tensor, condition: Any = None) -> list[Any]:
        """Designs from x (the model's representation) and their conditions. A design carries its
        condition and x alone does not say it, so a conditional model requires `condition`; the
        protocol's one-argument call raises there."""
        return self._designs(x, self._required_condition(x.shape[0], condition, "decode"))
