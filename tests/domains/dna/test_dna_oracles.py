"""The DNA oracle: JASPAR log-odds by hand, both strands, the synthesis rules and their reasons."""

from __future__ import annotations

import math

import numpy as np
import pytest

from domains.dna.oracles import YEAST_BACKGROUND, BindingOracle, SynthesisRules, UnknownMatrix, reverse_complement

# MA0303.3 (GCN4) counts in JASPAR2026, rows A C G T, as the database holds them.
GCN4 = np.array([[0, 1, 87, 0, 1, 7, 82, 6], [0, 0, 0, 62, 0, 78, 3, 20],
                 [0, 84, 2, 28, 2, 5, 2, 13], [90, 5, 1, 0, 87, 0, 3, 51]], dtype=float)
PAD = "ACGTTCAGAC"  # 50% GC, no site of note


def by_hand() -> np.ndarray:
    """log2(p / background), p the counts with 0.25 added per base."""
    p = (GCN4 + 0.25) / (GCN4.sum(0) + 1.0)
    background = np.array([YEAST_BACKGROUND[b] for b in "ACGT"])[:, None]
    return np.log2(p / background)


def test_best_site_relative_score_is_the_hand_computed_log_odds_on_either_strand():
    table = by_hand()
    site = "TGACTCAT"
    score = sum(table["ACGT".index(b), i] for i, b in enumerate(site))
    relative = (score - table.min(0).sum()) / (table.max(0).sum() - table.min(0).sum())
    oracle = BindingOracle("MA0303.3")
    forward = PAD + site + PAD
    assert oracle.assess(forward)[0] == pytest.approx(relative, abs=1e-5)
    assert oracle.assess(PAD + reverse_complement(site) + PAD)[0] == pytest.approx(relative, abs=1e-5)
    assert oracle.assess(forward.lower())[0] == oracle.assess(forward)[0]  # lower case is the same design
    assert oracle.key(forward.lower()) == forward


def test_occupancy_adds_sites_and_the_factor_can_be_named():
    oracle = BindingOracle("GCN4", aggregate="occupancy")
    one = oracle.assess(PAD + "TGACTCAT" + PAD)[0]
    two = oracle.assess(PAD + "TGACTCAT" + "AT" + "TGACTCAT" + PAD)[0]
    site_bits = BindingOracle("GCN4").site.max
    assert one == pytest.approx(1.0, abs=0.05)  # one perfect site and background
    assert (two - one) * site_bits > 0.9  # a second perfect site doubles the summed 2^score: one more bit
    assert oracle.assess("CAGGAAGG" * 5)[0] == 0.0  # nothing above the background


def test_an_off_target_factor_lowers_the_reward_by_its_best_site():
    plain = BindingOracle("GCN4")
    specific = BindingOracle("GCN4", off_targets=["MA0303.3"], off_weight=0.5)  # itself, as a checkable extreme
    seq = PAD + "TGACTCAT" + PAD
    assert specific.assess(seq)[0] == pytest.approx(plain.assess(seq)[0] * 0.5)
    assert specific.floor == -0.5 and specific.optimum == 1.0


@pytest.mark.parametrize("seq, reason", [
    ("ACGTNACGTA", "letter N"),
    ("GGGGCCCCGC", "GC 1.00 outside 0.3-0.7"),
    ("GCGTAAAAAAAGCC", "homopolymer of 7 > 6"),
    ("ATGGTCTCAT", "BsaI site GGTCTC"),
    ("ATGAGACGAT", "BsmBI site CGTCTC"),  # the reverse strand's site
    ("", "empty sequence"),
])
def test_a_sequence_that_cannot_be_synthesised_is_infeasible_with_its_reason(seq, reason):
    oracle = BindingOracle("GCN4")
    reward, why = oracle.assess(seq)
    assert math.isnan(reward) and why.startswith(reason)
    assert oracle.reasons([seq, PAD]) == [why, None]
    out = oracle([seq, PAD])
    assert out.feasible.tolist() == [False, True] and np.isnan(out.reward[0])


def test_wrong_lengths_and_non_strings_are_infeasible_not_errors():
    oracle = BindingOracle("GCN4", length=len(PAD))
    assert oracle.reasons([PAD + "A", 7]) == ["length 11, not 10", "not a string (int)"]


def test_unknown_matrices_and_bad_settings_are_one_line_errors():
    with pytest.raises(UnknownMatrix, match="no JASPAR matrix 'GCN5' in JASPAR2026; close: .*GCN4") as err:
        BindingOracle("GCN5")
    close = str(err.value).split("close: ")[1].split(", ")
    assert len(close) == len(set(close))  # a factor held by several matrix versions is named once
    with pytest.raises(ValueError, match="aggregate"):
        BindingOracle("GCN4", aggregate="mean")
    with pytest.raises(ValueError, match="GC window"):
        SynthesisRules(gc_min=0.8, gc_max=0.2)
