"""A masked (absorbing-state) discrete diffusion model of fixed-length sequences.

Sahoo et al. 2024, "Simple and Effective Masked Diffusion Language Models"
(MDLM), sampled, scored and trained by `MaskedPolicy`
(`domains/diffusion/masked_policy.py`, which states the process): a state is
one field of L tokens, each masked and revealed on its own. What is the
sequence model's own is its denoiser and its alphabet.

Why the sampler reveals few positions per step and truncates its draws, as
measured on the protein task. MDLM's own T-step sampler reveals each masked
position independently with probability 1 / (T - j), so neighbours are often
revealed together and drawn independently: 54% of the banned transitions in
samples sat between neighbours revealed in one step; the first-hitting sampler
reveals floor(L (j+1) / T) - floor(L j / T) positions at step j, one at T = L.
And the denoiser spreads a little mass over tokens its training data never
shows after their neighbours: over 31 neighbour pairs that mass made 34% of
the protein model's samples infeasible, which min-p truncation (`min_p`: never
draw a token below min_p times the top token's probability) removes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from domains.diffusion.checkpoint import Checkpointed
from domains.diffusion.masked import Field
from domains.diffusion.masked_policy import Fields, MaskedPolicy, MaskedSamplerConfig
from domains.sequences import alphabet as alpha


@dataclass
class MDLMConfig(MaskedSamplerConfig):
    """Architecture and sampler of the masked diffusion model (the sampler's settings,
    `gumbel_temperature` and `min_p`, are `MaskedSamplerConfig`'s)."""

    alphabet: str
    """The letters of the sequences; token i is alphabet[i], the mask is token len(alphabet)."""
    length: int
    """L, the fixed sequence length."""
    num_steps: int = 32
    """T, reverse steps when sampling; T = L reveals one position per step."""
    d_model: int = 64
    """Width of the transformer denoiser."""
    n_layers: int = 3
    """Transformer layers."""
    n_heads: int = 4
    """Attention heads."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")
        if self.length < 1:
            raise ValueError(f"length must be positive, got {self.length}")

    @property
    def vocab_size(self) -> int:
        return len(self.alphabet)


class Denoiser(nn.Module):
    """A bidirectional transformer from (relaxed) one-hot z_t to clean-token logits.

    The input is one-hot over vocab + mask, embedded by a linear map, so that
    hard tokens and Gumbel-softmax relaxations go through the same path. No time
    input: for the absorbing process the mask pattern carries it (MDLM Sec. 3.2).
    """

    def __init__(self, cfg: MDLMConfig):
        super().__init__()
        self.embed = nn.Linear(cfg.vocab_size + 1, cfg.d_model, bias=False)
        self.position = nn.Parameter(0.02 * torch.randn(cfg.length, cfg.d_model))
        layer = nn.TransformerEncoderLayer(
            cfg.d_model, cfg.n_heads, 4 * cfg.d_model, dropout=0.0, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, cfg.n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.encoder(self.embed(z) + self.position)
        return self.head(self.norm(h))


class MaskedDiffusionModel(MaskedPolicy, Checkpointed):
    """The sequence-domain `DiffusionModel`: the masked sampler (`MaskedPolicy`) around a
    `Denoiser`. A state is (N, L) token indices; `DifferentiableSample.x`, and what a guide
    scores, is (N, L, V) token probabilities."""

    config_cls = MDLMConfig

    def __init__(self, cfg: MDLMConfig, metadata: dict[str, Any] | None = None):
        super().__init__(cfg, (Field(cfg.vocab_size, (cfg.length,)),), metadata)
        self.denoiser = Denoiser(cfg)

    @property
    def mask_id(self) -> int:
        return self.cfg.vocab_size

    # ----- the MaskedPolicy hooks ------------------------------------------------
    def _logits(self, z: Fields) -> Fields:
        return (self.denoiser(*z),)

    def _split(self, x: torch.Tensor) -> Fields:
        return (x,)

    def _state(self, values: Fields) -> torch.Tensor:
        (tokens,) = values
        return tokens

    def _soft(self, probs: Fields) -> torch.Tensor:
        (tokens,) = probs
        return tokens

    # ----- designs -----------------------------------------------------------------
    def encode(self, designs: Sequence[str]) -> torch.Tensor:
        return alpha.encode(designs, self.cfg.alphabet, self.cfg.length)

    def decode(self, x: torch.Tensor) -> list[str]:
        return alpha.decode(x, self.cfg.alphabet)
