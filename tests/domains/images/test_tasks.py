"""The digits tasks: registered, built from committed parts, pretrainable."""

from __future__ import annotations

import pytest
import torch

from domains.images import tasks as image_tasks
from domains.images.design import ImageDesign
from domains.tasks import get_task, list_tasks


def test_both_jpeg_tasks_are_registered_in_the_images_domain():
    registered = list_tasks()
    assert {name: registered[name] for name in image_tasks.TASKS} == dict.fromkeys(image_tasks.TASKS, "images")


def test_tasks_share_classifier_threshold_and_differ_in_sign():
    compress, incompress = (get_task(name) for name in image_tasks.TASKS)
    held_out = image_tasks.split_digits().held_out_designs()[:20]
    a, b = compress.oracle(held_out), incompress.oracle(held_out)
    assert (a.feasible == b.feasible).all() and a.feasible.mean() > 0.8
    assert torch.allclose(torch.as_tensor(a.reward[a.feasible]), -torch.as_tensor(b.reward[b.feasible]))
    assert compress.featuriser(held_out).shape == (20, compress.featuriser.dim)


def test_pretraining_data_are_labelled_training_digits():
    x, y = get_task("digits-jpeg-compressibility").pretraining_data(8, torch.Generator().manual_seed(0))
    assert x.shape == (8, 1, 16, 16) and y.shape == (8,) and x.min() >= -1 and x.max() <= 1
    assert set(y.tolist()) <= set(range(10))


def test_a_missing_model_checkpoint_names_the_path_and_the_command(tmp_path, monkeypatch):
    monkeypatch.setattr(image_tasks, "MODEL_CHECKPOINT", tmp_path / "none.safetensors")
    with pytest.raises(FileNotFoundError, match="none.safetensors.*seiko-bench pretrain digits-jpeg"):
        get_task("digits-jpeg-compressibility").load_model()


def test_pretrain_writes_a_loadable_model_with_its_starting_report(tmp_path):
    path = tmp_path / "digits.safetensors"
    report = image_tasks.pretrain("digits-jpeg-compressibility", steps=2, batch_size=8, out=path, report_samples=8)
    for task in image_tasks.TASKS:
        assert 0 <= report[task]["feasible_rate"] <= 1 and report[task]["infeasible_counts_as"] is not None
    model = image_tasks.load_model(path)
    assert model.metadata["pretraining"]["samples"] == 8
    sample = model.sample(2, generator=torch.Generator().manual_seed(0))
    assert all(isinstance(d, ImageDesign) and d.pixels.shape == (16, 16) for d in sample.designs)


def test_the_reward_models_read_jpeg_features_unless_a_spec_asks_for_pixels():
    from domains.images.featuriser import JpegFeaturiser, PixelFeaturiser

    assert isinstance(get_task("digits-jpeg-compressibility").featuriser, JpegFeaturiser)
    assert isinstance(get_task("digits-jpeg-compressibility", features="pixels").featuriser, PixelFeaturiser)
    with pytest.raises(ValueError, match="features must be one of jpeg, pixels; got 'dct'"):
        get_task("digits-jpeg-compressibility", features="dct")
    with pytest.raises(ValueError, match="takes only the parameter features; got size"):
        get_task("digits-jpeg-compressibility", size=28)
