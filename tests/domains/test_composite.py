"""The multi-reward oracle: a weighted sum whose every component call is logged."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from algorithms.budgeted_oracle import BudgetedOracle
from domains.composite import WeightedSum
from domains.sequences.ehrlich import Ehrlich, EhrlichConfig, MotifPresence
from domains.tasks import get_task
from reports.metrics import load_log, summarise

EHRLICH = Ehrlich(EhrlichConfig(num_states=8, dim=12, num_motifs=2, motif_length=3, seed=1))


def designs(n: int = 64) -> list[str]:
    markov = EHRLICH.decode(EHRLICH.sample_markov(n // 2, torch.Generator().manual_seed(0)))
    rng = np.random.default_rng(0)  # uniform strings: many break the banned transitions
    uniform = ["".join(rng.choice(list(EHRLICH.alphabet), EHRLICH.config.dim)) for _ in range(n // 2)]
    return markov + uniform + [EHRLICH.optimal_solution()]


def test_motif_presences_multiply_to_the_ehrlich_function():
    ds = designs()
    whole = EHRLICH(ds)
    parts = [MotifPresence(EHRLICH, i)(ds) for i in range(2)]
    assert all(np.array_equal(p.feasible, whole.feasible) for p in parts)
    assert np.allclose(parts[0].reward * parts[1].reward, whole.reward, equal_nan=True)
    assert 0 < whole.feasible.mean() < 1  # both kinds of design are exercised


def test_weighted_sum_adds_components_and_is_feasible_where_all_are():
    a, b = MotifPresence(EHRLICH, 0), MotifPresence(EHRLICH, 1)
    oracle = WeightedSum([(a, 0.25), (b, 0.75)], optimum=1.0)
    ds = designs()
    out = oracle(ds)
    ra, rb = a(ds).reward, b(ds).reward
    assert np.allclose(out.reward, 0.25 * ra + 0.75 * rb, equal_nan=True)
    assert np.array_equal(out.feasible, a(ds).feasible & b(ds).feasible)
    assert np.isnan(out.reward[~out.feasible]).all()
    assert set(out.components) == {a.name, b.name} and np.allclose(out.components[a.name], ra, equal_nan=True)
    assert out.reward[-1] == 1.0 and oracle.calls_per_design == 2 and oracle.floor == 0.0


@pytest.mark.parametrize("components,match", [([(MotifPresence(EHRLICH, 0), 1.0)], "at least two"),
                                              ([(MotifPresence(EHRLICH, 0), 1.0)] * 2, "distinct names"),
                                              ([(MotifPresence(EHRLICH, 0), 1.0), (MotifPresence(EHRLICH, 1), 0.0)],
                                               "weights must be > 0")])
def test_weighted_sum_rejects_bad_components(components, match):
    with pytest.raises(ValueError, match=match):
        WeightedSum(components)


def test_every_component_call_is_in_the_query_log(tmp_path):
    oracle = WeightedSum([(MotifPresence(EHRLICH, 0), 0.5), (MotifPresence(EHRLICH, 1), 0.5)])
    budgeted = BudgetedOracle(oracle, 100, method="m", seed=0)
    ds = designs(20)
    budgeted(ds, round=1)
    budgeted(ds[:5], round=2)  # repeats: cached, no oracle call
    log = budgeted.log()
    assert log["oracle_calls"].tolist() == [2] * 21 + [0] * 5
    for i, name in enumerate(c.name for c, _ in oracle.components):
        column = log[f"reward.{name}"].to_numpy(float)
        assert np.allclose(column[:21], MotifPresence(EHRLICH, i)(ds).reward, equal_nan=True)
    path = tmp_path / "queries.csv"
    log.to_csv(path, index=False)
    back = load_log(path)
    assert back[f"reward.{oracle.components[0][0].name}"].dtype == np.float64
    assert summarise(back, 100, oracle.floor)["oracle_calls"] == 42


def test_the_multi_reward_task_shares_its_base_tasks_model_and_data():
    base, multi = get_task("ehrlich-l32-c2-k4"), get_task("ehrlich-l32-c2-k4-sum")
    assert isinstance(multi.oracle, WeightedSum) and multi.oracle.optimum == 1.0
    x, condition = multi.pretraining_data(4, torch.Generator().manual_seed(0))
    assert x.shape == (4, 32) and condition is None
    assert base.oracle(base.oracle.decode(x)).feasible.all()
    assert torch.equal(base.load_model().denoiser.head.weight, multi.load_model().denoiser.head.weight)
