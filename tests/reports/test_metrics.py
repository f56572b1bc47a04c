"""Query-log metrics, pinned on a small log worked out by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reports.metrics import (
    auc_top_k,
    best_so_far,
    feasibility_by_round,
    load_log,
    scores,
    summarise,
    top_k_curve,
    top_queries,
)

FLOOR = -1.0
COLUMNS = ["call", "round", "method", "seed", "key", "reward", "feasible", "reason", "charged", "cached", "oracle_calls",
           "wall_s"]


def make_log(rows: list[tuple]) -> pd.DataFrame:
    """A query log from (call, round, key, reward, feasible, charged, cached) tuples."""
    records = [(call, rnd, "m", 0, key, reward, flags[0], "" if flags[0] else "refused", *flags[1:],
                0 if flags[-1] else 1, 0.1)
               for call, rnd, key, reward, *flags in rows]
    log = pd.DataFrame(records, columns=COLUMNS)
    return log.astype({"call": "Int64", "reward": "float64"})


@pytest.fixture
def log() -> pd.DataFrame:
    """Five charged queries, one infeasible (scores FLOOR), plus three free rows."""
    return make_log(
        [
            (1, 1, "a", 0.5, True, True, False),
            (2, 1, "b", np.nan, False, True, False),  # charged infeasible -> FLOOR
            (None, 1, "a", 0.5, True, False, True),  # cached repeat of "a": free
            (3, 2, "c", 0.8, True, True, False),
            (4, 2, "d", 0.2, True, True, False),
            (5, 2, "e", 0.9, True, True, False),
            (None, 3, "c", 0.8, True, False, True),  # round 3 is all free rows
            (None, 3, "f", np.nan, False, False, False),  # free infeasible
        ]
    )


def test_scores_keep_charged_rows_in_call_order_with_floor_for_infeasible(log):
    shuffled = log.sample(frac=1.0, random_state=0)
    got = scores(shuffled, FLOOR)
    assert got["call"].tolist() == [1, 2, 3, 4, 5]
    assert got["score"].tolist() == [0.5, FLOOR, 0.8, 0.2, 0.9]


def test_gap_in_calls_is_rejected(log):
    with pytest.raises(ValueError, match="calls 1..n"):
        scores(log[log["call"] != 3], FLOOR)


def test_top_queries_are_the_best_feasible_charged_designs_best_first(log):
    assert top_queries(log, 3)["key"].tolist() == ["e", "c", "a"]  # free rows and the infeasible "b" never count
    assert top_queries(log)["key"].tolist() == ["e", "c", "a", "d"]


def test_best_so_far_ignores_free_rows(log):
    np.testing.assert_allclose(best_so_far(log, FLOOR), [0.5, 0.5, 0.8, 0.8, 0.9])


def test_top_k_curve_averages_fewer_than_k_early(log):
    # scores 0.5, -1, 0.8, 0.2, 0.9; top-2 means of the prefixes:
    np.testing.assert_allclose(top_k_curve(log, FLOOR, k=2), [0.5, -0.25, 0.65, 0.65, 0.85])
    np.testing.assert_allclose(top_k_curve(log, FLOOR, k=1), best_so_far(log, FLOOR))


def test_auc_matches_hand_computation(log):
    # budget 10, freq 2, k 2, floor -1; top-2 curve T = 0.5, -0.25, 0.65, 0.65, 0.85 (n = 5)
    #   i = 2: 2 * (-1    + -0.25) / 2 = -1.25   (prev starts at the floor)
    #   i = 4: 2 * (-0.25 +  0.65) / 2 =  0.40
    #   remainder (5 - 4) * (0.65 + 0.85) / 2 = 0.75
    #   pad       (10 - 5) * 0.85            = 4.25
    #   sum = 4.15, / budget 10 = 0.415
    assert auc_top_k(log, budget=10, floor=FLOOR, k=2, freq=2) == pytest.approx(0.415)


def test_auc_at_optimum_from_first_call_loses_only_the_first_trapezoid():
    # Every charged query scores the optimum, so the top-k curve is flat at it.
    # PMO's first trapezoid rises from the floor, so AUC = opt - freq (opt - floor) / (2 budget).
    optimum, budget, freq = 2.0, 1000, 100
    log = make_log([(i, 1, f"x{i}", optimum, True, True, False) for i in range(1, 301)])
    expected = optimum - freq * (optimum - FLOOR) / (2 * budget)
    assert auc_top_k(log, budget, FLOOR, k=10, freq=freq) == pytest.approx(expected)
    assert auc_top_k(log, budget, floor=optimum, k=10, freq=freq) == pytest.approx(optimum)


def test_auc_pads_short_log_with_its_final_value():
    # 3 queries < freq: no logged step; remainder 3 * (floor + 0.6) / 2 = -0.6, pad 97 * 0.6 = 58.2
    rows = [(1, "a", 0.6), (2, "b", 0.1), (3, "c", 0.3)]
    log = make_log([(call, 1, key, reward, True, True, False) for call, key, reward in rows])
    assert auc_top_k(log, budget=100, floor=FLOOR, k=1, freq=100) == pytest.approx((58.2 - 0.6) / 100)


def test_padding_equals_spending_the_rest_on_worse_designs(log):
    # Once k scores are in, extra queries at the floor leave the top-k curve flat,
    # so charging them must give the same AUC as padding (n = 5 is a multiple of
    # freq, so both logs are sampled on the same grid).
    extra = make_log([(c, 4, f"z{c}", np.nan, False, True, False) for c in range(6, 21)])
    full = pd.concat([log, extra], ignore_index=True)
    assert auc_top_k(full, 20, FLOOR, k=2, freq=5) == pytest.approx(auc_top_k(log, 20, FLOOR, k=2, freq=5))


def test_log_longer_than_budget_is_rejected(log):
    with pytest.raises(ValueError, match="more than the budget"):
        auc_top_k(log, budget=4, floor=FLOOR)


def test_feasibility_by_round_falls_back_to_all_rows_when_nothing_charged(log):
    got = feasibility_by_round(log)
    assert got.index.tolist() == [1, 2, 3]
    np.testing.assert_allclose(got.to_numpy(), [0.5, 1.0, 0.5])


def test_summarise_is_plain_json(log):
    summary = summarise(log, budget=10, floor=FLOOR, k=10, freq=2)
    json.dumps(summary, allow_nan=False)
    assert summary["budget"] == 10
    assert summary["queries_used"] == 5
    assert summary["queries_logged"] == 8
    assert summary["cache_hits"] == 2
    assert summary["best"] == pytest.approx(0.9)
    assert summary["top10"] == pytest.approx((0.5 - 1 + 0.8 + 0.2 + 0.9) / 5)
    assert summary["auc_top10"] == pytest.approx(auc_top_k(log, 10, FLOOR, 10, 2))
    assert summary["feasible_rate"] == pytest.approx(0.8)
    assert summary["feasible_by_round"] == pytest.approx([0.5, 1.0, 0.5])


def test_summarise_without_charged_queries_gives_none_not_nan():
    log = make_log([(None, 1, "a", 0.5, True, False, True)])
    summary = summarise(log, budget=10, floor=FLOOR)
    json.dumps(summary, allow_nan=False)
    assert summary["best"] is None and summary["top10"] is None and summary["feasible_rate"] is None
    assert summary["auc_top10"] == FLOOR


def test_load_log_round_trips_dtypes_and_odd_keys(log, tmp_path: Path):
    log = log.assign(key=["NAN", "0012", "NAN", "NA", "", "e", "NA", "f"])
    path = tmp_path / "queries.csv"
    log.to_csv(path, index=False)
    loaded = load_log(path)
    assert loaded["call"].dtype == "Int64" and loaded["call"].isna().sum() == 3
    assert all(loaded[c].dtype == bool for c in ("feasible", "charged", "cached"))
    assert loaded["key"].tolist() == ["NAN", "0012", "NAN", "NA", "", "e", "NA", "f"]
    assert math.isnan(loaded["reward"].iloc[1])
    np.testing.assert_allclose(best_so_far(loaded, FLOOR), best_so_far(log, FLOOR))
