"""Large-scale RL: batch-wide normalisation, the pretraining-loss regulariser,
and the capability it needs (its data-parallel run: tests/benchmarks/test_data_parallel.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from algorithms.method import Context, Feedback
from algorithms.methods.large_scale_rl import LargeScaleRL, LargeScaleRLConfig, batch_normalise
from domains.base import CapabilityError
from domains.sequences.featuriser import SequenceFeaturiser
from domains.sequences.mdlm import MaskedDiffusionModel, MDLMConfig

CFG = MDLMConfig(alphabet="ACDE", length=6, num_steps=6, d_model=16, n_layers=1, n_heads=2)
FEATURES = SequenceFeaturiser(CFG.alphabet, CFG.length)


def data_fn(n: int, generator: torch.Generator):
    return torch.randint(len(CFG.alphabet), (n, CFG.length), generator=generator), None


def test_single_process_normalisation_is_over_the_batch():
    reward = np.array([0.0, 1.0, 2.0, 7.0])
    assert np.allclose(batch_normalise(reward), (reward - reward.mean()) / (reward.std() + 1e-6))


def test_the_regulariser_needs_pretraining_data_unless_switched_off():
    with pytest.raises(CapabilityError, match="pretraining data.*pretrain_weight=0"):
        LargeScaleRL(LargeScaleRLConfig(), Context(FEATURES, 0.0, seed=0))
    method = LargeScaleRL(LargeScaleRLConfig(pretrain_weight=0.0), Context(FEATURES, 0.0, seed=0))
    assert "denoising_loss" not in method.requires


def _round(weight: float) -> tuple[dict[str, float], MaskedDiffusionModel]:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = MaskedDiffusionModel(CFG)
    method = LargeScaleRL(LargeScaleRLConfig(pretrain_weight=weight, batch_size=8),
                          Context(FEATURES, 0.0, seed=0, pretraining_data=data_fn))
    designs = method.propose(model, 16, 1).designs
    data = Feedback()
    data.add(designs, np.array([d.count("A") for d in designs], dtype=float), np.ones(16, bool), 1)
    return method.update(model, data, 1), model


def test_the_regulariser_adds_the_weighted_pretraining_loss():
    with_reg, _ = _round(2.0)
    without, _ = _round(0.0)
    assert "regulariser" in with_reg and "regulariser" not in without
    assert with_reg["regulariser"] > 0
    assert with_reg["first_ratio"] == pytest.approx(1.0, abs=1e-6)
