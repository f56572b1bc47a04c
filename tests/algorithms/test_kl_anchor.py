"""SEIKO's KL constraint does what it says: a larger weight keeps fine-tuning
closer to the anchor, and a weight of 0 never consults the anchor at all."""

from __future__ import annotations

import torch

from algorithms.methods.seiko import finetune_direct
from domains.sequences.mdlm import MaskedDiffusionModel, MDLMConfig


def tuned_kl(kl_weight: float, anchor=None) -> float:
    """KL to the pretrained model after 15 steps of pushing every position towards letter 0."""
    torch.manual_seed(0)
    model = MaskedDiffusionModel(MDLMConfig(alphabet="ACDE", length=6, num_steps=6, d_model=16, n_layers=1, n_heads=2))
    reference = model.frozen_copy()
    finetune_direct(model, lambda x: x[..., 0].sum(-1), reference if anchor is None else anchor, steps=15,
                    batch_size=8, last_k=model.num_steps, kl_weight=kl_weight, lr=3e-2,
                    generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        sample = model.sample(64, generator=torch.Generator().manual_seed(1), keep_trajectory=True)
        return float(model.kl(sample.trajectory, reference).sum(1).mean())


def test_a_larger_kl_weight_keeps_fine_tuning_closer_to_the_anchor():
    free, light, heavy = tuned_kl(0.0), tuned_kl(0.5), tuned_kl(3.0)
    assert free > 1.2 * light and light > 1.2 * heavy, (free, light, heavy)


class Untouchable:
    """An anchor whose every use fails: with kl_weight 0 fine-tuning must not need one."""

    def __getattr__(self, name):
        raise AssertionError(f"the anchor's {name} was used with kl_weight 0")


def test_kl_weight_zero_passes_no_anchor_to_the_sampler():
    assert tuned_kl(0.0, anchor=Untouchable()) > 0
