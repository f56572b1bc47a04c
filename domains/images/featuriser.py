"""Reward-model features of digit images: the pixels, scaled to [0, 1] and flattened.

At 16x16 greyscale the raw pixels are only 256 numbers, few enough for a
reward model to read directly, and the JPEG size depends on exactly where the
ink is, which any pooled or learned embedding would blur. The same map applies
to the diffusion model's differentiable samples: `relaxed` decodes a model
tensor in [-1, 1] as `to_pixels` does (clip to [-1, 1], shift to [0, 1]) but
without the rounding to 256 levels, so the two agree up to half a level
(0.5 / 255) and gradients reach every pixel inside the range. A pixel pushed
past the range gets no gradient, as in DDPO's and AlignProp's decoders: the
hard design clips it too, so the reward model cannot reward going further.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from domains.images.design import ImageDesign
from domains.images.digits import IMAGE_SIZE, stack_pixels


class PixelFeaturiser:
    """The digits backend's `Featuriser`: 256 pixel intensities in [0, 1]."""

    def __init__(self, size: int = IMAGE_SIZE):
        self.size = size
        self.dim = size * size

    def __call__(self, designs: Sequence[ImageDesign]) -> torch.Tensor:
        """(N, dim) float32: uint8 pixels / 255, row by row."""
        pixels = torch.from_numpy(stack_pixels(designs, self.size))
        return pixels.float().div(255.0).flatten(1)

    def relaxed(self, x: torch.Tensor) -> torch.Tensor:
        """(N, dim) features of model tensors x (N, 1, size, size) in [-1, 1], differentiable in x."""
        if x.ndim != 4 or x.shape[1:] != (1, self.size, self.size):
            raise ValueError(f"expected model tensors of shape (N, 1, {self.size}, {self.size}), got {tuple(x.shape)}")
        return (x / 2 + 0.5).clamp(0, 1).flatten(1)
