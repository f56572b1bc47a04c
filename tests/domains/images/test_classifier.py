"""The feasibility classifier: the committed checkpoint earns its recorded accuracy,
is not fooled by blank or noise images, and training is seeded and saved whole."""

from __future__ import annotations

import json
import re
from dataclasses import asdict

import pytest
import torch

from domains.images.classifier import (
    CHECKPOINT,
    ClassifierConfig,
    DigitClassifier,
    TrainConfig,
    accuracy,
    load_classifier,
    synthetic_outliers,
    train_classifier,
)
from domains.images.digits import split_digits, to_pixels


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """This network is too small to gain from threads; on a shared two-core machine a
    second thread made training four times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def classifier() -> DigitClassifier:
    return load_classifier()


def test_committed_checkpoint_reaches_its_recorded_held_out_accuracy(classifier):
    split = split_digits(seed=classifier.train_config["split_seed"])
    recorded = classifier.report["held_out_accuracy"]
    assert recorded >= 0.97
    # One digit of slack: a borderline logit may round differently on another CPU.
    assert accuracy(classifier, split.held_out_x, split.held_out_y) == pytest.approx(recorded, abs=1e-3)


def test_committed_checkpoint_was_made_by_the_default_settings():
    meta = json.loads(CHECKPOINT.with_suffix(".json").read_text())
    assert meta["training"] == asdict(TrainConfig())
    assert meta["config"] == json.loads(json.dumps(asdict(ClassifierConfig())))
    assert CHECKPOINT.stat().st_size < 1_000_000


def test_probabilities_of_pixels_match_the_logits(classifier):
    split = split_digits()
    probs = classifier.probabilities(to_pixels(split.held_out_x[:50]))
    assert probs.shape == (50, 10)
    expected = torch.softmax(classifier(split.held_out_x[:50]), 1)
    assert torch.allclose(torch.from_numpy(probs).float(), expected, atol=1e-6)
    assert (probs.argmax(1) == split.held_out_y[:50].numpy()).mean() >= 0.9


def test_blank_constant_and_noise_images_are_not_recognised(classifier):
    g = torch.Generator().manual_seed(1)
    images = torch.cat([
        -torch.ones(1, 1, 16, 16),  # blank
        torch.ones(1, 1, 16, 16),  # white
        torch.zeros(1, 1, 16, 16),  # grey
        torch.rand(20, 1, 16, 16, generator=g) * 2 - 1,  # uniform noise
        (torch.rand(20, 1, 16, 16, generator=g) < 0.5).float() * 2 - 1,  # salt and pepper
        (torch.randn(20, 1, 16, 16, generator=g) * 0.5).clamp(-1, 1),  # Gaussian noise (not trained on)
    ])  # fmt: skip
    assert torch.softmax(classifier(images), 1).amax(1).max() < 0.5


def test_outliers_are_in_range_and_seeded():
    a = synthetic_outliers(50, torch.Generator().manual_seed(0))
    b = synthetic_outliers(50, torch.Generator().manual_seed(0))
    assert a.shape == (50, 1, 16, 16) and torch.equal(a, b)
    assert a.min() >= -1 and a.max() <= 1


def test_loaded_classifier_is_frozen_but_passes_gradients_to_its_input(classifier):
    assert not classifier.training and not any(p.requires_grad for p in classifier.parameters())
    x = split_digits().held_out_x[:4].clone().requires_grad_()
    torch.log_softmax(classifier(x), 1)[:, 0].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_missing_checkpoint_names_the_path_and_the_command(tmp_path):
    path = tmp_path / "none.safetensors"
    message = rf"^no digit classifier at {re.escape(str(path))} .*run `seiko-bench pretrain digit-classifier`$"
    with pytest.raises(FileNotFoundError, match=message):
        load_classifier(path)


@pytest.mark.slow
def test_training_is_seeded_saved_whole_and_leaves_the_global_rng_alone(tmp_path):
    config = TrainConfig(epochs=1, batch_size=256)
    state = torch.get_rng_state()
    model, report = train_classifier(config, path=tmp_path / "c.safetensors")
    assert torch.equal(torch.get_rng_state(), state)
    again, _ = train_classifier(config, path=None)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    loaded = load_classifier(tmp_path / "c.safetensors")
    x = split_digits().held_out_x[:16]
    assert torch.equal(loaded(x), model(x))
    assert loaded.report == report and loaded.train_config == asdict(config)
    assert 0.5 < report["held_out_accuracy"] <= 1  # one epoch already learns something
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.json", "c.safetensors"]  # no temporary files left


@pytest.mark.parametrize(
    "kwargs, field",
    [({"epochs": 0}, "epochs"), ({"max_shift": 8}, "max_shift"), ({"outlier_weight": -1.0}, "outlier_weight")],
)
def test_bad_settings_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**kwargs)


def test_wrong_input_shape_is_a_one_line_error(classifier):
    with pytest.raises(ValueError, match=r"expected images of shape \(N, 1, 16, 16\), got \(2, 1, 28, 28\)"):
        classifier(torch.zeros(2, 1, 28, 28))
