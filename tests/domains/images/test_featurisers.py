"""Digit features for reward models: pixels in [0, 1], or JPEG's quantised block DCT;
the same map for hard designs and for the diffusion model's differentiable samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from domains.base import Featuriser
from domains.images.design import ImageDesign
from domains.images.digits import from_pixels, split_digits, to_designs
from domains.images.featuriser import JpegFeaturiser, PixelFeaturiser
from domains.images.jpeg import jpeg_sizes_kb


@pytest.fixture
def featuriser() -> PixelFeaturiser:
    return PixelFeaturiser()


def test_featuriser_satisfies_the_protocol(featuriser):
    assert isinstance(featuriser, Featuriser) and featuriser.dim == 256


def test_features_are_pixels_over_255_row_by_row(featuriser):
    pixels = np.zeros((16, 16), np.uint8)
    pixels[2, 5], pixels[15, 0] = 255, 51
    features = featuriser([ImageDesign(pixels, 7)])
    assert features.shape == (1, 256) and features.dtype == torch.float32
    assert features[0, 2 * 16 + 5] == 1.0 and features[0, 15 * 16] == pytest.approx(0.2)
    assert features.sum() == pytest.approx(1.2)


def test_relaxed_agrees_with_the_designs_up_to_rounding(featuriser):
    # Out-of-range values included: the decoder clips them, and so must `relaxed`.
    x = torch.rand(32, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2.4 - 1.2
    designs = to_designs(x, torch.arange(32) % 10)
    gap = (featuriser(designs) - featuriser.relaxed(x)).abs().max()
    assert 0 < gap <= 0.5 / 255 + 1e-6


def test_relaxed_equals_the_features_on_pixel_levels(featuriser):
    designs = split_digits().held_out_designs()[:50]
    x = from_pixels(np.stack([d.pixels for d in designs]))
    torch.testing.assert_close(featuriser.relaxed(x), featuriser(designs), atol=1e-6, rtol=0)


def test_gradient_reaches_pixels_inside_the_range_only(featuriser):
    x = torch.tensor([-0.5, 0.0, 0.9, 1.5, -1.5]).repeat(52)[:256].reshape(1, 1, 16, 16).requires_grad_()
    featuriser.relaxed(x).sum().backward()
    inside = x.detach().abs() <= 1
    assert torch.equal(x.grad[inside], torch.full_like(x.grad[inside], 0.5))
    assert (x.grad[~inside] == 0).all()


def test_bad_inputs_are_one_line_errors(featuriser):
    with pytest.raises(ValueError, match=r"expected model tensors of shape \(N, 1, 16, 16\), got \(4, 16, 16\)"):
        featuriser.relaxed(torch.zeros(4, 16, 16))
    with pytest.raises(ValueError, match=r"got float32 \(16, 16\) for design 0"):
        featuriser([ImageDesign(np.zeros((16, 16), np.float32), 1)])
    with pytest.raises(TypeError, match="expected an ImageDesign, got ndarray for design 0"):
        featuriser([np.zeros((16, 16), np.uint8)])


@pytest.fixture
def jpeg() -> JpegFeaturiser:
    return JpegFeaturiser()


def test_jpeg_features_satisfy_the_protocol(jpeg):
    assert isinstance(jpeg, Featuriser) and jpeg.dim == 256


def test_jpeg_features_by_hand():
    # Mid-grey 128 shifts to 0: every coefficient is 0. White 255 shifts to 127: an 8x8
    # block's only coefficient is DC = 64 * 127 / 8 (orthonormal DCT-II) over the step 2.
    pixels = np.full((16, 16), 128, np.uint8)
    pixels[8:, :8] = 255
    features = JpegFeaturiser()([ImageDesign(pixels, 0)]).view(4, 64)
    assert features[[0, 1, 3]].abs().max() < 1e-5
    assert features[2, 0] == pytest.approx(np.log1p(64 * 127 / 8 / 2), rel=1e-5)
    assert features[2, 1:].abs().max() < 1e-4


def test_jpeg_features_rank_jpeg_sizes():
    # What they are for: their sum (about the bits JPEG spends) ranks the sizes of real digits.
    designs = split_digits().held_out_designs()[:300]
    sizes = jpeg_sizes_kb(np.stack([d.pixels for d in designs]))
    assert spearmanr(JpegFeaturiser()(designs).sum(1).numpy(), sizes)[0] > 0.9  # the ink alone (the pixels summed): 0.88


def test_jpeg_relaxed_agrees_with_the_designs_and_has_a_gradient(jpeg):
    designs = split_digits().held_out_designs()[:50]
    x = from_pixels(np.stack([d.pixels for d in designs])).requires_grad_()
    torch.testing.assert_close(jpeg.relaxed(x), jpeg(designs), atol=1e-4, rtol=0)
    jpeg.relaxed(x).sum().backward()
    assert (x.grad.abs().flatten(1).sum(1) > 0).all()


def test_jpeg_bad_inputs_are_one_line_errors(jpeg):
    with pytest.raises(ValueError, match=r"expected model tensors of shape \(N, 1, 16, 16\), got \(4, 16, 16\)"):
        jpeg.relaxed(torch.zeros(4, 16, 16))
    with pytest.raises(ValueError, match="JPEG features need a size divisible by 8"):
        JpegFeaturiser(12)
