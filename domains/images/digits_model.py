"""The digits backend's diffusion model: a small class-conditional pixel-space DDIM.

A diffusers `UNet2DModel` predicts the noise eps_theta(x_t, t, y) of 16x16 greyscale images in
[-1, 1] (Ho et al. 2020, "Denoising Diffusion Probabilistic Models"), conditioned on the digit
label y through a learned class embedding added to the timestep embedding (`num_class_embeds`).
Labels play the role of prompts: DDPO's per-prompt statistics are per-digit statistics here.
Sampling is DDIM with eta > 0 (Song et al. 2021), so every reverse step is a Gaussian with a
tractable log-probability (DDPO, Black et al. 2024); the step itself lives in `ddim.py`.

The schedule is diffusers' `DDIMScheduler` (1000 training steps, linear betas) with
`timestep_spacing="trailing"` and `set_alpha_to_one=False`. Trailing spacing starts the sampler at
t = 999, where x_T ~ N(0, I) is (nearly) the marginal, and its last step goes from t = 99 to
alpha_bar_0; `set_alpha_to_one=False` keeps that last step random (sigma about 0.01) so that it
has a log-probability. "leading" spacing or `set_alpha_to_one=True` would make the last step
deterministic (sigma = 0) and its log-probability undefined.

Representations: the model works on (N, 1, 16, 16) float tensors in [-1, 1]; designs are
`ImageDesign(uint8 (16, 16) pixels, int label)`; pixel = round((x + 1) * 127.5) after clamping.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import DDIMScheduler, UNet2DModel
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.checkpoint import checkpoint
from tqdm.auto import tqdm

from domains.base import DifferentiableSample, SampleOutput, Trajectory
from domains.images.ddim import (
    DDIMStepMean,
    ddim_step_mean,
    ddim_step_with_log_prob,
    gaussian_kl,
    reward_guided_eps,
)
from domains.images.design import ImageDesign
from domains.images.digits import digit_labels, from_pixels, stack_pixels, to_designs


@dataclass
class DigitDiffusionConfig:
    """Architecture, schedule and sampler of the digits model."""

    # ----- images and conditions -----
    image_size: int = 16
    """H = W of the greyscale images."""
    num_classes: int = 10
    """Number of digit labels; the UNet's `num_class_embeds`."""

    # ----- the UNet -----
    block_out_channels: tuple[int, ...] = (16, 32, 64)
    """Channels of the UNet's resolution levels (16x16, 8x8, 4x4). 0.64M parameters. Measured on one
    CPU thread (torch 2.13, shared 2-core machine): a UNet call on 256 images takes 0.28-0.4 s, a
    sampling pass of 256 images with `num_steps=10` 3.8-5 s, a training step on 64 images 0.23-0.35 s.
    (32, 64) costs about 3x as much per call (0.8 s) for no obvious gain on 16x16 digits."""
    layers_per_block: int = 1
    """ResNet blocks per resolution level."""
    norm_num_groups: int = 8
    """GroupNorm groups; must divide every entry of `block_out_channels`."""

    # ----- the schedule and the sampler -----
    num_train_timesteps: int = 1000
    """Training timesteps of the DDPM schedule (Ho et al. 2020)."""
    beta_schedule: str = "linear"
    """diffusers' beta schedule name ("linear" is DDPM's, from 1e-4 to 0.02)."""
    num_steps: int = 10
    """T, DDIM reverse steps when sampling. 10 on 2 CPU cores: every method pays T UNet calls per
    sample (and DDPO T more per inner epoch), and a 256-image pass at T = 10 takes 4-5 s on one
    thread. The price is sample quality: at eta = 1 the DDIM paper (Table 1, CIFAR-10) reports FID
    41 at 10 steps against 18 at 20, so check the pretraining report's feasibility rate and raise
    this to 20 or 25 if it is low. Must divide `num_train_timesteps`."""
    eta: float = 1.0
    """DDIM's eta (Eq. 16): 0 is deterministic DDIM, 1 is DDPM-like. Must be > 0 so that every step
    has a log-probability; 1.0 as DDPO."""
    clip_sample: bool = True
    """Clip the predicted clean image x0_hat to [-1, 1] inside each step (diffusers' default for
    pixel models). The log-probs, the KL and guidance all use the clipped prediction."""

    def __post_init__(self) -> None:
        self.block_out_channels = tuple(int(c) for c in self.block_out_channels)
        if not self.block_out_channels or any(c % self.norm_num_groups for c in self.block_out_channels):
            raise ValueError(f"norm_num_groups={self.norm_num_groups} must divide every entry of"
                             f" block_out_channels={self.block_out_channels}")
        if self.image_size % 2 ** (len(self.block_out_channels) - 1):
            raise ValueError(f"image_size={self.image_size} must be divisible by 2**(len(block_out_channels) - 1)")
        if self.num_steps < 1 or self.num_train_timesteps % self.num_steps:
            raise ValueError(f"num_steps={self.num_steps} must divide num_train_timesteps={self.num_train_timesteps}"
                             " (so that DDIM's previous timestep is the next scheduled one)")
        if self.eta <= 0:
            raise ValueError(
                f"eta={self.eta} must be > 0: with eta = 0 DDIM is deterministic and its steps have no log-prob")
        if self.num_classes < 1 or self.layers_per_block < 1:
            raise ValueError("num_classes and layers_per_block must be positive")


class DigitDiffusionModel(nn.Module):
    """The digits `DiffusionModel`: a class-conditional DDIM sampler around a `UNet2DModel`."""

    def __init__(self, cfg: DigitDiffusionConfig | None = None, metadata: dict[str, Any] | None = None):
        super().__init__()
        self.cfg = cfg = cfg or DigitDiffusionConfig()
        levels = len(cfg.block_out_channels)
        self.unet = UNet2DModel(
            sample_size=cfg.image_size,
            in_channels=1,
            out_channels=1,
            block_out_channels=cfg.block_out_channels,
            layers_per_block=cfg.layers_per_block,
            down_block_types=("DownBlock2D",) * levels,
            up_block_types=("UpBlock2D",) * levels,
            norm_num_groups=cfg.norm_num_groups,
            num_class_embeds=cfg.num_classes,
        )
        self.scheduler = DDIMScheduler(
            num_train_timesteps=cfg.num_train_timesteps,
            beta_schedule=cfg.beta_schedule,
            clip_sample=cfg.clip_sample,
            set_alpha_to_one=False,
            timestep_spacing="trailing",
            prediction_type="epsilon",
        )
        self.scheduler.set_timesteps(cfg.num_steps)
        self.timesteps: list[int] = [int(t) for t in self.scheduler.timesteps]
        self.metadata: dict[str, Any] = dict(metadata or {})

    @property
    def num_steps(self) -> int:
        return self.cfg.num_steps

    # ----- the reverse process -------------------------------------------------
    def _eps(self, x: torch.Tensor, j: int, labels: torch.Tensor, checkpointed: bool = False) -> torch.Tensor:
        """eps_theta(x, t_j, labels). `checkpointed` recomputes the UNet's activations in the
        backward pass instead of keeping them (gradient checkpointing, for back-propagation
        through several sampler steps)."""
        t = torch.full((x.shape[0],), self.timesteps[j], dtype=torch.long, device=x.device)
        if checkpointed:
            return checkpoint(self._forward, x, t, labels, use_reentrant=False)
        return self._forward(x, t, labels)

    def _forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.unet(x, t, class_labels=labels).sample

    def _mean(self, x: torch.Tensor, j: int, labels: torch.Tensor, checkpointed: bool = False) -> DDIMStepMean:
        eps = self._eps(x, j, labels, checkpointed)
        return ddim_step_mean(self.scheduler, eps, self.timesteps[j], x, eta=self.cfg.eta)

    def _labels(self, n: int, generator: torch.Generator, condition: torch.Tensor | None) -> torch.Tensor:
        """The labels to sample for: `condition`, or uniform draws from the generator."""
        if condition is None:
            return torch.randint(0, self.cfg.num_classes, (n,), generator=generator)
        return self._given_labels(n, condition)

    def _given_labels(self, n: int, condition: torch.Tensor) -> torch.Tensor:
        labels = torch.as_tensor(condition)
        if labels.shape != (n,) or labels.is_floating_point():
            raise ValueError(
                f"condition must be {n} integer digit labels, got shape {tuple(labels.shape)} of {labels.dtype}")
        return self._check_labels(labels.long())

    def _check_labels(self, labels: torch.Tensor) -> torch.Tensor:
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.cfg.num_classes):
            raise ValueError(f"digit labels must lie in [0, {self.cfg.num_classes - 1}],"
                             f" got {int(labels.min())}..{int(labels.max())}")
        return labels

    def _start(self, n: int, generator: torch.Generator) -> torch.Tensor:
        s = self.cfg.image_size
        return torch.randn((n, 1, s, s), generator=generator)

    @staticmethod
    def _noise(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        # Every sampler draws its step noise here, in the same order, so that equal generators
        # give equal samples across `sample`, `sample_with_grad` and `sample_guided`.
        return torch.randn(x.shape, generator=generator, dtype=x.dtype)

    def _check_trajectory(self, trajectory: Trajectory) -> torch.Tensor:
        if trajectory.num_steps != self.num_steps:
            raise ValueError(f"the trajectory has {trajectory.num_steps} steps, this model samples {self.num_steps}")
        if trajectory.condition is None:
            raise ValueError("the trajectory has no condition: the digits model needs the labels it was sampled for")
        return trajectory.condition

    def _check_reference(self, reference: DigitDiffusionModel) -> None:
        if not isinstance(reference, DigitDiffusionModel) or reference.timesteps != self.timesteps \
                or reference.cfg.eta != self.cfg.eta or reference.cfg.beta_schedule != self.cfg.beta_schedule:
            raise ValueError("the reference must be a DigitDiffusionModel with the same schedule, num_steps and eta")

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        generator: torch.Generator,
        keep_trajectory: bool = False,
        condition: torch.Tensor | None = None,
    ) -> SampleOutput:
        """n images (for `condition` labels, or labels drawn uniformly). `x` is the final state
        clamped to [-1, 1]; the kept trajectory holds the unclamped states x_T..x_0 (the last one is
        the Gaussian draw that the last log-prob is the density of) and `condition` = the labels."""
        labels = self._labels(n, generator, condition)
        x = self._start(n, generator)
        states, log_probs = [x], []
        for j, t in enumerate(self.timesteps):
            eps = self._eps(x, j, labels)
            step = ddim_step_with_log_prob(self.scheduler, eps, t, x, eta=self.cfg.eta,
                                           variance_noise=self._noise(x, generator))
            x = step.prev_sample
            if keep_trajectory:
                states.append(x)
                log_probs.append(step.log_prob)
        trajectory = Trajectory(states, torch.stack(log_probs, 1), labels) if keep_trajectory else None
        x = x.clamp(-1, 1)
        return SampleOutput(x, to_designs(x, labels), trajectory)

    def log_prob(self, trajectory: Trajectory, steps: Sequence[int] | None = None) -> torch.Tensor:
        """(N, len(steps)) per-pixel-mean Gaussian log-probs (DDPO's convention, see `ddim.py`) of
        the kept steps, with gradients through the step means."""
        labels = self._check_trajectory(trajectory)
        steps = range(trajectory.num_steps) if steps is None else steps
        out = []
        for j in steps:
            x = trajectory.states[j]
            step = ddim_step_with_log_prob(self.scheduler, self._eps(x, j, labels), self.timesteps[j], x,
                                           eta=self.cfg.eta, prev_sample=trajectory.states[j + 1])
            out.append(step.log_prob)
        return torch.stack(out, 1)

    def kl(self, trajectory: Trajectory, reference: DigitDiffusionModel) -> torch.Tensor:
        """(N, T) closed-form KL between this model's and the reference's step Gaussians at the
        kept states (both have sigma_t, so KL = ||mu - mu_ref||^2 / (2 sigma_t^2), summed over
        pixels: the true KL, unlike the per-pixel log-probs).

        The last step dominates: its sigma is about 0.01 against 0.28-0.92 for the others (T = 10,
        eta = 1), so the same change of the mean costs 1e3-1e4 times more KL there. That is the
        true KL of the sampler (DDPM's last step is nearly deterministic too); a method that
        wants another weighting can weight the columns."""
        labels = self._check_trajectory(trajectory)
        self._check_reference(reference)
        out = []
        for j in range(trajectory.num_steps):
            x = trajectory.states[j]
            step = self._mean(x, j, labels)
            with torch.no_grad():
                ref = reference._mean(x, j, labels)
            out.append(gaussian_kl(step.mean, ref.mean, step.std))
        return torch.stack(out, 1)

    def sample_with_grad(
        self,
        n: int,
        *,
        generator: torch.Generator,
        last_k: int,
        reference: DigitDiffusionModel | None = None,
        condition: torch.Tensor | None = None,
    ) -> DifferentiableSample:
        """Reparameterised sampling (x_prev = mu_theta(x_t) + sigma_t z) whose last `last_k` steps
        carry gradients to the UNet (truncated back-propagation, as DRaFT-K / AlignProp); earlier
        steps run without a gradient path. Each UNet call that back-propagation goes through is
        gradient-checkpointed (its activations are recomputed in the backward pass, only its
        inputs are kept), so a larger last_k costs time more than memory.

        `x` is the final state hard-clamped to [-1, 1] (`torch.clamp`): its value is what the
        designs are (up to uint8 rounding) and a saturated pixel gets no gradient, which is its
        true derivative, since pushing it further out does not change the design.

        With a reference, `kl[:, j]` is the closed-form KL of step j at the visited state. Every
        step's KL is differentiated in this model's parameters; in the last `last_k` steps also
        through the state (the reference's mean too, so that this is the exact derivative of the
        KL along the reparameterised path)."""
        T = self.num_steps
        if not 1 <= last_k <= T:
            raise ValueError(f"last_k must be in [1, {T}], got {last_k}")
        if reference is not None:
            self._check_reference(reference)
        labels = self._labels(n, generator, condition)
        x = self._start(n, generator)
        kls = []
        for j in range(T):
            differentiable = j >= T - last_k
            grad = differentiable or reference is not None
            with torch.set_grad_enabled(grad):
                step = self._mean(x, j, labels, checkpointed=grad)
            if reference is not None:
                with torch.set_grad_enabled(x.requires_grad):
                    ref = reference._mean(x, j, labels, checkpointed=x.requires_grad)
                kls.append(gaussian_kl(step.mean, ref.mean, step.std))
            mean = step.mean if differentiable else step.mean.detach()
            x = mean + step.std * self._noise(x, generator)
        kl = torch.stack(kls, 1) if kls else torch.zeros(n, T)
        x = x.clamp(-1, 1)
        return DifferentiableSample(x, to_designs(x, labels), kl)

    def sample_guided(
        self,
        n: int,
        *,
        generator: torch.Generator,
        guide: Callable[[torch.Tensor], torch.Tensor],
        scale: float,
        condition: torch.Tensor | None = None,
    ) -> SampleOutput:
        """Classifier guidance with a reward (Dhariwal & Nichol 2021, Algorithm 2, with the reward
        taken at the predicted clean image as in universal guidance, Bansal et al. 2023, "forward
        guidance"). At each step, with x0_hat the step's own (clipped) prediction of the clean
        image in the representation of `DifferentiableSample.x`:

            g = grad_{x_t} sum_i guide(x0_hat(x_t))_i      (through the UNet)
            eps_hat = eps_theta(x_t) - scale * sqrt(1 - alpha_bar_t) * g

        and the DDIM step is taken with eps_hat. This moves x0_hat by
        scale * (1 - alpha_bar_t) / sqrt(alpha_bar_t) * g, towards higher reward. Pixels that the
        clip saturates pass no gradient, so early (noisy) steps are steered less than late ones.
        With scale = 0 the draws equal `sample`'s with the same generator. No trajectory is kept:
        guided steps are not this model's policy."""
        labels = self._labels(n, generator, condition)
        x = self._start(n, generator)
        for j, t in enumerate(self.timesteps):
            eps_hat = reward_guided_eps(self.scheduler, x, t, lambda x_in: self._eps(x_in, j, labels), guide, scale)
            with torch.no_grad():
                x = ddim_step_with_log_prob(self.scheduler, eps_hat, t, x, eta=self.cfg.eta,
                                            variance_noise=self._noise(x, generator)).prev_sample
        x = x.clamp(-1, 1)
        return SampleOutput(x, to_designs(x, labels))

    def denoising_loss(
        self,
        x0: torch.Tensor,
        *,
        generator: torch.Generator,
        weights: torch.Tensor | None = None,
        condition: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """DDPM's simple loss (Ho et al. 2020, Eq. 14): ||eps - eps_theta(x_t, t, y)||^2 at
        t ~ U{0..999}, averaged over pixels per image, then over images with `weights`.
        `condition` (the labels, `conditions(designs)`) is required: the model is conditional."""
        n = x0.shape[0]
        if condition is None:
            raise ValueError(
                "the digits model's denoising_loss needs the labels: pass condition=model.conditions(designs)")
        labels = self._given_labels(n, condition)
        t = torch.randint(0, self.cfg.num_train_timesteps, (n,), generator=generator)
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
        x_t = self.scheduler.add_noise(x0, noise, t)
        per_image = (self._forward(x_t, t, labels) - noise).pow(2).mean(dim=(1, 2, 3))
        if weights is None:
            return per_image.mean()
        return (weights * per_image).sum() / weights.sum()

    # ----- designs ---------------------------------------------------------------
    def conditions(self, designs: Sequence[ImageDesign]) -> torch.Tensor:
        """(N,) int64 digit labels of the designs."""
        stack_pixels(designs, self.cfg.image_size)  # the same one-line errors as the oracles give
        return self._check_labels(torch.from_numpy(digit_labels(designs)))

    def encode(self, designs: Sequence[ImageDesign]) -> torch.Tensor:
        """(N, 1, H, W) float32 in [-1, 1] from the designs' uint8 pixels."""
        return from_pixels(stack_pixels(designs, self.cfg.image_size))

    def decode(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> list[ImageDesign]:
        """Designs from (N, 1, H, W) images and their (N,) labels. A design carries its label (the
        oracle's feasibility depends on it) and pixels alone do not say it, so `condition` is
        required; the protocol's one-argument call raises."""
        if condition is None:
            raise ValueError("the digits model's decode needs the label of each image: pass condition=(N,) labels")
        return to_designs(x, self._given_labels(x.shape[0], condition))

    # ----- bookkeeping -----------------------------------------------------------
    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def frozen_copy(self) -> DigitDiffusionModel:
        frozen = copy.deepcopy(self).eval()
        frozen.requires_grad_(False)
        return frozen

    def save(self, path: str | Path) -> None:
        """Weights as safetensors at `path`, config and metadata as JSON beside it (`.json`), each
        written to a temporary file and renamed, so that a reader never sees half a checkpoint."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(tmp))
        tmp.replace(path)
        meta = {"config": asdict(self.cfg), "metadata": self.metadata}
        tmp_json = path.with_name(path.name + ".json.tmp")
        tmp_json.write_text(json.dumps(meta, indent=2) + "\n")
        tmp_json.replace(path.with_suffix(".json"))

    @classmethod
    def load(cls, path: str | Path) -> DigitDiffusionModel:
        path = Path(path)
        meta_path = path.with_suffix(".json")
        if not path.exists() or not meta_path.exists():
            raise FileNotFoundError(f"no checkpoint at {path} (with {meta_path.name} beside it)")
        meta = json.loads(meta_path.read_text())
        model = cls(DigitDiffusionConfig(**meta["config"]), meta.get("metadata"))
        model.load_state_dict(load_file(str(path)))
        return model


def pretrain_digits(
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    out: str | Path | None,
    config: DigitDiffusionConfig | None = None,
    ema_decay: float | None = 0.999,
    progress: bool = True,
) -> dict[str, Any]:
    """Fit a fresh `DigitDiffusionModel` to labelled digits with the denoising loss (AdamW,
    gradient norm clipped to 1) and save it at `out` (skipped when None) with the report in its
    metadata under "pretraining". Returns the report.

    `images`: (N, H, W) or (N, 1, H, W), uint8 pixels or floats in [-1, 1]; `labels`: (N,) ints.
    Minibatches are drawn with replacement from a generator seeded with `seed`. With `ema_decay`,
    the saved weights are an exponential moving average of the iterates (decay warmed up as
    min(ema_decay, (1 + step) / (10 + step)), as diffusers' EMAModel), which gives visibly cleaner
    samples than the last iterate for small diffusion models."""
    with torch.random.fork_rng():  # the UNet's initialisation, without touching the global RNG
        torch.manual_seed(seed)
        model = DigitDiffusionModel(config)
    s = model.cfg.image_size
    x0 = torch.as_tensor(images)
    if x0.ndim == 3:
        x0 = x0[:, None]
    if x0.shape[1:] != (1, s, s):
        raise ValueError(
            f"images must be (N, {s}, {s}) or (N, 1, {s}, {s}), got {tuple(torch.as_tensor(images).shape)}")
    if x0.dtype == torch.uint8:
        x0 = from_pixels(x0[:, 0].numpy())
    elif x0.is_floating_point():
        x0 = x0.float()
        if x0.min() < -1 or x0.max() > 1:
            raise ValueError("float images must lie in [-1, 1]; pass uint8 pixels to have them converted")
    else:
        raise ValueError(f"images must be uint8 pixels or floats in [-1, 1], got {x0.dtype}")
    y = model._check_labels(torch.as_tensor(labels).long())
    if y.shape != (len(x0),):
        raise ValueError(f"labels must be ({len(x0)},), got {tuple(y.shape)}")

    generator = torch.Generator().manual_seed(seed)
    params = model.trainable_parameters()
    opt = torch.optim.AdamW(params, lr=lr)
    ema = [p.detach().clone() for p in params] if ema_decay is not None else None
    losses, start = [], time.perf_counter()
    bar = tqdm(range(steps), desc="pretrain digits", disable=not progress)
    for step in bar:
        rows = torch.randint(0, len(x0), (batch_size,), generator=generator)
        loss = model.denoising_loss(x0[rows], generator=generator, condition=y[rows])
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if ema is not None:
            decay = min(ema_decay, (1 + step) / (10 + step))
            with torch.no_grad():
                for e, p in zip(ema, params):
                    e.lerp_(p, 1 - decay)
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
    if ema is not None:
        with torch.no_grad():
            for e, p in zip(ema, params):
                p.copy_(e)
    window = max(1, steps // 10)
    report = {
        "num_images": len(x0),
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "ema_decay": ema_decay,
        "loss_first": float(np.mean(losses[:window])) if losses else float("nan"),
        "loss_last": float(np.mean(losses[-window:])) if losses else float("nan"),
        "seconds": time.perf_counter() - start,
    }
    if out is not None:
        model.metadata["pretraining"] = report
        model.save(out)
    return report
