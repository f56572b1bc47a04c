"""Search moves on digit images, for the genetic algorithm.

Written here because no library offers mutation and crossover of labelled
uint8 images: a child keeps its first parent's label (the digit it must still
look like), its shape and its dtype.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from domains.images.design import ImageDesign
from domains.images.digits import IMAGE_SIZE, stack_pixels


class ImageOperators:
    """The digits backend's `Operators`."""

    def __init__(self, size: int = IMAGE_SIZE, noise: float = 64.0):
        self.size, self.noise = size, noise

    def mutate(self, designs: Sequence[ImageDesign], rate: float, generator: torch.Generator) -> list[ImageDesign]:
        """Each pixel, with probability `rate`, moves by Gaussian noise of std `noise`
        grey levels (clipped to 0..255): small, local edits of the ink."""
        pixels = torch.from_numpy(stack_pixels(designs, self.size)).float()
        move = torch.rand(pixels.shape, generator=generator) < rate
        noise = self.noise * torch.randn(pixels.shape, generator=generator)
        out = torch.where(move, pixels + noise, pixels).round().clamp(0, 255).to(torch.uint8).numpy()
        return [ImageDesign(p, d.condition) for p, d in zip(out, designs)]

    def crossover(self, a: Sequence[ImageDesign], b: Sequence[ImageDesign],
                  generator: torch.Generator) -> list[ImageDesign]:
        """A random axis-aligned rectangle of b pasted into a; the child is a's digit.
        Rectangles, not uniform masks, keep strokes in one piece."""
        pa, pb = stack_pixels(a, self.size), stack_pixels(b, self.size)
        out = pa.copy()
        corners = torch.randint(self.size, (len(a), 4), generator=generator).numpy()
        for i, (r0, r1, c0, c1) in enumerate(corners):
            rows, cols = slice(min(r0, r1), max(r0, r1) + 1), slice(min(c0, c1), max(c0, c1) + 1)
            out[i, rows, cols] = pb[i, rows, cols]
        return [ImageDesign(np.ascontiguousarray(p), d.condition) for p, d in zip(out, a)]
