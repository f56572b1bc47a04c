"""Fixtures shared by the domain tests: tiny random Stable Diffusion components, built once per
session from configs and saved as a pipeline folder, so that the backend's real offline loading
path runs (`tests/domains/images/test_stable_diffusion.py`, `tests/domains/test_model_protocol.py`)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest


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
    """Tiny SD components with random weights from fixed seeds (`benchmarks.experiments.tiny_sd`);
    skips the test without the `sd` extra."""
    pytest.importorskip("transformers", reason="Stable Diffusion tests need transformers (pip install -e '.[sd]')")
    pytest.importorskip("peft", reason="Stable Diffusion tests need peft for LoRA (pip install -e '.[sd]')")
    from benchmarks.experiments.tiny_sd import build

    root = tmp_path_factory.mktemp("sd")
    pipeline, clip = build(root)
    return TinySD(pipeline=str(pipeline), clip=str(clip), root=str(root))
