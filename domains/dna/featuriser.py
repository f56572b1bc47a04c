"""Reward-model features of DNA: counts of every k-mer up to length 6, each
pooled with its reverse complement.

A factor binds a site anywhere and on either strand, so the features are
position-free and strand-free: the count of a word plus that of its reverse
complement (GCN4's TGACTCA is one feature with TGAGTCA). Six letters cover
the core of most yeast factors' sites and the synthesis rules alike: GC
content is the 1-mer count of C/G, a homopolymer of seven is two overlapping
AAAAAA, a BsaI site is the 6-mer GGTCTC. The sequence domain's features
(position one-hots, bigrams and gapped-pair presences) see none of this on
DNA: with four letters every gapped pair is present in nearly every 64-base
sequence, so a presence carries no information.

Written by hand because the same map must apply to Gumbel-softmax
relaxations with gradients (`relaxed`): a soft count of a word sums, over
its positions, the product of its letters' probabilities, which is the count
on one-hots.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import product

import torch

from domains.dna.oracles import ALPHABET, reverse_complement
from domains.sequences import alphabet as alpha

MAX_K = 6
SCREEN = 64
"""Features a value model keeps (`RewardModelConfig.screen`): a factor's site is a few words among
thousands. Held-out Spearman at 448 yeast promoters, 16 -> 64 kept: GCN4 occupancy 0.53 -> 0.54,
PHO4 against CBF1 0.32 -> 0.36, RAP1 occupancy 0.24 -> 0.33."""


def canonical_words(k: int) -> tuple[list[str], torch.Tensor]:
    """The canonical k-mers (each the lesser of itself and its reverse
    complement) and the (4^k, canonical) 0/1 matrix that pools a k-mer's count
    into its canonical word's (words are numbered in base 4, first letter most significant)."""
    words = ["".join(w) for w in product(ALPHABET, repeat=k)]
    of = [min(w, reverse_complement(w)) for w in words]
    canonical = sorted(set(of))
    column = {w: i for i, w in enumerate(canonical)}
    pool = torch.zeros(len(words), len(canonical))
    pool[torch.arange(len(words)), torch.tensor([column[w] for w in of])] = 1
    return canonical, pool


class KmerFeaturiser:
    """The DNA `Featuriser`: strand-pooled counts of the k-mers of lengths `2..max_k`, then of
    lengths 1 (C/G and A/T). The last two blocks (the `max_k`-mers and the 1-mers) are the
    hazards the feasibility model reads: every synthesis rule is a function of them."""

    suggested_screen = SCREEN

    def __init__(self, length: int, max_k: int = MAX_K):
        if not 1 <= max_k <= length:
            raise ValueError(f"max_k must lie in 1..{length} (the length), got {max_k}")
        self.length, self.max_k = length, max_k
        order = [*range(2, max_k + 1), 1] if max_k > 1 else [1]
        self.blocks = [(k, *canonical_words(k)) for k in order]
        self.names = [w for _, words, _ in self.blocks for w in words]
        self.dim = len(self.names)
        hazards = sum(len(words) for k, words, _ in self.blocks if k in (1, max_k))
        self.hazard_columns = slice(self.dim - hazards, self.dim)

    def __call__(self, designs: Sequence[str]) -> torch.Tensor:
        """(N, dim) features of hard designs (upper or lower case), by indexing; equal to
        `relaxed` of their one-hots."""
        tokens = alpha.encode([d.upper() for d in designs], ALPHABET, self.length)
        n = len(tokens)
        out = []
        for k, _, pool in self.blocks:
            ids = torch.zeros(n, self.length - k + 1, dtype=torch.long)
            for j in range(k):
                ids = ids * 4 + tokens[:, j:self.length - k + 1 + j]
            counts = torch.zeros(n, 4 ** k).scatter_add_(1, ids, torch.ones(ids.shape))
            out.append(counts @ pool)
        return torch.cat(out, 1)

    def relaxed(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, L, 4) one-hot or relaxed one-hot; soft counts, differentiable in x."""
        words, soft = {1: x}, x
        for k in range(2, self.max_k + 1):
            soft = (soft[:, :-1, :, None] * x[:, k - 1:, None, :]).flatten(2)  # (N, L-k+1, 4^k)
            words[k] = soft
        return torch.cat([words[k].sum(1) @ pool for k, _, pool in self.blocks], 1)
