"""The pieces of the masked (absorbing-state) sampler (`masked_policy.py`): the sequence model
(`domains/sequences/mdlm.py`) and the graph model (`domains/molecules/graph_diffusion.py`)
reveal elements the same way and differ only in what an element is (a `Field`).

Both reveal a fixed number k of the m masked elements per step, uniformly
(the first-hitting sampler); a step's probability is the revealed types'
probabilities times the chance of the revealed set, 1 / C(m, k). Draws are
Gumbel-max from min-p truncated logits; differentiable draws are
straight-through Gumbel-softmax.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F


def gumbel_noise(shape: torch.Size, generator: torch.Generator) -> torch.Tensor:
    # By hand because F.gumbel_softmax draws from the global RNG and takes no generator.
    u = torch.rand(shape, generator=generator).clamp_(1e-10, 1 - 1e-10)
    return -torch.log(-torch.log(u))


def truncate_min_p(logits: torch.Tensor, min_p: float) -> torch.Tensor:
    """Logits with -inf wherever a type's probability is below `min_p` times the top one's
    (Nguyen et al. 2024, "Turning Up the Heat: Min-p Sampling"); unchanged for min_p 0."""
    if min_p == 0:
        return logits
    logp = torch.log_softmax(logits, -1)
    return logits.masked_fill(logp < logp.amax(-1, keepdim=True) + math.log(min_p), -torch.inf)


def categorical_kl(logits: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """KL(softmax(logits) || softmax(reference)) over the last axis."""
    logp, logq = torch.log_softmax(logits, -1), torch.log_softmax(reference, -1)
    return (logp.exp() * (logp - logq)).sum(-1)


def reveal_set_log_prob(masked: torch.Tensor, k: int) -> torch.Tensor:
    """log 1 / C(m, k) for each row's count m of masked elements: the chance of
    the set a step reveals."""
    m = masked.double()
    return (torch.lgamma(torch.tensor(k + 1.0)) + torch.lgamma(m - k + 1) - torch.lgamma(m + 1)).float()


def draw_one_hot(noisy: torch.Tensor, temperature: float, differentiable: bool) -> torch.Tensor:
    """One-hot of the Gumbel-max draw from `noisy` (logits plus Gumbel noise); with
    `differentiable`, straight-through Gumbel-softmax: the hard one-hot forward,
    the relaxed gradient backward."""
    hard = F.one_hot(noisy.argmax(-1), noisy.shape[-1]).float()
    if not differentiable:
        return hard
    soft = torch.softmax(noisy / temperature, -1)
    return hard - soft.detach() + soft


class Field:
    """One categorical field of a state: type indices (N, *shape) over `vocab` types, the mask
    being type `vocab`. The sampler sees a state as its fields (a sequence's tokens; a graph's
    atoms and bonds) and treats every element alike, so a field says only which elements there
    are. Here each entry is an element of its own; a field whose entries come in copies (a graph's
    symmetric bond matrix, one element per pair of atoms) overrides `counted`, `tie`, `pool` and
    `start`, and the sampler then masks, draws, scores and counts each element once."""

    def __init__(self, vocab: int, shape: tuple[int, ...]):
        self.vocab, self.shape = vocab, shape
        self.counted = torch.ones(shape, dtype=torch.bool)
        """(*shape) bool: the entries that are the field's elements, one entry each."""

    @property
    def mask_id(self) -> int:
        return self.vocab

    @property
    def num_elements(self) -> int:
        return int(self.counted.sum())

    def start(self, n: int) -> torch.Tensor:
        """n fully masked values, the reverse process's x_1."""
        return torch.full((n, *self.shape), self.mask_id)

    def tie(self, values: torch.Tensor) -> torch.Tensor:
        """Per-entry values (N, *shape, ...) with every copy set to its element's value: draws and
        masks are made per entry and tied, so that a state stays a valid encoding."""
        return values

    def pool(self, grad: torch.Tensor) -> torch.Tensor:
        """A gradient (N, *shape, ...) with respect to the entries, as one with respect to the
        elements, at every entry: an element moves all of its copies at once."""
        return grad

    def masked(self, one_hot: torch.Tensor) -> torch.Tensor:
        """(N, *shape) bool: where a (relaxed) one-hot (N, *shape, vocab + 1) is the mask."""
        return self.tie(one_hot[..., self.mask_id] > 0.5)

    def elements(self, values: torch.Tensor) -> torch.Tensor:
        """(N, num_elements): the elements' values, in a fixed order."""
        return values[:, self.counted]

    def entries(self, elements: torch.Tensor) -> torch.Tensor:
        """(N, *shape) bool from the elements' (N, num_elements) bools: the inverse of `elements`."""
        values = torch.zeros(len(elements), *self.shape, dtype=torch.bool)
        values[:, self.counted] = elements
        return self.tie(values)

    def count(self, among: torch.Tensor) -> torch.Tensor:
        """(N,) how many elements `among` (N, *shape) bool marks."""
        return (among & self.counted).sum(self._axes)

    def total(self, values: torch.Tensor, among: torch.Tensor) -> torch.Tensor:
        """(N,) the sum of per-entry values (N, *shape) over the elements `among` marks."""
        return (values * (among & self.counted)).sum(self._axes)

    @property
    def _axes(self) -> tuple[int, ...]:
        return tuple(range(-len(self.shape), 0))
