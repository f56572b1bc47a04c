"""The Stable Diffusion backend: a latent DDIM policy with LoRA, DDPO's rewards, CLIP features.

What runs here is what DDPO (Black et al., ICLR 2024, "Training Diffusion Models with Reinforcement
Learning") and SEIKO (Uehara et al., ICML 2024, "Feedback Efficient Online Fine-Tuning of Diffusion
Models") fine-tune: Stable Diffusion v1.x (Rombach et al. 2022, "High-Resolution Image Synthesis with
Latent Diffusion Models") sampled with DDIM at eta = 1 and classifier-free guidance (Ho & Salimans
2021), prompts drawn from DDPO's 45 simple animals, LoRA adapters (Hu et al. 2022) on the UNet's
attention projections, and the LAION aesthetic predictor v2 as the oracle. It implements the same
`DiffusionModel` protocol as the digits backend (`digits_model.py`) with the same sampler, written once
for both (`domains/diffusion/ddim_policy.py`, over the step, log-prob and KL of
`domains/diffusion/ddim.py`); this module supplies the networks, the prompts, classifier-free guidance,
LoRA and the VAE between latents and images. Only the state lives elsewhere:

- the policy acts on VAE latents z (N, 4, H/8, W/8), float32 whatever `dtype` the networks run in, so
  that the step arithmetic of `ddim.py` is exact; a kept trajectory holds latents and its log-probs
  are per-latent-element means (DDPO's convention);
- the model's own representation of a sample (`SampleOutput.x`, `DifferentiableSample.x`, `encode`,
  `denoising_loss`'s x0, what `sample_guided`'s guide receives) is the decoded image (N, 3, H, W) in
  [-1, 1], so that featurisers and learned rewards see images, never latents;
- designs are `ImageDesign(uint8 (H, W, 3), prompt string)`; conditions are prompt indices into
  `StableDiffusionConfig.prompts`.

Devices: the networks run on `config.device`. What a method combines with its own CPU tensors (the
per-step log-probs, the KL, the denoising loss, the conditions, the featuriser's output) is returned on
the CPU, differentiably (`.cpu()` is a differentiable op), so the CPU-side methods and reward models run
unchanged with the diffusion model on a GPU; latents and images stay on the device.

No weights are downloaded: `load_pipeline` reads a local folder or the Hugging Face cache
(`local_files_only=True`) and says how to fill the cache otherwise; the tests build tiny random
components from configs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.func import functional_call
from torch.utils.checkpoint import checkpoint

from domains.diffusion.ddim import check_scheduler
from domains.diffusion.ddim_policy import DDIMPolicy
from domains.images.design import ImageDesign

# ddpo-pytorch's ddpo_pytorch/assets/simple_animals.txt (kvablack/ddpo-pytorch at 1958463f), in its order:
# DDPO's and SEIKO's prompts for the aesthetic and JPEG tasks, used as the bare animal name.
SIMPLE_ANIMALS: tuple[str, ...] = (
    "cat", "dog", "horse", "monkey", "rabbit", "zebra", "spider", "bird", "sheep", "deer",
    "cow", "goat", "lion", "tiger", "bear", "raccoon", "fox", "wolf", "lizard", "beetle",
    "ant", "butterfly", "fish", "shark", "whale", "dolphin", "squirrel", "mouse", "rat", "snake",
    "turtle", "frog", "chicken", "duck", "goose", "bee", "pig", "turkey", "fly", "llama",
    "camel", "bat", "gorilla", "hedgehog", "kangaroo",
)
LORA_TARGETS = ("to_k", "to_q", "to_v", "to_out.0")
"""The UNet's attention projections that get LoRA adapters: the layers diffusers' `LoRAAttnProcessor`
adapted in DDPO."""
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class StableDiffusionConfig:
    """Which Stable Diffusion to load, how to sample it and what to train. Defaults are DDPO's
    (ddpo-pytorch config/base.py at 1958463f) unless said otherwise."""

    # ----- weights -----
    pretrained: str = "stable-diffusion-v1-5/stable-diffusion-v1-5"
    """A local folder written by `StableDiffusionPipeline.save_pretrained`, or a Hub id found in the
    Hugging Face cache. SD v1.5, as DDPO and SEIKO (DDPO named it `runwayml/stable-diffusion-v1-5`,
    since removed from the Hub; this is its official mirror). Epsilon prediction only: SD 2.x at 768
    px predicts v and is refused."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) in the cache; None = the cached `main`. Ignored for folders."""

    # ----- conditions -----
    prompts: list[str] = field(default_factory=lambda: list(SIMPLE_ANIMALS))
    """The prompts a sample is conditioned on; a condition is an index into this list. Drawn uniformly
    with the sampler's generator when `sample` gets no condition (DDPO's `simple_animals`)."""

    # ----- the sampler -----
    num_steps: int = 50
    """T, DDIM steps per sample (DDPO: 50). Must divide the scheduler's 1000 training steps, so that
    DDIM's previous timestep (t - 1000 // T) is the next scheduled one."""
    eta: float = 1.0
    """DDIM's eta (Song et al. 2021, Eq. 16); > 0 so that every step has a log-probability (DDPO: 1.0)."""
    guidance_scale: float = 5.0
    """Classifier-free guidance scale s: eps = eps_uncond + s * (eps_cond - eps_uncond) (DDPO: 5.0).
    1.0 is the conditional model alone (one UNet call per step instead of two)."""
    resolution: int = 512
    """Height = width of the images in pixels (SD v1.x: 512); the latents are resolution / 8."""

    # ----- what is trained -----
    lora_rank: int = 4
    """Rank of the LoRA adapters on the attention projections (DDPO: 4, diffusers' default then);
    0 = full fine-tuning of the UNet (float32 only: Adam on half-precision weights loses updates)."""
    lora_alpha: float | None = None
    """LoRA's alpha: the update is scaled by alpha / rank. None = lora_rank, scale 1, as diffusers'
    LoRA layers that DDPO used."""
    lora_seed: int = 0
    """Seed of LoRA's A matrices (peft's Kaiming init; B = 0, so the initial model does not depend on
    it, but every gradient step does). Drawn from its own generator state, never the global one's."""
    gradient_checkpointing: bool = True
    """Recompute, in the backward pass, each UNet call and each VAE decode that direct back-propagation
    (`sample_with_grad`, `sample_guided`) goes through, keeping only their inputs: K differentiable
    steps then cost K UNet inputs, not K UNet activations (AlignProp's and DRaFT's memory trick)."""
    micro_batch: int = 8
    """Images per UNet or VAE call; larger batches are split (the draws do not depend on it). 8 is what
    ddpo-pytorch samples per A100 at 512 px in float16."""

    # ----- where and how -----
    dtype: str = "float32"
    """float32 | float16 | bfloat16: the precision of the frozen networks (UNet, VAE, text encoder).
    LoRA weights and the latents are always float32. DDPO ran float16 on GPUs; on a CPU use float32."""
    device: str = "auto"
    """A torch device ("cuda", "cuda:1", "cpu"); "auto" is the first GPU when there is one, else the CPU."""
    compile: bool = False
    """`torch.compile` the UNet (inductor). Off by default: compiling takes a minute or more and pays
    only over long runs (`python -m benchmarks.experiments.backend_costs sd-ddpo-is --set compile=true`
    measures it)."""

    def __post_init__(self) -> None:
        self.prompts = [str(p) for p in self.prompts]
        if not self.prompts:
            raise ValueError("prompts must hold at least one prompt")
        if len(set(self.prompts)) != len(self.prompts):
            dup = next(p for p in self.prompts if self.prompts.count(p) > 1)
            raise ValueError(f"prompts must be distinct (a design's prompt names its condition), {dup!r} repeats")
        if self.num_steps < 1 or 1000 % self.num_steps:
            raise ValueError(f"num_steps={self.num_steps} must divide the 1000 training timesteps"
                             " (so that DDIM's previous timestep is the next scheduled one)")
        if self.eta <= 0:
            raise ValueError(f"eta={self.eta} must be > 0: with eta = 0 DDIM is deterministic and its steps"
                             " have no log-prob")
        if self.guidance_scale < 0:
            raise ValueError(f"guidance_scale={self.guidance_scale} must be >= 0 (1 = no guidance)")
        if self.resolution < 8 or self.resolution % 8:
            raise ValueError(f"resolution={self.resolution} must be a positive multiple of 8")
        if self.lora_rank < 0:
            raise ValueError(f"lora_rank={self.lora_rank} must be >= 0 (0 = full fine-tuning)")
        if self.lora_alpha is None:
            self.lora_alpha = float(max(self.lora_rank, 1))
        if self.lora_alpha <= 0:
            raise ValueError(f"lora_alpha={self.lora_alpha} must be > 0")
        if self.micro_batch < 1:
            raise ValueError(f"micro_batch={self.micro_batch} must be >= 1")
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype={self.dtype!r}: expected one of {', '.join(_DTYPES)}")
        if self.lora_rank == 0 and self.dtype != "float32":
            raise ValueError(f"full fine-tuning (lora_rank=0) needs dtype='float32', got {self.dtype!r};"
                             " use LoRA (lora_rank > 0) for half precision")

    @property
    def torch_dtype(self) -> torch.dtype:
        return _DTYPES[self.dtype]

    @property
    def torch_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)


def honoured(config: StableDiffusionConfig) -> tuple[StableDiffusionConfig, list[str]]:
    """`config` with the settings this machine cannot honour replaced by what it can, and a line
    for each replacement (also warned): half precision on a CPU without its kernels (oneDNN's bf16
    needs AVX512-BF16 or AMX; CPUs have no fast fp16) or bfloat16 on a GPU without it run float32,
    and `compile` without a C++ compiler for inductor runs eagerly. A task records the lines in
    its info, so every cell's metrics.json and the run's manifest say what ran."""
    changes, notes = {}, []
    device = config.torch_device
    if device.type == "cpu" and config.dtype == "bfloat16" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        changes["dtype"] = "float32"
        notes.append("dtype bfloat16: this CPU has no bf16 kernels (AVX512-BF16 or AMX); running float32")
    elif device.type == "cpu" and config.dtype == "float16":
        changes["dtype"] = "float32"
        notes.append("dtype float16: CPUs have no fast float16 kernels; running float32")
    elif device.type == "cuda" and config.dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
        changes["dtype"] = "float32"
        notes.append(f"dtype bfloat16: {torch.cuda.get_device_name(device)} does not support it; running float32")
    if config.compile and device.type == "cpu" and shutil.which(os.environ.get("CXX", "g++")) is None:
        changes["compile"] = False
        notes.append("compile: inductor needs a C++ compiler on the CPU (none found; set CXX); running eagerly")
    for note in notes:
        warnings.warn(f"Stable Diffusion: {note}", stacklevel=2)
    return (dataclasses.replace(config, **changes) if changes else config), notes


# ----- loading ---------------------------------------------------------------------
def require_local(name: str, revision: str | None, probe: str, what: str) -> str:
    """`name` itself when it is a local folder or a Hub id whose `probe` file is in the cache; else a
    one-line FileNotFoundError naming where it looked and how to get it."""
    from huggingface_hub import constants, try_to_load_from_cache

    folder = Path(name).expanduser()
    if folder.is_dir():
        if not (folder / probe).exists():
            raise FileNotFoundError(f"the folder {folder} holds no {probe}: it is not a saved {what}")
        return str(folder)
    try:
        cached = try_to_load_from_cache(name, probe, revision=revision)
    except Exception:  # not even a valid Hub id (a path that does not exist, say)
        cached = None
    if not isinstance(cached, str):
        raise FileNotFoundError(
            f"no {what} {name!r}{f' (revision {revision})' if revision else ''}: not a local folder and not in"
            f" the Hugging Face cache {constants.HF_HUB_CACHE}; on a machine that is online run"
            f" `hf download {name}` (older: `huggingface-cli download {name}`) and copy the cache here,"
            f" or pass a local folder")
    return name


def load_pipeline(config: StableDiffusionConfig):
    """The `StableDiffusionPipeline` of `config.pretrained`, offline, on `config.device` in
    `config.dtype`, with its scheduler replaced by DDIM as the digits model has it.

    The DDIM scheduler keeps the pipeline's schedule (betas, prediction type, clip_sample) and sets
    `timestep_spacing="trailing"` and `set_alpha_to_one=False`, as `digits_model.py` argues: trailing
    spacing starts at t = 999, where the latents are (nearly) pure noise, and its last step goes from
    t = 1000 / T - 1 to alpha_bar_0 < 1, which keeps that step random (sigma > 0) so that it has a
    log-probability. (DDPO kept SD's "leading" spacing with steps_offset = 1, 981 .. 1: also a random
    last step, but it never starts from t = 999.) The safety checker is not loaded: DDPO disables it,
    and the oracle, not a filter, decides what a design is worth."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    source = require_local(config.pretrained, config.revision, "model_index.json", "Stable Diffusion pipeline")
    with warnings.catch_warnings():
        # diffusers 0.3x knows only `torch_dtype`; later releases prefer `dtype` and warn about the
        # old name, which they accept until 1.0 (the project's bound).
        warnings.filterwarnings("ignore", message=".*torch_dtype.*deprecated", category=FutureWarning)
        pipe = StableDiffusionPipeline.from_pretrained(
            source, revision=config.revision, torch_dtype=config.torch_dtype, local_files_only=True,
            safety_checker=None, requires_safety_checker=False)
    pipe.scheduler = DDIMScheduler.from_config(
        pipe.scheduler.config, timestep_spacing="trailing", set_alpha_to_one=False)
    check_scheduler(pipe.scheduler)  # epsilon prediction, no thresholding: what ddim.py computes
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(config.torch_device)


# ----- images <-> pixels <-> designs -------------------------------------------------
def to_rgb_pixels(x: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) float in [-1, 1] -> (N, H, W, 3) uint8, as DDPO and diffusers decode: clip to
    [-1, 1], shift to [0, 255], round."""
    if x.ndim != 4 or x.shape[1] != 3 or not x.is_floating_point():
        raise ValueError(f"expected a float tensor of shape (N, 3, H, W), got {x.dtype} {tuple(x.shape)}")
    levels = (x.detach().float() / 2 + 0.5).clamp(0, 1).mul(255).round()
    return levels.permute(0, 2, 3, 1).to(device="cpu", dtype=torch.uint8).numpy()


def from_rgb_pixels(pixels: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32 in [-1, 1]; the inverse of `to_rgb_pixels` on the
    256 levels."""
    if pixels.ndim != 4 or pixels.shape[-1] != 3 or pixels.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels of shape (N, H, W, 3), got {pixels.dtype} {pixels.shape}")
    return torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def stack_rgb(designs: Sequence[Any], resolution: int | None = None) -> np.ndarray:
    """(N, H, W, 3) uint8 pixels of RGB designs; a one-line error names the first design that is not an
    `ImageDesign` of uint8 (H, W, 3) pixels (of `resolution` when given) with a prompt string."""
    for i, design in enumerate(designs):
        if not isinstance(design, ImageDesign):
            raise TypeError(f"expected an ImageDesign, got {type(design).__name__} for design {i}")
        pixels, size = design.pixels, "(H, W, 3)" if resolution is None else f"({resolution}, {resolution}, 3)"
        ok = isinstance(pixels, np.ndarray) and pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3
        if ok and resolution is not None:
            ok = pixels.shape[:2] == (resolution, resolution)
        if not ok:
            got = f"{pixels.dtype} {pixels.shape}" if isinstance(pixels, np.ndarray) else type(pixels).__name__
            raise ValueError(f"expected uint8 RGB pixels of shape {size}, got {got} for design {i}")
        if not isinstance(design.condition, str):
            raise ValueError(f"expected a prompt string as condition, got {design.condition!r} for design {i}")
    if not designs:
        r = resolution or 0
        return np.zeros((0, r, r, 3), dtype=np.uint8)
    shapes = {d.pixels.shape for d in designs}
    if len(shapes) > 1:
        raise ValueError(f"designs of one batch must share a size, got {sorted(shapes)}")
    return np.stack([d.pixels for d in designs])


# ----- the model ---------------------------------------------------------------------
class StableDiffusionModel(DDIMPolicy):
    """The Stable Diffusion `DiffusionModel`: a text-conditional latent DDIM sampler (`DDIMPolicy`) with
    classifier-free guidance, fine-tuned through LoRA adapters on its UNet (or fully, with `lora_rank=0`).

    States are VAE latents on the device; the sampler steps with the guided noise prediction, so the
    log-probs, the KL and `sample_with_grad` are those of the guided steps. `x` is the decoded image
    (N, 3, H, W) hard-clamped to [-1, 1], on the CPU from `sample` and `sample_guided`, on the device
    (with its graph through the VAE decoder) from `sample_with_grad`; a guide scores the decoded
    predicted clean latent, so guidance costs a UNet backward and a VAE decode with its backward per
    step. Conditions are prompt indices into `StableDiffusionConfig.prompts`.

    The VAE is frozen and shared by every `frozen_copy`; the prompts' text embeddings (and the empty
    prompt's, for guidance) are computed once, and the text encoder is then let go."""

    condition_name = "prompt indices"

    def __init__(self, config: StableDiffusionConfig | None = None, pipeline: Any = None,
                 metadata: dict[str, Any] | None = None):
        """`pipeline`: an already loaded `StableDiffusionPipeline` (its components are used, not
        copied); None loads `config.pretrained` with `load_pipeline`."""
        self.cfg = cfg = honoured(config or StableDiffusionConfig())[0]
        pipe = pipeline if pipeline is not None else load_pipeline(cfg)
        self.metadata: dict[str, Any] = dict(metadata or {})
        self._device, self.dtype = cfg.torch_device, cfg.torch_dtype
        self.unet, self.vae = pipe.unet, pipe.vae
        self.scheduler = pipe.scheduler
        self.unet.requires_grad_(False).eval()
        self.vae.requires_grad_(False).eval()
        pipe.text_encoder.requires_grad_(False).eval()
        self.vae_scale = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.scaling_factor = float(self.vae.config.scaling_factor)
        self.shift_factor = float(self.vae.config.get("shift_factor") or 0.0)
        self.latent_size = cfg.resolution // self.vae_scale
        unet_stride = 2 ** (len(self.unet.config.block_out_channels) - 1)
        if cfg.resolution % self.vae_scale or self.latent_size % unet_stride:
            raise ValueError(f"resolution={cfg.resolution} must be a multiple of {self.vae_scale * unet_stride}"
                             f" (VAE factor {self.vae_scale} times the UNet's {unet_stride})")
        if self.scheduler.config.num_train_timesteps % cfg.num_steps:
            raise ValueError(f"num_steps={cfg.num_steps} must divide the scheduler's"
                             f" {self.scheduler.config.num_train_timesteps} training timesteps")
        self.scheduler.set_timesteps(cfg.num_steps)
        self.timesteps: list[int] = [int(t) for t in self.scheduler.timesteps]
        self.text_embeddings, self.null_embedding = self._embed(pipe.tokenizer, pipe.text_encoder, cfg.prompts)
        self._prompt_index = {p: i for i, p in enumerate(cfg.prompts)}
        self._overrides: dict[str, torch.Tensor] | None = None  # set on frozen copies only
        # The tokenizer and the text encoder are not kept: the prompts are fixed, so their embeddings
        # are all the text encoder is needed for (0.25 GB of GPU memory back for SD v1.5 in float16).
        if cfg.lora_rank > 0:
            self._add_lora()
        else:
            self.unet.requires_grad_(True)
        if cfg.compile:
            self.unet.compile()

    @torch.no_grad()
    def _embed(self, tokenizer, text_encoder, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(P, L, D) text embeddings of the prompts and (1, L, D) of the empty prompt, padded to the
        tokenizer's length as the pipeline (and DDPO) does."""
        tokens = tokenizer(list(prompts) + [""], padding="max_length", max_length=tokenizer.model_max_length,
                           truncation=True, return_tensors="pt")
        embedded = text_encoder(tokens.input_ids.to(self.device))[0].to(self.dtype)
        return embedded[:-1], embedded[-1:]

    def _add_lora(self) -> None:
        from peft import LoraConfig

        if getattr(self.unet, "peft_config", None):
            raise ValueError("the pipeline's UNet already has adapters: load a fresh pipeline for each model")
        # peft draws the init from the global RNG: fork it, so that the same config gives the same
        # adapters and the caller's RNG is left as it was.
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.cfg.lora_seed)
            self.unet.add_adapter(LoraConfig(r=self.cfg.lora_rank, lora_alpha=self.cfg.lora_alpha,
                                             init_lora_weights=True, target_modules=list(LORA_TARGETS)))
        # B = 0 at initialisation: the adapted model starts as the pretrained one. LoRA weights are
        # kept in float32 whatever the UNet's dtype (peft casts the input to them).
        for p in self.unet.parameters():
            if p.requires_grad:
                p.data = p.data.float()

    # ----- the DDIMPolicy hooks ------------------------------------------------------
    @property
    def eta(self) -> float:
        return self.cfg.eta

    @property
    def state_shape(self) -> tuple[int, ...]:
        return (self.unet.config.in_channels, self.latent_size, self.latent_size)

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def num_conditions(self) -> int:
        return len(self.cfg.prompts)

    @property
    def _checkpoint_steps(self) -> bool:
        return self.cfg.gradient_checkpointing

    @property
    def _checkpoint_guidance(self) -> bool:
        # The guide's VAE decode and its backward run between the UNet's forward and backward.
        return self.cfg.gradient_checkpointing

    # ----- the networks --------------------------------------------------------------
    def _unet(self, z: torch.Tensor, t: int | torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        """eps_theta(z, t, c) in float32. A frozen copy runs the shared UNet with its own snapshot of the
        trainable weights substituted (`torch.func.functional_call`), never touching the live ones."""
        args, kwargs = (z.to(self.dtype), t), {"encoder_hidden_states": embedding, "return_dict": False}
        if self._overrides is None:
            return self.unet(*args, **kwargs)[0].float()
        return functional_call(self.unet, self._overrides, args, kwargs, strict=False)[0].float()

    def _guided_eps(self, z: torch.Tensor, t: int, prompts: torch.Tensor) -> torch.Tensor:
        """Classifier-free guidance: eps_u + s * (eps_c - eps_u), both from one UNet call on 2N."""
        cond = self.text_embeddings[prompts.to(self.device)]
        s = self.cfg.guidance_scale
        if s == 1.0:
            return self._unet(z, t, cond)
        uncond = self.null_embedding.expand(len(z), -1, -1)
        eps_u, eps_c = self._unet(torch.cat([z, z]), t, torch.cat([uncond, cond])).chunk(2)
        return eps_u + s * (eps_c - eps_u)

    def _eps(self, z: torch.Tensor, j: int, prompts: torch.Tensor, checkpointed: bool = False) -> torch.Tensor:
        """Guided eps at step j, in micro-batches; `checkpointed` recomputes each micro-batch's UNet
        activations in the backward pass instead of keeping them."""
        t, m = self.timesteps[j], self.cfg.micro_batch
        parts = []
        for i in range(0, len(z), m):
            if checkpointed:
                parts.append(checkpoint(self._guided_eps, z[i:i + m], t, prompts[i:i + m], use_reentrant=False))
            else:
                parts.append(self._guided_eps(z[i:i + m], t, prompts[i:i + m]))
        return torch.cat(parts)

    def _decode_one(self, z: torch.Tensor) -> torch.Tensor:
        z = z / self.scaling_factor + self.shift_factor
        return self.vae.decode(z.to(self.dtype), return_dict=False)[0].float()

    def _decode(self, z: torch.Tensor, checkpointed: bool = False) -> torch.Tensor:
        """(N, 3, H, W) float32 images (not clamped) from latents, through the VAE decoder, in
        micro-batches; differentiable in z when grad is on."""
        m = self.cfg.micro_batch
        if checkpointed:
            return torch.cat([checkpoint(self._decode_one, z[i:i + m], use_reentrant=False)
                              for i in range(0, len(z), m)])
        return torch.cat([self._decode_one(z[i:i + m]) for i in range(0, len(z), m)])

    @torch.no_grad()
    def _encode_latents(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Latents of images x (N, 3, H, W) in [-1, 1]: a draw from the VAE posterior, scaled as the
        UNet was trained on (Rombach et al. 2022); the draw comes from `generator`."""
        out = []
        for i in range(0, len(x), self.cfg.micro_batch):
            posterior = self.vae.encode(x[i:i + self.cfg.micro_batch].to(self.device, self.dtype)).latent_dist
            noise = torch.randn(posterior.mean.shape, generator=generator).to(self.device)
            z = posterior.mean.float() + posterior.std.float() * noise
            out.append((z - self.shift_factor) * self.scaling_factor)
        return torch.cat(out)

    def _predict_noise(self, z_t: torch.Tensor, t: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
        """The conditional eps_theta(z_t, t, c) (no guidance) at training timesteps t (N,), in
        micro-batches: what `denoising_loss` trains."""
        cond = self.text_embeddings[prompts.to(self.device)]
        m = self.cfg.micro_batch
        return torch.cat([self._unet(z_t[i:i + m], t[i:i + m].to(self.device), cond[i:i + m])
                          for i in range(0, len(z_t), m)])

    # ----- latents <-> images <-> designs ----------------------------------------------
    def _clean_state(self, x0: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """z_0 for images x0: a draw from the VAE posterior (Rombach et al. 2022)."""
        if x0.ndim != 4 or x0.shape[1:] != (3, self.cfg.resolution, self.cfg.resolution):
            r = self.cfg.resolution
            raise ValueError(f"x0 must be images of shape (N, 3, {r}, {r}) in [-1, 1], got {tuple(x0.shape)}")
        return self._encode_latents(x0.float(), generator)

    def _to_x(self, z: torch.Tensor, *, differentiable: bool = False) -> torch.Tensor:
        """Images in [-1, 1] from latents: on the device with the decoder's graph when
        `differentiable` (checkpointed with `gradient_checkpointing`), else on the CPU."""
        if differentiable:
            return self._decode(z, checkpointed=self.cfg.gradient_checkpointing).clamp(-1, 1)
        return self._decode(z).clamp(-1, 1).cpu()

    def _designs(self, images: torch.Tensor, prompts: torch.Tensor) -> list[ImageDesign]:
        return [ImageDesign(p, self.cfg.prompts[int(i)]) for p, i in zip(to_rgb_pixels(images), prompts.tolist())]

    # ----- designs ---------------------------------------------------------------------
    def conditions(self, designs: Sequence[ImageDesign]) -> torch.Tensor:
        """(N,) int64 prompt indices of the designs; a one-line error for a prompt not in the list."""
        stack_rgb(designs, self.cfg.resolution)
        out = []
        for i, d in enumerate(designs):
            if d.condition not in self._prompt_index:
                raise ValueError(f"design {i} has prompt {d.condition!r}, which is not one of this model's"
                                 f" {len(self.cfg.prompts)} prompts (StableDiffusionConfig.prompts)")
            out.append(self._prompt_index[d.condition])
        return torch.tensor(out, dtype=torch.long)

    def encode(self, designs: Sequence[ImageDesign]) -> torch.Tensor:
        """(N, 3, H, W) float32 images in [-1, 1] (CPU) from the designs' uint8 pixels."""
        return from_rgb_pixels(stack_rgb(designs, self.cfg.resolution))

    # ----- bookkeeping -----------------------------------------------------------------
    def _named_weights(self) -> dict[str, torch.Tensor]:
        """The weights that make this model differ from `pretrained`: its LoRA weights (or the whole
        UNet when fully fine-tuned), a frozen copy's own snapshot of them."""
        if self._overrides is not None:
            return self._overrides
        return {name: p for name, p in self.unet.named_parameters() if p.requires_grad}

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The LoRA weights (every UNet weight with `lora_rank=0`); none for a frozen copy."""
        if self._overrides is not None:
            return []
        return list(self._named_weights().values())

    def frozen_copy(self) -> StableDiffusionModel:
        """The KL anchor: a model that shares this one's UNet, VAE and text embeddings and
        holds only a detached snapshot of the trainable weights (3.2 MB of LoRA weights for SD v1.5 at
        rank 4; the whole UNet, 3.4 GB in float32, when fully fine-tuned), which its UNet calls
        substitute for the live ones (`torch.func.functional_call`). A snapshot, not the UNet with its
        adapters disabled: SEIKO's anchor is the previous round's model, not the pretrained one."""
        frozen = object.__new__(StableDiffusionModel)
        frozen.__dict__.update(self.__dict__)
        frozen.metadata = dict(self.metadata)
        frozen._overrides = {name: w.detach().clone() for name, w in self._named_weights().items()} \
            if self._overrides is None else self._overrides  # a frozen copy's snapshot never changes
        return frozen

    def save(self, path: str | Path) -> None:
        """The trainable weights (LoRA, or the whole UNet) as safetensors at `path`, the config and
        metadata as JSON beside it (`.json`), each written to a temporary file and renamed, so that a
        reader never sees half a checkpoint. `load` rebuilds the model from `pretrained` plus these."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        save_file({k: v.detach().float().cpu().contiguous() for k, v in self._named_weights().items()}, str(tmp))
        tmp.replace(path)
        meta = {"config": asdict(self.cfg), "metadata": self.metadata,
                "weights": "lora" if self.cfg.lora_rank > 0 else "unet"}
        tmp_json = path.with_name(path.name + ".json.tmp")
        tmp_json.write_text(json.dumps(meta, indent=2) + "\n")
        tmp_json.replace(path.with_suffix(".json"))

    @classmethod
    def load(cls, path: str | Path, **overrides: Any) -> StableDiffusionModel:
        """The model saved at `path`: `pretrained` loaded again, then the saved weights. `overrides`
        replace config fields (another `device`, or `pretrained` moved to another folder)."""
        path = Path(path)
        meta_path = path.with_suffix(".json")
        if not path.exists() or not meta_path.exists():
            raise FileNotFoundError(f"no Stable Diffusion checkpoint at {path} (with {meta_path.name} beside it)")
        meta = json.loads(meta_path.read_text())
        config = dataclasses.replace(StableDiffusionConfig(**meta["config"]), **overrides)
        model = cls(config, metadata=meta.get("metadata"))
        weights, own = load_file(str(path)), model._named_weights()
        if set(weights) != set(own):
            missing, extra = sorted(set(own) - set(weights)), sorted(set(weights) - set(own))
            raise ValueError(f"{path} does not fit this model: {len(missing)} weights missing (e.g. {missing[:1]}),"
                             f" {len(extra)} unexpected (e.g. {extra[:1]})")
        with torch.no_grad():
            for name, w in weights.items():
                own[name].copy_(w)
        return model
