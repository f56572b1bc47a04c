"""The KL of direct fine-tuning, with and without the last reverse step."""

from __future__ import annotations

import copy

import pytest
import torch

from algorithms.finetune import finetune_direct
from algorithms.method import Context
from algorithms.registry import build_method
from domains.images.digits_model import DigitDiffusionConfig, DigitDiffusionModel
from domains.images.featuriser import JpegFeaturiser


def moved_model(num_steps: int = 4) -> tuple[DigitDiffusionModel, DigitDiffusionModel]:
    """A tiny digits model and a copy of it with every weight nudged: their steps differ."""
    torch.manual_seed(0)
    anchor = DigitDiffusionModel(DigitDiffusionConfig(block_out_channels=(8, 16), norm_num_groups=4,
                                                      num_steps=num_steps))
    model = anchor.frozen_copy()
    model.requires_grad_(True)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model, anchor


def test_without_the_last_step_the_kl_is_the_other_steps():
    model, anchor = moved_model()
    kl = {}
    for last in (True, False):
        stats = finetune_direct(copy.deepcopy(model), lambda x: x.flatten(1).sum(1) * 0, anchor, steps=1,
                                batch_size=4, last_k=4, kl_weight=1.0, lr=0.0,
                                generator=torch.Generator().manual_seed(1), kl_last_step=last)
        kl[last] = stats["finetune_kl"]
    columns = model.sample_with_grad(4, generator=torch.Generator().manual_seed(1), last_k=4, reference=anchor).kl.detach()
    assert kl[True] == pytest.approx(float(columns.sum(1).mean()), rel=1e-4)
    assert kl[False] == pytest.approx(float(columns[:, :-1].sum(1).mean()), rel=1e-4)
    assert kl[True] - kl[False] > 0.5 * kl[True]  # the last step is most of it, as on the digits


def test_a_one_step_model_without_its_last_step_is_refused():
    model, _ = moved_model(num_steps=1)
    method = build_method("greedy", Context(JpegFeaturiser(), 0.0, seed=0), {"kl_last_step": False})
    with pytest.raises(ValueError, match="kl_last_step=false leaves no step in the KL of a one-step model"):
        method.check(model, [16, 32])
