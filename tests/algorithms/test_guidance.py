"""Guidance: the first round samples the pretrained model, later rounds follow
the refitted reward model's gradient, and the weights never change."""

from __future__ import annotations

import numpy as np
import torch

from algorithms.method import Context, Feedback
from algorithms.methods.guidance import Guidance, GuidanceConfig
from algorithms.reward_models import RewardModelConfig
from domains.sequences.featuriser import SequenceFeaturiser
from domains.sequences.mdlm import MaskedDiffusionModel, MDLMConfig

CFG = MDLMConfig(alphabet="ACDE", length=6, num_steps=6, d_model=16, n_layers=1, n_heads=2)


def setup(scale: float) -> tuple[Guidance, MaskedDiffusionModel]:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = MaskedDiffusionModel(CFG)
    config = GuidanceConfig(scale=scale, reward_model=RewardModelConfig(hidden=16, steps=300, ensemble_size=1,
                                                                         bootstrap=False))
    return Guidance(config, Context(SequenceFeaturiser(CFG.alphabet, CFG.length), 0.0, seed=0)), model


def fitted(scale: float) -> tuple[Guidance, MaskedDiffusionModel]:
    """A guide fitted to reward = number of 'A's on the model's own samples."""
    method, model = setup(scale)
    designs = method.propose(model, 256, 1).designs
    reward = np.array([d.count("A") for d in designs], dtype=float)
    data = Feedback()
    data.add(designs, reward, np.ones(len(designs), bool), 1)
    method.update(model, data, 1)
    return method, model


def test_first_round_draws_the_pretrained_models_samples():
    method, model = setup(10.0)
    assert method.draw(model, 8, torch.Generator().manual_seed(3)).designs == \
        model.sample(8, generator=torch.Generator().manual_seed(3)).designs


def test_guided_samples_follow_the_learned_reward():
    counts = {}
    for scale in (0.0, 10.0):
        method, model = fitted(scale)
        designs = method.draw(model, 256, torch.Generator().manual_seed(1)).designs
        counts[scale] = np.mean([d.count("A") for d in designs])
    assert counts[10.0] > counts[0.0] + 1.0, counts


def test_guidance_never_changes_the_weights():
    method, model = setup(10.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    designs = method.propose(model, 64, 1).designs
    data = Feedback()
    data.add(designs, np.array([d.count("A") for d in designs], dtype=float), np.ones(64, bool), 1)
    stats = method.update(model, data, 1)
    assert set(stats) == {"reward_model_mse", "feasibility_accuracy"}
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert method.predict(designs[:3]).shape == (3,)
