"""Stable Diffusion components with random weights, built from configs and saved as a
pipeline folder, so that the backend's real offline loading path runs without a download:
the tests use the smallest (`TEST_SIZE`), the backend cost benchmark a wider UNet
(`BENCH_SIZE`, about a million parameters) on the same 32x32 RGB images."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class Size:
    """The widths of a tiny pipeline; everything else (VAE factor 2, 16x16 latents, CLIP) is shared."""

    unet_channels: tuple[int, int]
    layers_per_block: int
    cross_attention_dim: int
    attention_head_dim: int
    norm_groups: int


TEST_SIZE = Size((8, 16), 1, 16, 2, 4)
BENCH_SIZE = Size((32, 64), 2, 32, 8, 8)
"""1.1M UNet parameters: DDPO's workload at a size two CPU cores sample in seconds."""


def build(root: Path, size: Size = TEST_SIZE, seed: int = 0) -> tuple[Path, Path]:
    """Write a `StableDiffusionPipeline.save_pretrained` folder (UNet, VAE, CLIP text encoder,
    tokenizer, SD v1.5's PNDM scheduler config) and a `CLIPVisionModelWithProjection` folder
    (projection 768, as ViT-L/14's) under `root`, from fixed seeds; returns their paths."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        CLIPTokenizer,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
    )

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in "abcdefghijklmnopqrstuvwxyz":
        vocab[c], vocab[c + "</w>"] = len(vocab), len(vocab) + 1
    (root / "vocab.json").write_text(json.dumps(vocab))
    (root / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(root / "vocab.json"), str(root / "merges.txt"), model_max_length=16)
    width = size.cross_attention_dim
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            sample_size=16, in_channels=4, out_channels=4, block_out_channels=size.unet_channels,
            layers_per_block=size.layers_per_block, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=width,
            norm_num_groups=size.norm_groups, attention_head_dim=size.attention_head_dim)
        vae = AutoencoderKL(
            in_channels=3, out_channels=3, block_out_channels=(8, 16), latent_channels=4, norm_num_groups=4,
            down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2, sample_size=32)
        text_encoder = CLIPTextModel(CLIPTextConfig(
            vocab_size=len(vocab), hidden_size=width, intermediate_size=2 * width, num_hidden_layers=1,
            num_attention_heads=2, max_position_embeddings=16, bos_token_id=0, eos_token_id=1, pad_token_id=1))
        vision = CLIPVisionModelWithProjection(CLIPVisionConfig(
            hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=16,
            patch_size=8, projection_dim=768))
    # SD v1.5 ships a PNDM scheduler config; the backend turns it into DDIM.
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True,
                              set_alpha_to_one=False, steps_offset=1)
    StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                            safety_checker=None, feature_extractor=None, requires_safety_checker=False,
                            ).save_pretrained(root / "pipeline")
    vision.save_pretrained(root / "clip")
    return root / "pipeline", root / "clip"
