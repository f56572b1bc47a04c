"""Fixtures shared by the domain tests: tiny random Stable Diffusion components, built once per
session from configs and saved as a pipeline folder, so that the backend's real offline loading
path runs (`tests/domains/images/test_stable_diffusion.py`, `tests/domains/test_model_protocol.py`)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch


@dataclass(frozen=True)
class TinySD:
    """Where the tiny components lie, and the settings every test starts from."""

    pipeline: str
    """A `StableDiffusionPipeline.save_pretrained` folder: UNet, VAE (factor 2), CLIP text encoder, tokenizer."""
    clip: str
    """A `CLIPVisionModelWithProjection` folder (projection 768, as ViT-L/14's) for the rewards and features."""
    root: str
    prompts: tuple[str, ...] = ("cat", "dog", "fox")
    resolution: int = 32
    """Images 32x32, latents 16x16 with the tiny VAE's factor 2."""

    def config(self, **changes):
        from domains.images.stable_diffusion import StableDiffusionConfig

        settings = {"pretrained": self.pipeline, "prompts": list(self.prompts), "num_steps": 4,
                    "resolution": self.resolution, "micro_batch": 4, "device": "cpu"}
        return StableDiffusionConfig(**(settings | changes))

    def model(self, **changes):
        from domains.images.stable_diffusion import StableDiffusionModel

        return StableDiffusionModel(self.config(**changes))


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory) -> TinySD:
    """Tiny SD components with random weights from fixed seeds; skips the test without the `sd` extra."""
    pytest.importorskip("transformers", reason="Stable Diffusion tests need transformers (pip install -e '.[sd]')")
    pytest.importorskip("peft", reason="Stable Diffusion tests need peft for LoRA (pip install -e '.[sd]')")
    from diffusers import (
        AutoencoderKL,
        PNDMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        CLIPTokenizer,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
    )

    root = tmp_path_factory.mktemp("sd")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in "abcdefghijklmnopqrstuvwxyz":
        vocab[c], vocab[c + "</w>"] = len(vocab), len(vocab) + 1
    (root / "vocab.json").write_text(json.dumps(vocab))
    (root / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(root / "vocab.json"), str(root / "merges.txt"), model_max_length=16)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        unet = UNet2DConditionModel(
            sample_size=16, in_channels=4, out_channels=4, block_out_channels=(8, 16), layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=16, norm_num_groups=4, attention_head_dim=2)
        vae = AutoencoderKL(
            in_channels=3, out_channels=3, block_out_channels=(8, 16), latent_channels=4, norm_num_groups=4,
            down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2, sample_size=32)
        text_encoder = CLIPTextModel(CLIPTextConfig(
            vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
            max_position_embeddings=16, bos_token_id=0, eos_token_id=1, pad_token_id=1))
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
    return TinySD(pipeline=str(root / "pipeline"), clip=str(root / "clip"), root=str(root))
