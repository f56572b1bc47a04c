"""Fine-tuning reaches every position of a discrete design: a masked model reveals
each position once, at a random step, so a gradient cut to the last steps misses
the positions revealed earlier (75% of them with 4 of 16 steps)."""

from __future__ import annotations

import pytest
import torch

from algorithms.method import Context
from algorithms.registry import build_method
from domains.sequences.featuriser import SequenceFeaturiser
from domains.sequences.mdlm import MaskedDiffusionModel, MDLMConfig

CFG = MDLMConfig(alphabet="ACDE", length=8, num_steps=8, d_model=16, n_layers=1, n_heads=2)
FINE_TUNERS = ["seiko-ucb", "seiko-bootstrap", "seiko-ts", "greedy", "non-adaptive", "direct-backprop"]


def method(name: str, settings: dict | None = None):
    return build_method(name, Context(SequenceFeaturiser(CFG.alphabet, CFG.length), 0.0, seed=0), settings)


def positions_with_gradient(model: MaskedDiffusionModel, last_k: int, samples: int = 6) -> torch.Tensor:
    """(samples, L) bool: whether a reward on position l alone moves the weights, one sample at a time."""
    out = torch.zeros(samples, CFG.length, dtype=torch.bool)
    for s in range(samples):
        for position in range(CFG.length):
            model.zero_grad()
            x = model.sample_with_grad(1, generator=torch.Generator().manual_seed(s), last_k=last_k).x
            (x[0, position] * torch.arange(1.0, 5.0)).sum().backward()
            out[s, position] = any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    return out


@pytest.fixture(scope="module")
def model() -> MaskedDiffusionModel:
    torch.manual_seed(0)
    return MaskedDiffusionModel(CFG)


@pytest.mark.parametrize("name", FINE_TUNERS)
def test_every_fine_tuning_method_reaches_every_position(model, name):
    assert positions_with_gradient(model, method(name).reach(model)).all()


def test_a_truncated_gradient_misses_positions(model):
    # What the check above guards against: the last step alone reaches few positions.
    assert positions_with_gradient(model, method("greedy", {"last_k": 1}).reach(model)).float().mean() < 0.5


@pytest.mark.parametrize("settings, named", [({"last_k": 9}, "last_k=9 exceeds the 8"),
                                             ({"kl_steps": 9}, "kl_steps=9 exceeds the 8"),
                                             ({"finetune_reverse_steps": 4, "last_k": 5}, "last_k=5 exceeds the 4")])
def test_a_reach_longer_than_the_chain_is_refused_before_any_query(model, settings, named):
    with pytest.raises(ValueError, match=f"{named} reverse steps fine-tuning differentiates"):
        method("greedy", settings).check(model, [16, 32])


def test_a_first_round_too_small_for_the_reward_model_is_refused(model):
    with pytest.raises(ValueError, match="first round buys 4 designs, fewer than the 8 feasible"):
        method("seiko-ucb").check(model, [4, 32])


def test_a_round_fine_tunes_the_sampler_and_the_kl_steps_its_settings_name(monkeypatch):
    import numpy as np

    from algorithms.method import Feedback

    torch.manual_seed(1)
    model = MaskedDiffusionModel(CFG)  # its own: the round changes its weights

    greedy = method("greedy", {"finetune_steps": 2, "batch_size": 4, "finetune_reverse_steps": 4, "kl_steps": 2,
                               "reward_model": {"steps": 5}})
    designs = model.sample(16, generator=torch.Generator().manual_seed(1)).designs
    data = Feedback()
    data.add(designs, np.linspace(0, 1, 16), np.ones(16, dtype=bool), round=1)
    calls, sample_with_grad = [], model.sample_with_grad

    def spy(n, **kwargs):
        calls.append(kwargs)
        return sample_with_grad(n, **kwargs)

    monkeypatch.setattr(model, "sample_with_grad", spy)
    greedy.begin_round(model, 1)
    stats = greedy.update(model, data, 1)
    assert len(calls) == 2 and all(c["num_steps"] == 4 and c["last_k"] == 4 and len(c["kl_steps"]) == 2 for c in calls)
    assert stats["finetune_steps_taken"] == 2
