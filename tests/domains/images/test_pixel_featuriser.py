"""Digit features for reward models: pixels in [0, 1], the same map for hard designs
and for the diffusion model's differentiable samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from domains.base import Featuriser
from domains.images.design import ImageDesign
from domains.images.digits import from_pixels, split_digits, to_designs
from domains.images.featuriser import PixelFeaturiser


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
