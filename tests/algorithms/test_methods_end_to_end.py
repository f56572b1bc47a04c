"""Every registered method, end to end on a tiny CPU run of the one online loop,
and the registry's errors for names and settings it does not know."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from algorithms.budgeted_oracle import BudgetedOracle
from algorithms.loop import run
from algorithms.method import Context, Feedback
from algorithms.registry import METHODS, build_method, resolve_config
from domains.base import CapabilityError, OracleOutput
from domains.sequences.featuriser import SequenceFeaturiser
from domains.sequences.mdlm import MaskedDiffusionModel, MDLMConfig
from domains.sequences.operators import StringOperators

CFG = MDLMConfig(alphabet="ACDE", length=6, num_steps=6, d_model=16, n_layers=1, n_heads=2)
ROUNDS = [8, 8]
BUDGET = sum(ROUNDS)
LEAVE_MODEL_ALONE = {"best-of-n", "genetic", "graph-ga", "guidance", "screening"}  # search, or steer sampling without training
FAST = {"finetune_steps": 2, "batch_size": 4, "last_k": 2, "reward_model": {"steps": 5, "hidden": 8, "min_feasible": 2}}


def markov_data(n: int, generator: torch.Generator) -> tuple[torch.Tensor, None]:
    """Stand-in pretraining data: uniform tokens."""
    return torch.randint(len(CFG.alphabet), (n, CFG.length), generator=generator), None


class CountA:
    """Reward = number of 'A's; a design containing "DD" is infeasible."""

    name = "count-a"
    floor = 0.0
    optimum = float(CFG.length)

    def __call__(self, designs):
        feasible = np.array(["DD" not in d for d in designs])
        reward = np.array([float(d.count("A")) for d in designs])
        return OracleOutput(np.where(feasible, reward, np.nan), feasible)

    def key(self, design):
        return design


def tiny_model(seed: int = 0) -> MaskedDiffusionModel:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return MaskedDiffusionModel(CFG)


def tiny_run(name: str):
    """One tiny run; returns (method, model, initial weights, oracle, records, feedback seen by update)."""
    model = tiny_model()
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    context = Context(SequenceFeaturiser(CFG.alphabet, CFG.length), CountA.floor, seed=0,
                      operators=StringOperators(CFG.alphabet, CFG.length), pretraining_data=markov_data,
                      key=CountA().key)
    fields = {f.name for f in dataclasses.fields(METHODS[name].config_cls)}
    settings = FAST if "finetune_steps" in fields else {"reward_model": FAST["reward_model"]} if "reward_model" in fields else {}
    method = build_method(name, context, settings)
    oracle = BudgetedOracle(CountA(), BUDGET, method=name, seed=0)
    seen: list[Feedback] = []
    update = method.update

    def spy(model, data, round):
        seen.append(Feedback(list(data.designs), data.reward.copy(), data.feasible.copy(), data.round.copy()))
        return update(model, data, round)

    method.update = spy
    records = run(method, model, oracle, ROUNDS, floor=CountA.floor, eval_samples=16, eval_seed=123)
    return method, model, initial, oracle, records, seen


@pytest.fixture(scope="module", params=sorted(METHODS))
def finished(request):
    return request.param, *tiny_run(request.param)


def test_charged_queries_stay_within_the_budget(finished):
    name, method, model, initial, oracle, records, seen = finished
    log = oracle.log()
    assert int(log["charged"].sum()) == oracle.used <= BUDGET
    assert records[-1].queries_used == oracle.used
    assert [r.queries_used for r in records] == sorted(r.queries_used for r in records)


def test_one_record_for_round_zero_and_one_per_scheduled_round(finished):
    name, method, model, initial, oracle, records, seen = finished
    schedule = method.schedule(ROUNDS)
    assert sum(schedule) == BUDGET
    assert [r.round for r in records] == list(range(len(schedule) + 1))
    assert records[0].queries_used == 0
    for r in records:
        assert 0.0 <= r.feasible_fraction <= 1.0 and np.isfinite(r.value)
    assert np.isnan(records[0].learned_reward)  # nothing learned before any query
    if method.predict(["ACDEAC"]) is None:  # search methods learn no reward
        assert all(np.isnan(r.learned_reward) for r in records)
        return
    assert all(np.isfinite(r.learned_reward) for r in records[1:])
    assert "reward_model_mse" in records[-1].diagnostics
    if name not in LEAVE_MODEL_ALONE:
        assert {"finetune_reward", "finetune_kl"} <= set(records[-1].diagnostics)


def test_method_learns_only_from_queries_in_the_log(finished):
    name, method, model, initial, oracle, records, seen = finished
    log = oracle.log()
    data = seen[-1]
    assert len(seen) == len(method.schedule(ROUNDS))
    assert len(data) == len(log)
    assert data.designs == log["key"].tolist()
    assert (log["charged"] | log["cached"]).all()
    assert np.array_equal(data.reward, log["reward"].to_numpy(dtype=float), equal_nan=True)
    assert data.feasible.tolist() == log["feasible"].tolist()
    assert data.round.tolist() == log["round"].tolist()


def test_fine_tuning_changes_the_model_and_search_leaves_it_alone(finished):
    name, method, model, initial, oracle, records, seen = finished
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, initial[k])]
    if name in LEAVE_MODEL_ALONE:  # the pretrained model is only a source of designs
        assert not changed
    else:
        assert changed


def test_non_adaptive_spends_the_whole_budget_in_one_round():
    method, _, _, oracle, records, seen = tiny_run("non-adaptive")
    assert method.schedule(ROUNDS) == [BUDGET]
    assert len(records) == 2 and len(seen) == 1
    log = oracle.log()
    assert len(log) == BUDGET and (log["round"] == 1).all()


def test_adaptive_methods_query_every_round():
    oracle = tiny_run("greedy")[3]
    assert oracle.log()["round"].value_counts().sort_index().tolist() == ROUNDS


class SamplerOnly:
    """A model that can only sample: what a method needing more must refuse."""

    num_steps = CFG.num_steps

    def __init__(self):
        self.model = tiny_model()

    def sample(self, n, *, generator, keep_trajectory=False, condition=None):
        return self.model.sample(n, generator=generator)


@pytest.mark.parametrize("name,missing", [("ddpo-is", "log_prob"), ("large-scale-rl", "log_prob"),
                                          ("guidance", "sample_guided"), ("seiko-ucb", "sample_with_grad"),
                                          ("rwr", "denoising_loss")])
def test_a_missing_capability_fails_before_any_query(name, missing):
    context = Context(SequenceFeaturiser(CFG.alphabet, CFG.length), 0.0, seed=0, pretraining_data=markov_data)
    oracle = BudgetedOracle(CountA(), BUDGET, method=name, seed=0)
    with pytest.raises(CapabilityError, match=f"{name} needs the model's .*{missing}.*SamplerOnly"):
        run(build_method(name, context), SamplerOnly(), oracle, ROUNDS, floor=0.0, eval_samples=4, eval_seed=0)
    assert oracle.used == 0 and len(oracle.log()) == 0


def test_unknown_method_name_suggests_the_closest():
    with pytest.raises(ValueError, match="did you mean 'seiko-ucb'"):
        resolve_config("seiko-ubc")


def test_unknown_setting_is_named():
    with pytest.raises(ValueError, match="'finetune_step'.*did you mean 'finetune_steps'"):
        resolve_config("greedy", {"finetune_step": 2})


def test_unknown_nested_setting_is_named():
    with pytest.raises(ValueError, match="'hiden'"):
        resolve_config("seiko-ucb", {"reward_model": {"hiden": 8}})


@pytest.mark.parametrize("name", ["seiko-bootstrap", "seiko-ts"])
def test_ensemble_optimism_with_one_member_names_the_field(name):
    with pytest.raises(ValueError, match="ensemble_size"):
        resolve_config(name, {"reward_model": {"ensemble_size": 1}})


def test_settings_are_laid_over_the_variants_defaults():
    cfg = resolve_config("seiko-ucb", {"reward_model": {"hidden": 8}})
    assert cfg.optimism == "ucb"
    assert (cfg.reward_model.hidden, cfg.reward_model.ensemble_size, cfg.reward_model.bootstrap) == (8, 1, False)
    assert resolve_config("seiko-bootstrap").reward_model.ensemble_size >= 2


def test_nested_settings_keep_the_methods_own_defaults():
    cfg = resolve_config("guidance", {"reward_model": {"hidden": 8}})
    assert (cfg.reward_model.hidden, cfg.reward_model.ensemble_size, cfg.reward_model.bootstrap) == (8, 1, False)
