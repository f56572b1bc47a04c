"""Rewards and features for Stable Diffusion images: CLIP, the LAION aesthetic
predictor, and DDPO's JPEG tasks on RGB images.

The LAION aesthetic predictor v2 (improved-aesthetic-predictor) is an MLP on
L2-normalised CLIP ViT-L/14 image embeddings; SEIKO and DDPO use it as the
image oracle. Its weights and CLIP come from local files or the Hugging Face
cache (nothing is downloaded here). CLIP's preprocessing is written out twice,
with PIL as the oracle sees images (as DDPO does) and in torch, differentiably,
for the featuriser of learned rewards: transformers 5's image processor needs
torchvision, which does not install beside this project's CPU torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from domains.base import OracleOutput
from domains.images.design import ImageDesign
from domains.images.jpeg import jpeg_size_kb
from domains.images.stable_diffusion import from_rgb_pixels, require_local, stack_rgb

DEFAULT_CLIP = "openai/clip-vit-large-patch14"
"""CLIP ViT-L/14: the image encoder the LAION aesthetic predictor was trained on (768-d embeddings)."""
AESTHETIC_WEIGHTS_NAME = "sac+logos+ava1-l14-linearMSE.pth"
AESTHETIC_SOURCE = "https://github.com/christophschuhmann/improved-aesthetic-predictor"
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


# ----- CLIP ----------------------------------------------------------------------------
def load_clip_vision(clip: str = DEFAULT_CLIP, *, device: str | torch.device = "cpu",
                     dtype: torch.dtype = torch.float32, revision: str | None = None):
    """CLIP's image tower with its projection (`CLIPVisionModelWithProjection`), offline, frozen, in
    eval mode. Loads from a full CLIP checkpoint (as `openai/clip-vit-large-patch14`) too."""
    from transformers import CLIPVisionModelWithProjection

    source = require_local(clip, revision, "config.json", "CLIP model")
    kwargs = {"revision": revision} if revision else {}
    vision = CLIPVisionModelWithProjection.from_pretrained(source, local_files_only=True, dtype=dtype, **kwargs)
    return vision.to(device).eval().requires_grad_(False)


class ClipPreprocess:
    """CLIP's image preprocessing: resize the shorter side to the model's input size (bicubic), crop
    the centre square, scale to [0, 1], normalise with OpenAI's mean and std.

    Two implementations of the same map: `pil` reproduces `CLIPImageProcessor` (and OpenAI's
    `clip.load` preprocess) on uint8 images exactly, through PIL, which is what DDPO's aesthetic
    reward ran; `torch` does it on float tensors, differentiably (antialiased bicubic,
    `F.interpolate`), for relaxed samples. They agree to about one grey level."""

    def __init__(self, size: int, mean: Sequence[float] = OPENAI_CLIP_MEAN, std: Sequence[float] = OPENAI_CLIP_STD):
        self.size = size
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)

    def _resized(self, h: int, w: int) -> tuple[int, int]:
        short, long = (h, w) if h <= w else (w, h)
        new_long = int(self.size * long / short)
        return (self.size, new_long) if h <= w else (new_long, self.size)

    def pil(self, pixels: np.ndarray) -> torch.Tensor:
        """(N, H, W, 3) uint8 -> (N, 3, size, size) float32."""
        out = []
        for p in pixels:
            h, w = self._resized(*p.shape[:2])
            image = np.asarray(Image.fromarray(p).resize((w, h), Image.Resampling.BICUBIC))
            top, left = (h - self.size) // 2, (w - self.size) // 2
            out.append(image[top:top + self.size, left:left + self.size])
        x = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float() / 255.0
        return (x - self.mean) / self.std

    def torch(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) images in [-1, 1] -> (N, 3, size, size) float32, differentiable in x."""
        h, w = self._resized(*x.shape[2:])
        x01 = F.interpolate((x.float() / 2 + 0.5).clamp(0, 1), size=(h, w), mode="bicubic", antialias=True,
                            align_corners=False).clamp(0, 1)
        top, left = (h - self.size) // 2, (w - self.size) // 2
        x01 = x01[:, :, top:top + self.size, left:left + self.size]
        return (x01 - self.mean.to(x01.device)) / self.std.to(x01.device)


def _embed_images(vision: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    """(N, projection_dim) L2-normalised CLIP image embeddings, float32, on the CPU."""
    param = next(vision.parameters())
    embeds = vision(pixel_values=pixel_values.to(param.device, param.dtype)).image_embeds.float()
    return (embeds / embeds.norm(dim=-1, keepdim=True)).cpu()


class ClipFeaturiser:
    """Reward-model features of SD images: the L2-normalised CLIP image embedding (768-d for
    ViT-L/14), the input SEIKO's and the LAION aesthetic predictor's MLPs read.

    Hard designs and relaxed samples go through the same torch preprocessing (`ClipPreprocess.torch`),
    so `featuriser(designs)` equals `relaxed(model.encode(designs))` and a reward model learned on the
    one scores the other consistently. Features are float32 on the CPU, where reward models live."""

    def __init__(self, vision: nn.Module | Callable[[], nn.Module], config: Any = None, micro_batch: int = 32):
        """`vision` is the loaded tower, or a function that loads it, called on first use
        with `config` (the tower's config: image size, projection width) known already."""
        self._vision, self._load = (vision, None) if isinstance(vision, nn.Module) else (None, vision)
        config = config if config is not None else vision.config
        self.preprocess = ClipPreprocess(int(config.image_size))
        self.dim = int(config.projection_dim)
        self.micro_batch = micro_batch

    @property
    def vision(self) -> nn.Module:
        if self._vision is None:
            self._vision = self._load().eval().requires_grad_(False)
        return self._vision

    @classmethod
    def from_pretrained(cls, clip: str = DEFAULT_CLIP, *, device: str | torch.device = "cpu",
                        dtype: torch.dtype = torch.float32) -> ClipFeaturiser:
        """CLIP's image tower as features, its weights loaded when first used: a method that learns
        no reward model (DDPO) never loads them (issue 17: ViT-L/14 is 1.2 GB in float32)."""
        from transformers import CLIPVisionConfig

        source = require_local(clip, None, "config.json", "CLIP model")
        config = CLIPVisionConfig.from_pretrained(source, local_files_only=True)
        return cls(lambda: load_clip_vision(clip, device=device, dtype=dtype), config)

    def __call__(self, designs: Sequence[ImageDesign]) -> torch.Tensor:
        """(N, dim) float32 features of designs with (H, W, 3) uint8 pixels."""
        x = from_rgb_pixels(stack_rgb(designs))
        with torch.no_grad():
            parts = [self.relaxed(x[i:i + self.micro_batch]) for i in range(0, len(x), self.micro_batch)]
        return torch.cat(parts) if parts else torch.zeros(0, self.dim)

    def relaxed(self, x: torch.Tensor) -> torch.Tensor:
        """(N, dim) features of images x (N, 3, H, W) in [-1, 1], differentiable in x."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images of shape (N, 3, H, W) in [-1, 1], got {tuple(x.shape)}")
        return _embed_images(self.vision, self.preprocess.torch(x))


# ----- the LAION aesthetic predictor ----------------------------------------------------
class AestheticMLP(nn.Module):
    """The improved-aesthetic-predictor head (christophschuhmann/improved-aesthetic-predictor,
    `simple_inference.py`; DDPO's `aesthetic_scorer.py`): linear layers 768 -> 1024 -> 128 -> 64 ->
    16 -> 1 with dropouts 0.2, 0.2, 0.1 and no activations (they are commented out in the original, so
    the head is an affine map of the embedding). Module names match the published state dict
    (`layers.0.weight` ... `layers.7.bias`)."""

    def __init__(self, embed_dim: int = 768):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(embed_dim, 1024), nn.Dropout(0.2),
            nn.Linear(1024, 128), nn.Dropout(0.2),
            nn.Linear(128, 64), nn.Dropout(0.1),
            nn.Linear(64, 16),
            nn.Linear(16, 1),
        )

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.layers(embedding).squeeze(-1)

    @classmethod
    def load(cls, path: str | Path, embed_dim: int = 768) -> AestheticMLP:
        """The head with the weights of `path` (`sac+logos+ava1-l14-linearMSE.pth`), in eval mode."""
        path = Path(path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"no aesthetic predictor weights at {path}; download {AESTHETIC_WEIGHTS_NAME}"
                                    f" from {AESTHETIC_SOURCE} and pass its path")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:  # a Lightning checkpoint of the same module
            state = state["state_dict"]
        mlp = cls(embed_dim)
        try:
            mlp.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError) as err:
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ValueError(f"{path} is not the aesthetic MLP's state dict (layers.0 .. layers.7 of"
                             f" {embed_dim} -> 1024 -> 128 -> 64 -> 16 -> 1): {first}") from None
        return mlp.eval().requires_grad_(False)


class AestheticPredictor:
    """LAION aesthetic predictor v2: the MLP head on the L2-normalised CLIP ViT-L/14 image embedding of
    the image preprocessed as `CLIPImageProcessor` does (through PIL), as DDPO's aesthetic reward."""

    def __init__(self, vision: nn.Module, mlp: AestheticMLP, micro_batch: int = 32):
        dim = int(vision.config.projection_dim)
        in_dim = mlp.layers[0].in_features
        if dim != in_dim:
            raise ValueError(f"the CLIP model embeds in {dim} dimensions but the aesthetic MLP reads {in_dim}:"
                             f" use CLIP ViT-L/14 ({DEFAULT_CLIP})")
        self.vision, self.mlp, self.micro_batch = vision.eval().requires_grad_(False), mlp, micro_batch
        self.preprocess = ClipPreprocess(int(vision.config.image_size))

    @classmethod
    def from_files(cls, weights: str | Path, clip: str = DEFAULT_CLIP, *, device: str | torch.device = "cpu",
                   dtype: torch.dtype = torch.float32) -> AestheticPredictor:
        mlp = AestheticMLP.load(weights)  # the missing-file error before CLIP's seconds of loading
        return cls(load_clip_vision(clip, device=device, dtype=dtype), mlp)

    @torch.no_grad()
    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        """(N,) float64 aesthetic scores of (N, H, W, 3) uint8 images."""
        out = []
        for i in range(0, len(pixels), self.micro_batch):
            embedding = _embed_images(self.vision, self.preprocess.pil(pixels[i:i + self.micro_batch]))
            out.append(self.mlp(embedding).double().numpy())
        return np.concatenate(out) if out else np.zeros(0)


# ----- oracles ---------------------------------------------------------------------------
class _SDOracle:
    """Shared by the SD oracles: every design is feasible. DDPO's aesthetic and JPEG tasks have no
    feasibility constraint, and a generated image is always a well-formed design; a user who has one
    (an NSFW filter, a prompt-fidelity check) wraps the oracle and returns NaN where it fails."""

    name: str
    floor: float
    optimum = None

    def __init__(self, resolution: int | None = None):
        self.resolution = resolution

    def _score(self, pixels: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, designs: Sequence[ImageDesign]) -> OracleOutput:
        pixels = stack_rgb(designs, self.resolution)
        reward = np.asarray(self._score(pixels), dtype=np.float64)
        return OracleOutput(reward=reward, feasible=np.ones(len(pixels), dtype=bool))

    def key(self, design: ImageDesign) -> str:
        """`ImageDesign.key`: pixels and prompt."""
        stack_rgb([design], self.resolution)  # the same one-line errors as a query
        return design.key()


class AestheticOracle(_SDOracle):
    """DDPO's and SEIKO's aesthetic reward: the LAION aesthetic predictor's score of the image.
    `floor` (what an infeasible design would count as; none is) is 1, the bottom of the 1-10 rating
    scale the predictor was trained on."""

    floor = 1.0

    def __init__(self, predictor: AestheticPredictor, resolution: int | None = None):
        super().__init__(resolution)
        self.predictor = predictor
        self.name = "sd-aesthetic"

    def _score(self, pixels: np.ndarray) -> np.ndarray:
        return self.predictor(pixels)


@cache
def smallest_rgb_jpeg_kb(resolution: int) -> float:
    """The JPEG size (quality 95, kB) of the most compressible (resolution, resolution) RGB image: the
    least over the 256 grey constant images, whose chroma is 0 after the YCbCr transform; mid-grey
    makes every DC difference 0 as well (`jpeg.py`'s argument for greyscale)."""
    return min(jpeg_size_kb(np.full((resolution, resolution, 3), level, dtype=np.uint8)) for level in range(256))


@cache
def noise_rgb_jpeg_kb(resolution: int, seed: int = 0) -> float:
    """The JPEG size (quality 95, kB) of seeded black-and-white salt-and-pepper RGB noise, whose JPEGs
    are larger than uniform noise's (`jpeg.py`): a reference point far above any natural image."""
    rng = np.random.default_rng(seed)
    return jpeg_size_kb((rng.integers(0, 2, (resolution, resolution, 3)) * 255).astype(np.uint8))


class _SDJpegOracle(_SDOracle):
    """JPEG size at quality 95 in kB (`jpeg.jpeg_size_kb`, DDPO's definition) of the RGB image, times
    `sign`. With no infeasible designs the floors never enter a score; they are the worst rewards a
    wrapped feasibility check would need."""

    task: str
    sign: float

    def __init__(self, resolution: int | None = None):
        super().__init__(resolution)
        self.name = f"sd-{self.task}"

    def _score(self, pixels: np.ndarray) -> np.ndarray:
        return self.sign * np.array([jpeg_size_kb(p) for p in pixels], dtype=np.float64)


class SDJpegCompressibility(_SDJpegOracle):
    """DDPO's JPEG compressibility on SD images: minus the JPEG size in kB. Floor: minus the JPEG of
    salt-and-pepper noise at `resolution` (512 when not given)."""

    task, sign = "jpeg-compressibility", -1.0

    @property
    def floor(self) -> float:
        return -noise_rgb_jpeg_kb(self.resolution or 512)


class SDJpegIncompressibility(_SDJpegOracle):
    """DDPO's JPEG incompressibility on SD images: the JPEG size in kB. Floor: the smallest JPEG at
    `resolution` (512 when not given), that of a constant grey image."""

    task, sign = "jpeg-incompressibility", 1.0

    @property
    def floor(self) -> float:
        return smallest_rgb_jpeg_kb(self.resolution or 512)
