"""Search moves on strings keep the alphabet and the length."""

from __future__ import annotations

import torch

from domains.sequences.operators import StringOperators

ALPHABET, LENGTH = "ACDE", 12
OPS = StringOperators(ALPHABET, LENGTH)
PARENTS_A = ["AAAAAAAAAAAA", "ACACACACACAC"]
PARENTS_B = ["EEEEEEEEEEEE", "DDDDDDDDDDDD"]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_mutation_at_rate_zero_is_the_identity():
    assert OPS.mutate(PARENTS_A, 0.0, gen()) == PARENTS_A


def test_mutation_keeps_alphabet_and_length_and_changes_about_rate_of_letters():
    parents = ["A" * LENGTH] * 500
    children = OPS.mutate(parents, 0.5, gen())
    assert all(len(c) == LENGTH and set(c) <= set(ALPHABET) for c in children)
    changed = sum(a != b for c, p in zip(children, parents) for a, b in zip(c, p)) / (500 * LENGTH)
    assert abs(changed - 0.5 * 3 / 4) < 0.02  # redrawn w.p. 0.5, to another letter w.p. 3/4


def test_crossover_takes_every_position_from_one_parent():
    children = OPS.crossover(PARENTS_A, PARENTS_B, gen())
    for child, a, b in zip(children, PARENTS_A, PARENTS_B):
        assert all(c in (x, y) for c, x, y in zip(child, a, b))
        assert child != a and child != b  # 12 fair coins: both parents contribute (seeded)


def test_same_generator_seed_gives_the_same_children():
    assert OPS.mutate(PARENTS_A, 0.3, gen(1)) == OPS.mutate(PARENTS_A, 0.3, gen(1))
