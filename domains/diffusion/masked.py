"""What the masked (absorbing-state) discrete models share: the sequence model
(`domains/sequences/mdlm.py`) and the graph model (`domains/molecules/graph_diffusion.py`)
reveal elements the same way and differ only in what an element is.

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
