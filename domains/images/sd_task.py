"""A benchmark task on a user's own Stable Diffusion checkpoint.

Not registered by name (it needs a checkpoint and, for the aesthetic reward,
weights that are not shipped): a spec names it by import path, with the
checkpoint and the reward as task parameters (`benchmarks/specs/sd-aesthetic.yaml`):

    tasks:
      - task: domains.images.sd_task:build_task
        name: sd-aesthetic
        params: {config: {pretrained: /path/to/sd-v1-5}, reward: aesthetic,
                 aesthetic_weights: /path/to/sac+logos+ava1-l14-linearMSE.pth}
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from domains.base import Task, UnknownName
from domains.images.sd_rewards import (
    AESTHETIC_SOURCE,
    AESTHETIC_WEIGHTS_NAME,
    DEFAULT_CLIP,
    AestheticMLP,
    AestheticOracle,
    AestheticPredictor,
    ClipFeaturiser,
    SDJpegCompressibility,
    SDJpegIncompressibility,
    load_clip_vision,
)
from domains.images.stable_diffusion import StableDiffusionConfig, StableDiffusionModel, honoured

REWARDS = ("aesthetic", "jpeg-compressibility", "jpeg-incompressibility")


def build_task(
    config: StableDiffusionConfig | dict[str, Any],
    reward: str = "aesthetic",
    aesthetic_weights: str | Path | None = None,
    clip: str = DEFAULT_CLIP,
) -> Task:
    """A benchmark task on a user's Stable Diffusion: `config` says which checkpoint and how to sample
    it, `reward` which oracle scores the images (the aesthetic predictor needs `aesthetic_weights`,
    the path of `sac+logos+ava1-l14-linearMSE.pth`). The featuriser is CLIP (`clip`, ViT-L/14 by
    default; for the aesthetic task the oracle's own CLIP is shared, not loaded twice; for the JPEG
    tasks its weights load when a method first asks for features, so DDPO never loads them). The model is
    loaded when the task's `load_model` is called, on `config.device`. From a spec, `config` is a
    mapping of `StableDiffusionConfig`'s fields."""
    if isinstance(config, dict):
        names = {f.name for f in dataclasses.fields(StableDiffusionConfig)}
        unknown = sorted(set(config) - names)
        if unknown:
            raise ValueError(f"Stable Diffusion config: unknown settings {unknown}; known: {', '.join(sorted(names))}")
        config = StableDiffusionConfig(**config)
    config, fallbacks = honoured(config)
    if reward not in REWARDS:
        raise UnknownName("Stable Diffusion reward", reward, REWARDS)
    if reward == "aesthetic" and aesthetic_weights is None:
        raise ValueError(f"reward='aesthetic' needs aesthetic_weights=PATH of {AESTHETIC_WEIGHTS_NAME}"
                         f" (from {AESTHETIC_SOURCE})")
    oracle: AestheticOracle | SDJpegCompressibility | SDJpegIncompressibility
    if reward == "aesthetic":  # the oracle's CLIP is the featuriser's too: loaded once, now
        vision = load_clip_vision(clip, device=config.torch_device, dtype=config.torch_dtype)
        oracle = AestheticOracle(AestheticPredictor(vision, AestheticMLP.load(aesthetic_weights)), config.resolution)
        featuriser = ClipFeaturiser(vision)
    else:  # JPEG sizes need no CLIP: its weights wait for a method that learns a reward model
        oracle = (SDJpegCompressibility if reward == "jpeg-compressibility" else SDJpegIncompressibility)(
            config.resolution)
        featuriser = ClipFeaturiser.from_pretrained(clip, device=config.torch_device, dtype=config.torch_dtype)
    return Task(
        name=f"sd-{reward}",
        domain="images",
        description=f"{reward} of {config.resolution}px Stable Diffusion images ({config.pretrained}),"
                    f" {len(config.prompts)} prompts, every design feasible",
        oracle=oracle,
        featuriser=featuriser,
        load_model=lambda: StableDiffusionModel(config),
        info={"oracle": oracle.name, "pretrained": config.pretrained, "resolution": config.resolution,
              "num_steps": config.num_steps, "guidance_scale": config.guidance_scale,
              "lora_rank": config.lora_rank, "clip": clip, "prompts": len(config.prompts), "dtype": config.dtype,
              "compile": config.compile, "gradient_checkpointing": config.gradient_checkpointing,
              "fallbacks": fallbacks},
    )
