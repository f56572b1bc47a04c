"""`MaskedPolicy` on its own, with a toy two-field model (a plain field and the graph model's tied
bond field, a linear network): what the sequence model, with one untied field, does not exercise.
A state's fields are masked, drawn and scored element by element, each tied pair once."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import nn

from domains.base import Trajectory
from domains.diffusion.masked import Field
from domains.diffusion.masked_policy import MaskedPolicy, MaskedSamplerConfig
from domains.molecules.graph_diffusion import BondField

torch.set_num_threads(1)


@dataclass
class ToyConfig(MaskedSamplerConfig):
    num_steps: int = 2


class Toy(MaskedPolicy, nn.Module):
    """Two slots of 2 types and the 3 pairs of 3 slots (bond types), one linear map from the
    one-hots to the logits; pair logits symmetric, as the network of a tied field must give."""

    def __init__(self, num_steps: int = 2):
        super().__init__(ToyConfig(num_steps=num_steps), (Field(2, (2,)), BondField(3)))
        with torch.random.fork_rng():
            torch.manual_seed(0)
            self.net = nn.Linear(2 * 3 + 9 * 5, 2 * 2 + 9 * 4)
        self.inputs: list[tuple[torch.Tensor, ...]] = []

    def _logits(self, z):
        self.inputs.append(z)
        out = self.net(torch.cat([z[0].flatten(1), z[1].flatten(1)], 1))
        pairs = out[:, 4:].view(-1, 3, 3, 4)
        return out[:, :4].view(-1, 2, 2), (pairs + pairs.transpose(1, 2)) / 2

    def _split(self, x):
        return x

    def _state(self, values):
        return tuple(values)

    def _soft(self, probs):
        return tuple(probs)

    def decode(self, x):
        return [(a.tolist(), b.tolist()) for a, b in zip(*x)]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def symmetric(pairs: torch.Tensor) -> bool:
    return torch.equal(pairs, pairs.transpose(1, 2))


def next_states(model: Toy, x: tuple[torch.Tensor, ...], j: int) -> tuple[torch.Tensor, ...]:
    """Every state that step j can reach from the one state x, as a batch."""
    masked = [(k, tuple(p)) for k, f in enumerate(model.fields) for p in f.counted.nonzero().tolist()
              if x[k][0][tuple(p)] == f.mask_id]
    E, T = model.num_elements, model.num_steps
    out = []
    for chosen in itertools.combinations(masked, E * (j + 1) // T - E * j // T):
        for types in itertools.product(*[range(model.fields[k].vocab) for k, _ in chosen]):
            values = [v[0].clone() for v in x]
            for (k, place), kind in zip(chosen, types):
                values[k][place] = kind
            out.append([f.tie(v[None]) for f, v in zip(model.fields, values)])
    return tuple(torch.cat(parts) for parts in zip(*out))


def test_a_step_is_a_distribution_over_the_states_it_can_reach():
    """The revealed set's chance counts each pair once: summed over every set of k_j masked
    elements and every type of each, a step's probabilities are 1."""
    model = Toy()
    x = model.sample(1, generator=gen(), keep_trajectory=True).trajectory.states
    assert model.num_elements == 2 + 3
    for j in range(model.num_steps):
        reachable = next_states(model, x[j], j)
        n = len(reachable[0])
        states = [tuple(v.expand(n, *v.shape[1:]) for v in x[j])] * (model.num_steps + 1)
        states[j + 1] = reachable
        lp = model.log_prob(Trajectory(states, torch.zeros(n, model.num_steps)), [j])
        torch.testing.assert_close(lp.exp().sum(), torch.tensor(1.0))


def test_tied_entries_stay_tied_in_every_sampler_and_in_training():
    model = Toy(num_steps=3)
    out = model.sample(8, generator=gen(), keep_trajectory=True)
    assert all(symmetric(s[1]) and (s[1].diagonal(dim1=1, dim2=2) == 0).all() for s in out.trajectory.states)
    soft = model.sample_with_grad(8, generator=gen(), last_k=3, reference=model).x
    assert symmetric(soft[1]) and torch.equal(soft[1].detach().argmax(-1), out.x[1])
    upper_double_bonds = lambda x: x[1][..., 2].triu(1).sum((1, 2))  # noqa: E731 (reads one entry of each pair)
    guided = model.sample_guided(8, generator=gen(1), guide=upper_double_bonds, scale=5.0)
    assert symmetric(guided.x[1]) and (guided.x[1] == 2).sum() > (out.x[1] == 2).sum()
    model.denoising_loss(out.x, generator=gen(2))
    assert all(symmetric(z[1]) for z in model.inputs)  # the network never saw half a pair


def test_the_kl_on_a_subset_of_steps_is_those_steps_columns_and_calls_the_anchor_only_there():
    # Disjoint subsets of the steps sum to the whole KL of the same draws: the rescaled sum of a
    # random subset (what `seiko.finetune_direct` takes with kl_steps) is then unbiased.
    model, anchor = Toy(num_steps=5), Toy(num_steps=5)
    with torch.no_grad():
        anchor.net.weight.add_(torch.randn(anchor.net.weight.shape, generator=gen(9)))
    full = model.sample_with_grad(6, generator=gen(1), last_k=5, reference=anchor).kl
    assert (full > 0).all()
    parts = []
    for subset in ({0, 3}, {1, 4}, {2}):
        anchor.inputs.clear()
        part = model.sample_with_grad(6, generator=gen(1), last_k=5, reference=anchor, kl_steps=subset).kl
        assert len(anchor.inputs) == len(subset)
        assert (part[:, sorted(set(range(5)) - subset)] == 0).all()
        parts.append(part)
    assert torch.allclose(sum(parts), full)


def test_a_coarser_sampler_reveals_every_element_in_its_fewer_steps_with_a_gradient():
    model, anchor = Toy(num_steps=5), Toy(num_steps=5)
    model.inputs.clear()
    out = model.sample_with_grad(4, generator=gen(2), last_k=2, reference=anchor, num_steps=2)
    assert len(model.inputs) == 2 and out.kl.shape == (4, 2)
    slots, pairs = out.x
    assert torch.allclose(slots.sum(-1), torch.ones(4, 2)) and torch.allclose(pairs.sum(-1), torch.ones(4, 3, 3))
    (slots[..., 0].sum() + pairs[..., 1].sum()).backward()
    assert model.net.weight.grad.abs().sum() > 0
