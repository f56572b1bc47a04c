"""The digits' search moves keep labels, shapes and dtype, and are seeded."""

from __future__ import annotations

import numpy as np
import torch

from domains.images.design import ImageDesign
from domains.images.operators import ImageOperators


def designs(n: int = 6) -> list[ImageDesign]:
    rng = np.random.default_rng(0)
    return [ImageDesign(rng.integers(0, 256, (16, 16), dtype=np.uint8), i % 10) for i in range(n)]


def test_mutation_keeps_label_shape_and_dtype_and_changes_about_rate_pixels():
    ops, parents = ImageOperators(), designs(50)
    children = ops.mutate(parents, 0.1, torch.Generator().manual_seed(0))
    assert [c.condition for c in children] == [p.condition for p in parents]
    assert all(c.pixels.shape == (16, 16) and c.pixels.dtype == np.uint8 for c in children)
    changed = np.mean([(c.pixels != p.pixels).mean() for c, p in zip(children, parents)])
    assert 0.05 < changed < 0.12  # rate 0.1, minus moves that round or clip back to the same level
    assert all(np.array_equal(c.pixels, p.pixels) for c, p in zip(ops.mutate(parents, 0.0, torch.Generator()), parents))


def test_crossover_pastes_a_rectangle_of_the_second_parent_into_the_first():
    ops = ImageOperators()
    a = [ImageDesign(np.zeros((16, 16), np.uint8), 3) for _ in range(20)]
    b = [ImageDesign(np.full((16, 16), 255, np.uint8), 5) for _ in range(20)]
    children = ops.crossover(a, b, torch.Generator().manual_seed(1))
    for child in children:
        assert child.condition == 3
        rows, cols = np.nonzero(child.pixels)
        assert len(rows) > 0  # the rectangle is at least one pixel
        box = child.pixels[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        assert (box == 255).all() and (child.pixels == 255).sum() == box.size


def test_the_same_generator_gives_the_same_children():
    ops, parents = ImageOperators(), designs()
    one = ops.crossover(parents, parents[::-1], torch.Generator().manual_seed(4))
    two = ops.crossover(parents, parents[::-1], torch.Generator().manual_seed(4))
    assert all(np.array_equal(x.pixels, y.pixels) for x, y in zip(one, two))
