"""Reward-model features of sequences: one-hot per position plus bigram counts.

Position one-hots let a reward model see motifs at fixed places; the bigram
counts (how often letter a is followed by letter b) make banned transitions,
and so infeasibility, a linear feature. Both are polynomial in the one-hot, so
the same map applies to Gumbel-softmax relaxations with gradients.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F

from domains.sequences import alphabet as alpha


class OneHotBigramFeaturiser:
    """The sequence-domain `Featuriser`: L*v one-hot features and v*v bigram counts."""

    def __init__(self, alphabet: str, length: int):
        self.alphabet, self.length = alphabet, length
        v = len(alphabet)
        self.dim = length * v + v * v
        self.token_shape = (length, v)
        """The first L*v features are the (L, v) one-hot: what a motif CNN reads."""

    def __call__(self, designs: Sequence[str]) -> torch.Tensor:
        tokens = alpha.encode(designs, self.alphabet, self.length)
        return self.relaxed(F.one_hot(tokens, len(self.alphabet)).float())

    def relaxed(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, L, v) one-hot or relaxed one-hot."""
        # Raw counts, not frequencies: one banned transition must move a feature by
        # 1, as much as a one-hot does, or the reward model cannot see it (dividing
        # by L-1 cut the held-out correlation of the fitted reward from 0.5 to 0.1).
        bigrams = torch.einsum("nla,nlb->nab", x[:, :-1], x[:, 1:])
        return torch.cat([x.flatten(1), bigrams.flatten(1)], 1)
