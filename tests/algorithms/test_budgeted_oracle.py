"""The budgeted oracle: the one place feedback is charged, cached and logged."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from algorithms.budgeted_oracle import LOG_COLUMNS, BudgetedOracle, BudgetExhausted, OracleError
from domains.base import OracleOutput


class CountA:
    """Reward = number of 'A's; a design containing "DD" is infeasible. Records every batch it is asked."""

    name = "count-a"
    floor = 0.0
    optimum = None

    def __init__(self, infeasible_reward: float = 0.0):
        self.batches: list[list[str]] = []
        self.infeasible_reward = infeasible_reward

    def __call__(self, designs):
        self.batches.append(list(designs))
        feasible = np.array(["DD" not in d for d in designs])
        reward = np.array([float(d.count("A")) for d in designs])
        return OracleOutput(np.where(feasible, reward, self.infeasible_reward), feasible)

    def key(self, design):
        return design

    @property
    def calls(self) -> int:
        return len(self.batches)

    @property
    def asked(self) -> list[str]:
        return [d for batch in self.batches for d in batch]


class Broken(CountA):
    """Answers with whatever `answer` makes of a batch."""

    def __init__(self, answer):
        super().__init__()
        self.answer = answer

    def __call__(self, designs):
        self.batches.append(list(designs))
        return self.answer(designs)


def test_spent_budget_raises_before_the_oracle_is_called():
    oracle = CountA()
    budgeted = BudgetedOracle(oracle, 3, method="m", seed=0)
    budgeted(["AACCEE", "CCCCCC", "EEEEEE"], round=1)
    assert budgeted.remaining == 0 and oracle.calls == 1
    with pytest.raises(BudgetExhausted, match="only 0 of the budget of 3 remain"):
        budgeted(["AAAAAA"], round=2)
    assert oracle.calls == 1
    assert len(budgeted.log()) == 3
    assert budgeted.used == 3


def test_batch_that_would_overrun_the_budget_is_refused_whole():
    oracle = CountA()
    budgeted = BudgetedOracle(oracle, 3, method="m", seed=0)
    budgeted(["AAAAAA"], round=1)
    with pytest.raises(BudgetExhausted):
        budgeted(["CCCCCC", "EEEEEE", "ACACAC"], round=2)
    assert oracle.calls == 1  # nothing of the refused batch was asked
    assert len(budgeted.log()) == 1  # nothing of the refused batch was logged
    assert budgeted.used == 1
    # The two that fit are still answered afterwards.
    budgeted(["CCCCCC", "EEEEEE"], round=2)
    assert budgeted.remaining == 0


def test_repeat_query_across_batches_is_free():
    oracle = CountA()
    budgeted = BudgetedOracle(oracle, 2, method="m", seed=0)
    first = budgeted(["AACCEE"], round=1)
    second = budgeted(["AACCEE"], round=2)
    assert oracle.asked == ["AACCEE"]  # the repeat never reached the oracle
    assert (first.charged, second.charged) == (1, 0)
    assert budgeted.used == 1
    assert second.reward.tolist() == first.reward.tolist() == [2.0]
    row = budgeted.log().iloc[1]
    assert not row["charged"] and row["cached"] and pd.isna(row["call"]) and row["wall_s"] == 0.0


def test_repeat_query_within_one_batch_is_free():
    oracle = CountA()
    budgeted = BudgetedOracle(oracle, 10, method="m", seed=0)
    answer = budgeted(["AACCEE", "CCCCCC", "AACCEE", "AACCEE"], round=1)
    assert oracle.asked == ["AACCEE", "CCCCCC"]
    assert answer.charged == 2 and budgeted.used == 2
    assert answer.reward.tolist() == [2.0, 0.0, 2.0, 2.0]
    log = budgeted.log()
    assert log["charged"].tolist() == [True, True, False, False]
    assert log["cached"].tolist() == [False, False, True, True]
    assert log["call"].isna().tolist() == [False, False, True, True]


def test_a_full_budget_still_answers_repeats():
    oracle = CountA()
    budgeted = BudgetedOracle(oracle, 1, method="m", seed=0)
    budgeted(["AACCEE"], round=1)
    answer = budgeted(["AACCEE", "AACCEE"], round=2)
    assert answer.charged == 0 and oracle.calls == 1


def test_infeasible_queries_are_charged_by_default():
    budgeted = BudgetedOracle(CountA(), 10, method="m", seed=0)
    answer = budgeted(["ADDCEE", "AACCEE"], round=1)
    assert answer.feasible.tolist() == [False, True]
    assert answer.charged == 2 and budgeted.used == 2
    assert budgeted.log()["charged"].tolist() == [True, True]


def test_infeasible_queries_are_free_when_not_charged():
    oracle = CountA()
    budgeted = BudgetedOracle(oracle, 10, method="m", seed=0, charge_infeasible=False)
    answer = budgeted(["ADDCEE", "AACCEE", "CCDDCC"], round=1)
    assert answer.charged == 1 and budgeted.used == 1
    log = budgeted.log()
    assert log["charged"].tolist() == [False, True, False]
    assert log["cached"].tolist() == [False, False, False]  # asked, just not paid for
    assert log["call"].tolist()[1] == 1
    # ... and a repeat of a free infeasible design is answered from the cache.
    budgeted(["ADDCEE"], round=2)
    assert oracle.calls == 1 and budgeted.used == 1


def test_every_query_is_logged_with_the_schema_and_calls_count_charged_rows():
    budgeted = BudgetedOracle(CountA(), 10, method="seiko-ucb", seed=7)
    budgeted(["AACCEE", "CCCCCC", "AACCEE", "ADDCEE"], round=1)
    budgeted(["CCCCCC", "EEEEEE", "AAAAAA"], round=2)
    log = budgeted.log()
    assert list(log.columns) == LOG_COLUMNS
    assert len(log) == 7  # every query, cached or not
    assert log["key"].tolist() == ["AACCEE", "CCCCCC", "AACCEE", "ADDCEE", "CCCCCC", "EEEEEE", "AAAAAA"]
    assert log["round"].tolist() == [1, 1, 1, 1, 2, 2, 2]
    assert (log["method"] == "seiko-ucb").all() and (log["seed"] == 7).all()
    charged = log[log["charged"]]
    assert charged["call"].tolist() == list(range(1, len(charged) + 1)) == list(range(1, budgeted.used + 1))
    assert log.loc[~log["charged"], "call"].isna().all()
    assert (log["wall_s"] >= 0).all()


def test_reward_is_nan_exactly_where_infeasible():
    # The oracle answers 0 (not NaN) for infeasible designs; the wrapper makes it NaN.
    budgeted = BudgetedOracle(CountA(infeasible_reward=0.0), 10, method="m", seed=0)
    answer = budgeted(["ADDCEE", "AACCEE", "CCCCCC", "DDDDDD"], round=1)
    assert np.isnan(answer.reward).tolist() == (~answer.feasible).tolist() == [True, False, False, True]
    log = budgeted.log()
    assert log["reward"].isna().tolist() == (~log["feasible"]).tolist()
    # A cached repeat keeps the NaN.
    again = budgeted(["ADDCEE"], round=2)
    assert math.isnan(again.reward[0]) and not again.feasible[0]


def test_oracle_that_raises_gives_oracle_error_and_charges_nothing():
    def fail(designs):
        raise KeyError("assay robot offline")

    oracle = Broken(fail)
    budgeted = BudgetedOracle(oracle, 10, method="m", seed=0)
    with pytest.raises(OracleError, match="count-a") as err:
        budgeted(["AACCEE", "CCCCCC"], round=1)
    assert "assay robot offline" in str(err.value)
    assert budgeted.used == 0 and len(budgeted.log()) == 0
    # Nothing was cached either: the next try asks again.
    oracle.answer = CountA()
    budgeted(["AACCEE"], round=1)
    assert oracle.calls == 2 and budgeted.used == 1


def test_nan_reward_for_a_feasible_design_is_an_oracle_error():
    oracle = Broken(lambda d: OracleOutput(np.array([1.0, math.nan]), np.array([True, True])))
    budgeted = BudgetedOracle(oracle, 10, method="m", seed=0)
    with pytest.raises(OracleError, match="non-finite reward"):
        budgeted(["AACCEE", "CCCCCC"], round=1)
    assert budgeted.used == 0 and len(budgeted.log()) == 0


def test_wrong_length_answer_is_an_oracle_error():
    oracle = Broken(lambda d: OracleOutput(np.array([1.0]), np.array([True])))
    budgeted = BudgetedOracle(oracle, 10, method="m", seed=0)
    with pytest.raises(OracleError, match="for 2 designs"):
        budgeted(["AACCEE", "CCCCCC"], round=1)
    assert budgeted.used == 0 and len(budgeted.log()) == 0


def test_budget_below_one_is_rejected():
    with pytest.raises(ValueError, match="budget"):
        BudgetedOracle(CountA(), 0, method="m", seed=0)


class SaysWhy(CountA):
    """CountA that says why a design is infeasible, counting how often it is asked."""

    def __init__(self, reasons=None):
        super().__init__()
        self.explained: list[str] = []
        self._reasons = reasons

    def reasons(self, designs):
        self.explained += list(designs)
        return self._reasons(designs) if self._reasons else [None if "DD" not in d else "has DD" for d in designs]


def test_the_log_says_why_each_infeasible_design_was_refused():
    oracle = SaysWhy()
    budgeted = BudgetedOracle(oracle, 10, method="m", seed=0)
    budgeted(["ADDA", "AA"], round=1)
    budgeted(["ADDA"], round=2)  # a cached repeat keeps its reason, and is not explained again
    log = budgeted.log()
    assert log["reason"].tolist() == ["has DD", "", "has DD"]
    assert oracle.explained == ["ADDA"]  # only the new infeasible design is asked about


def test_an_oracle_that_does_not_say_why_leaves_the_reason_empty():
    budgeted = BudgetedOracle(CountA(), 10, method="m", seed=0)
    budgeted(["ADDA", "AA"], round=1)
    assert budgeted.log()["reason"].tolist() == ["", ""]


@pytest.mark.parametrize("reasons", [lambda designs: 1 / 0, lambda designs: ["x"]])
def test_a_broken_reasons_is_one_oracle_error_and_charges_nothing(reasons):
    budgeted = BudgetedOracle(SaysWhy(reasons), 10, method="m", seed=0)
    with pytest.raises(OracleError, match="reason"):
        budgeted(["ADDA", "BDDB"], round=1)
    assert budgeted.used == 0 and budgeted.log().empty
