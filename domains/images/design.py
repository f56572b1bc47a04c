"""What an image-domain oracle scores: pixels together with the condition they
were generated for (a digit label or a text prompt).

The condition travels with the design because feasibility depends on it (a
digit image is feasible when a classifier recognises the label it was asked
for) and because two identical pixel arrays made for different prompts are
different measurements.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(eq=False)
class ImageDesign:
    """One generated image and its condition."""

    pixels: np.ndarray
    """(H, W) greyscale or (H, W, 3) RGB, uint8."""
    condition: int | str
    """The digit label (digits backend) or the prompt (Stable Diffusion backend)."""

    def key(self) -> str:
        """The budgeted oracle's cache key: a hash of shape, bytes and condition."""
        digest = hashlib.sha1(np.ascontiguousarray(self.pixels).tobytes())
        digest.update(repr((self.pixels.shape, str(self.pixels.dtype), self.condition)).encode())
        return digest.hexdigest()


def grid(designs: Sequence[ImageDesign], columns: int = 8, limit: int = 32, pad: int = 1) -> np.ndarray:
    """The first `limit` designs tiled row by row, `columns` to a row, on a white
    `pad`-pixel border: uint8 (H, W) for greyscale designs, (H, W, 3) for RGB."""
    images = [d.pixels for d in designs[:limit]]
    if not images:
        raise ValueError("no designs to draw")
    h, w = images[0].shape[:2]
    rows = -(-len(images) // columns)
    canvas = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, *images[0].shape[2:]), 255, np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        canvas[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = image
    return canvas
