"""The digits backend's diffusion model: a small class-conditional pixel-space DDIM.

A diffusers `UNet2DModel` predicts the noise eps_theta(x_t, t, y) of 16x16 greyscale images in
[-1, 1] (Ho et al. 2020, "Denoising Diffusion Probabilistic Models"), conditioned on the digit
label y through a learned class embedding added to the timestep embedding (`num_class_embeds`).
Labels play the role of prompts: DDPO's per-prompt statistics are per-digit statistics here.
Sampling is DDIM with eta > 0 (Song et al. 2021), so every reverse step is a Gaussian with a
tractable log-probability (DDPO, Black et al. 2024); the step lives in `domains/diffusion/ddim.py`
and the sampler, written once for every DDIM model, in `domains/diffusion/ddim_policy.py`: this
module supplies the UNet, the labels and the pixels.

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

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import DDIMScheduler, UNet2DModel
from torch.utils.checkpoint import checkpoint
from tqdm.auto import tqdm

from domains.diffusion.checkpoint import Checkpointed
from domains.diffusion.ddim_policy import DDIMPolicy
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


class DigitDiffusionModel(DDIMPolicy, Checkpointed):
    """The digits `DiffusionModel`: a class-conditional DDIM sampler (`DDIMPolicy`) around a
    `UNet2DModel`. Conditions are digit labels, drawn uniformly when not given. States are the
    (N, 1, H, W) images themselves; `x` (of `sample`, `sample_with_grad`, `sample_guided`, and
    what a guide scores) is a state hard-clamped to [-1, 1] (`torch.clamp`): its value is what the
    design is (up to uint8 rounding) and a saturated pixel gets no gradient, which is its true
    derivative, since pushing it further out does not change the design. A kept trajectory holds
    the unclamped states."""

    condition_name = "digit labels"
    config_cls = DigitDiffusionConfig
    # sample_with_grad checkpoints each UNet call it back-propagates through; guidance does not
    # (one UNet call, back-propagated at once, whose activations are small at 16x16).
    _checkpoint_steps, _checkpoint_guidance = True, False

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

    # ----- the DDIMPolicy hooks --------------------------------------------------
    @property
    def eta(self) -> float:
        return self.cfg.eta

    @property
    def state_shape(self) -> tuple[int, ...]:
        return (1, self.cfg.image_size, self.cfg.image_size)

    @property
    def device(self) -> torch.device:
        return self.unet.device

    @property
    def num_conditions(self) -> int:
        return self.cfg.num_classes

    def _eps(self, x: torch.Tensor, j: int, labels: torch.Tensor, checkpointed: bool = False) -> torch.Tensor:
        """eps_theta(x, t_j, labels). `checkpointed` recomputes the UNet's activations in the
        backward pass instead of keeping them (gradient checkpointing, for back-propagation
        through several sampler steps)."""
        t = torch.full((x.shape[0],), self.timesteps[j], dtype=torch.long, device=x.device)
        if checkpointed:
            return checkpoint(self._predict_noise, x, t, labels, use_reentrant=False)
        return self._predict_noise(x, t, labels)

    def _predict_noise(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.unet(x, t, class_labels=labels).sample

    def _to_x(self, state: torch.Tensor, *, differentiable: bool = False) -> torch.Tensor:
        return state.clamp(-1, 1)

    def _designs(self, x: torch.Tensor, labels: torch.Tensor) -> list[ImageDesign]:
        return to_designs(x, labels)

    # ----- designs ---------------------------------------------------------------
    def conditions(self, designs: Sequence[ImageDesign]) -> torch.Tensor:
        """(N,) int64 digit labels of the designs."""
        stack_pixels(designs, self.cfg.image_size)  # the same one-line errors as the oracles give
        return self._check_condition_range(torch.from_numpy(digit_labels(designs)))

    def encode(self, designs: Sequence[ImageDesign]) -> torch.Tensor:
        """(N, 1, H, W) float32 in [-1, 1] from the designs' uint8 pixels."""
        return from_pixels(stack_pixels(designs, self.cfg.image_size))

    # ----- bookkeeping -----------------------------------------------------------


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
    y = model._check_condition_range(torch.as_tensor(labels).long())
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
