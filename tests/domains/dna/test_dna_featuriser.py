"""The DNA reward-model features: strand-pooled k-mer counts, hard and relaxed alike."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from domains.dna.featuriser import KmerFeaturiser, canonical_words
from domains.sequences import alphabet as alpha


def one_hot(designs):
    return F.one_hot(alpha.encode(designs, "ACGT", len(designs[0])), 4).float()


def test_a_word_and_its_reverse_complement_are_one_feature():
    words, pool = canonical_words(2)
    assert len(words) == 10 and pool.sum() == 16 and (pool.sum(0) >= 1).all()  # 6 pairs of words, 4 palindromes
    features = KmerFeaturiser(12, max_k=6)
    x = features(["AATGACTCATTT", "AAATGAGTCATT"])  # GCN4's site TGACTCA, one copy on each strand
    column = features.names.index("GAGTCA")  # TGACTC pooled with its reverse complement
    assert x[0, column] == x[1, column] == 1
    assert x[0, features.names.index("C")] == 3 and x[0, features.names.index("A")] == 9  # GC content, pooled
    assert torch.equal(x, features(["aatgactcattt", "AAATGAGTCATT"]))  # lower case reads the same


def test_hard_features_equal_the_relaxed_map_on_one_hots_and_counts_add_up():
    designs = ["ACGTTGCAAAAAAACCGGTCTCAT", "TTTTTTTGGGGCCCAATATATCGC"]
    features = KmerFeaturiser(24)
    x = features(designs)
    assert torch.allclose(x, features.relaxed(one_hot(designs)))
    for k, words, _ in features.blocks:  # every window of every length is counted once
        start = features.names.index(words[0])
        assert (x[:, start:start + len(words)].sum(1) == 24 - k + 1).all()


def test_the_hazard_columns_are_the_ones_the_synthesis_rules_read():
    features = KmerFeaturiser(24)
    hazards = features.names[features.hazard_columns]
    assert {"GAGACC", "AAAAAA", "A", "C"} <= set(hazards)  # BsaI (pooled with GGTCTC), runs, GC content
    assert not any(len(w) in (2, 3, 4, 5) for w in hazards)


def test_the_gradient_of_a_word_count_reaches_every_position():
    features = KmerFeaturiser(16)
    x = torch.full((1, 16, 4), 0.25, requires_grad=True)
    features.relaxed(x)[0, features.names.index("GAGTCA")].backward()
    assert (x.grad.abs().sum(-1) > 0).all()
