"""SEIKO's KL constraint does what it says: a larger weight keeps fine-tuning
closer to the anchor, and a weight of 0 never consults the anchor at all; the two cuts of a
fine-tuning step's passes (the KL on a random subset of steps, a coarser sampler) keep both."""

from __future__ import annotations

import torch

from algorithms.methods.seiko import finetune_direct
from domains.sequences.mdlm import MaskedDiffusionModel, MDLMConfig


def tuned_kl(kl_weight: float, anchor=None, **cuts) -> float:
    """KL to the pretrained model after 15 steps of pushing every position towards letter 0,
    measured on the model's own sampler whatever `cuts` fine-tuning took."""
    torch.manual_seed(0)
    model = MaskedDiffusionModel(MDLMConfig(alphabet="ACDE", length=6, num_steps=6, d_model=16, n_layers=1, n_heads=2))
    reference = model.frozen_copy()
    finetune_direct(model, lambda x: x[..., 0].sum(-1), reference if anchor is None else anchor, steps=15,
                    batch_size=8, last_k=cuts.get("num_steps", model.num_steps), kl_weight=kl_weight, lr=3e-2,
                    generator=torch.Generator().manual_seed(0), **cuts)
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


def test_the_kl_on_a_random_subset_of_steps_still_holds_fine_tuning_near_the_anchor():
    free, heavy = tuned_kl(0.0), tuned_kl(3.0, kl_steps=2)
    assert free > 1.2 * heavy, (free, heavy)


def test_fine_tuning_a_coarser_sampler_moves_the_model_s_own_and_its_kl_holds_it():
    free, heavy = tuned_kl(0.0, num_steps=3), tuned_kl(3.0, num_steps=3)
    assert free > 1.0 and free > 1.2 * heavy, (free, heavy)


def test_a_kl_bound_stops_a_round_s_fine_tuning_where_the_kl_passes_it():
    # The step that passes the bound is the last one taken, so the model ends past it by at
    # most one step's move (here 1-2 nats at lr 3e-2): the tighter bound ends closer.
    tight, loose, free = tuned_kl(0.0, kl_bound=2.5), tuned_kl(0.0, kl_bound=5.5), tuned_kl(0.0)
    assert tight < loose < free, (tight, loose, free)
