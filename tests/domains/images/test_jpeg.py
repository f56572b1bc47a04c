"""JPEG compressibility and incompressibility (DDPO's definitions) of digit designs,
feasible only when the classifier recognises the digit asked for."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from domains.base import Oracle
from domains.images.classifier import load_classifier
from domains.images.design import ImageDesign
from domains.images.digits import split_digits, to_designs
from domains.images.jpeg import (
    LARGEST_JPEG_KB,
    JpegCompressibility,
    JpegIncompressibility,
    jpeg_sizes_kb,
    search_largest_jpeg,
    smallest_jpeg_kb,
)


@pytest.fixture(scope="module")
def oracles() -> tuple[JpegCompressibility, JpegIncompressibility]:
    classifier = load_classifier()
    return JpegCompressibility(classifier), JpegIncompressibility(classifier)


@pytest.fixture(scope="module")
def held_out() -> list[ImageDesign]:
    return split_digits().held_out_designs()


def _noise(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    uniform = rng.integers(0, 256, (n, 16, 16), dtype=np.uint8)
    salt_and_pepper = (rng.integers(0, 2, (n, 16, 16)) * 255).astype(np.uint8)
    return np.concatenate([uniform, salt_and_pepper])


def test_oracles_satisfy_the_protocol(oracles):
    for oracle in oracles:
        assert isinstance(oracle, Oracle) and oracle.optimum is None
    assert [o.name for o in oracles] == ["digits-jpeg-compressibility-p0.5", "digits-jpeg-incompressibility-p0.5"]


def test_size_matches_an_encode_through_a_file(tmp_path, held_out):
    pixels = [d.pixels for d in held_out[:20]] + list(_noise(3, 0)) + [np.zeros((16, 16), np.uint8)]
    expected = []
    for i, p in enumerate(pixels):
        path = tmp_path / f"{i}.jpg"
        Image.fromarray(p, mode="L").save(path, quality=95)
        expected.append(path.stat().st_size / 1000)
    assert jpeg_sizes_kb(np.stack(pixels)).tolist() == expected


def test_compressibility_is_minus_incompressibility_on_feasible_designs(oracles, held_out):
    compress, incompress = oracles
    c, i = compress(held_out), incompress(held_out)
    assert np.array_equal(c.feasible, i.feasible)
    assert np.array_equal(c.reward[c.feasible], -i.reward[i.feasible])
    assert np.array_equal(i.reward[i.feasible], jpeg_sizes_kb(np.stack([d.pixels for d in held_out]))[i.feasible])


def test_held_out_digits_are_mostly_feasible(oracles, held_out):
    assert oracles[1](held_out).feasible.mean() >= 0.95


def test_reward_is_nan_exactly_where_infeasible(oracles, held_out):
    blank = [ImageDesign(np.zeros((16, 16), np.uint8), label) for label in range(10)]
    noise = [ImageDesign(p, k % 10) for k, p in enumerate(_noise(5, 1))]
    wrong_label = [ImageDesign(d.pixels, (d.condition + 1) % 10) for d in held_out[:100:10]]
    designs = held_out[:20] + blank + noise + wrong_label
    for oracle in oracles:
        out = oracle(designs)
        assert out.reward.dtype == np.float64 and out.feasible.dtype == bool
        assert np.array_equal(np.isnan(out.reward), ~out.feasible)
        assert not out.feasible[20:].any()
        assert out.feasible[:20].mean() >= 0.9


def test_a_design_gets_the_same_answer_in_any_batch(oracles, held_out):
    copies = [ImageDesign(d.pixels.copy(), d.condition) for d in held_out[:30]]
    a, b = oracles[0](held_out[:30]), oracles[0](copies[::-1] + held_out[500:520])
    np.testing.assert_array_equal(a.reward, b.reward[:30][::-1])
    np.testing.assert_array_equal(a.feasible, b.feasible[:30][::-1])


def test_an_empty_batch_is_empty(oracles):
    empty = oracles[0]([])
    assert empty.reward.shape == empty.feasible.shape == (0,)


def test_threshold_sets_feasibility(held_out):
    classifier = load_classifier()
    loose, strict = JpegIncompressibility(classifier, 0.1), JpegIncompressibility(classifier, 0.999)
    assert loose(held_out).feasible.sum() > strict(held_out).feasible.sum()
    assert strict.name == "digits-jpeg-incompressibility-p0.999"
    with pytest.raises(ValueError, match="threshold=1.5"):
        JpegCompressibility(classifier, 1.5)


def test_incompressibility_floor_is_the_smallest_jpeg(oracles, held_out):
    _, incompress = oracles
    constant = np.stack([np.full((16, 16), v, np.uint8) for v in range(256)])
    assert incompress.floor == smallest_jpeg_kb() == jpeg_sizes_kb(constant).min()
    assert jpeg_sizes_kb(constant[128:129])[0] == incompress.floor  # mid-grey: every block codes as nothing
    sizes = jpeg_sizes_kb(np.concatenate([np.stack([d.pixels for d in held_out]), _noise(100, 2)]))
    assert sizes.min() > incompress.floor


def test_compressibility_floor_is_below_every_reward_seen(oracles, held_out):
    compress, _ = oracles
    assert compress.floor == -LARGEST_JPEG_KB
    _, recomputed = search_largest_jpeg()
    assert recomputed == LARGEST_JPEG_KB
    assert -jpeg_sizes_kb(_noise(200, 3)).max() >= compress.floor
    assert np.nanmin(compress(held_out).reward) > compress.floor


def test_same_pixels_for_another_digit_are_another_measurement(oracles, held_out):
    d = held_out[0]
    assert oracles[0].key(d) != oracles[0].key(ImageDesign(d.pixels.copy(), (d.condition + 1) % 10))
    assert oracles[0].key(d) == oracles[0].key(ImageDesign(d.pixels.copy(), d.condition))


def test_bad_designs_are_one_line_errors(oracles):
    good = ImageDesign(np.zeros((16, 16), np.uint8), 3)
    message = r"^expected uint8 pixels of shape \(16, 16\), got float32 \(3, 16, 16\) for design 4$"
    with pytest.raises(ValueError, match=message):
        oracles[0]([good] * 4 + [ImageDesign(np.zeros((3, 16, 16), np.float32), 3)])
    with pytest.raises(ValueError, match=r"got float64 \(16, 16\) for design 0"):
        oracles[1]([ImageDesign(np.zeros((16, 16)), 3)])
    with pytest.raises(TypeError, match="expected an ImageDesign, got str for design 1"):
        oracles[0]([good, "a digit"])
    with pytest.raises(ValueError, match=r"expected a digit label 0\.\.9 as condition, got 12 for design 0"):
        oracles[1]([ImageDesign(good.pixels, 12)])
    with pytest.raises(ValueError, match=r"got 'a cat' for design 0"):
        oracles[1]([ImageDesign(good.pixels, "a cat")])
    with pytest.raises(TypeError, match="expected an ImageDesign"):
        oracles[0].key("a digit")


def test_model_tensors_score_through_to_designs(oracles):
    split = split_digits()
    designs = to_designs(split.held_out_x[:10], split.held_out_y[:10])
    assert np.array_equal(oracles[1](designs).reward, oracles[1](split.held_out_designs()[:10]).reward, equal_nan=True)
    assert torch.equal(torch.as_tensor([d.condition for d in designs]), split.held_out_y[:10])


def test_reasons_name_the_digit_the_classifier_sees_instead(oracles, held_out):
    wrong_label = [ImageDesign(d.pixels, (d.condition + 1) % 10) for d in held_out[:5]]
    designs = held_out[:5] + wrong_label
    out, why = oracles[0](designs), oracles[0].reasons(designs)
    assert [w is None for w in why] == out.feasible.tolist()
    for design, w in zip(wrong_label, why[5:]):
        assert w.startswith("classifier sees") and f"not {design.condition} (p=0." in w
