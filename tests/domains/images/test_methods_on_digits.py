"""Every registered method runs unchanged on the digits backend: the shipped
UNet (a random one draws nothing the classifier recognises, and a learned
value needs feasible designs), the real JPEG oracles and classifier, two short
rounds through the loop."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from algorithms.budgeted_oracle import BudgetedOracle
from algorithms.loop import run
from algorithms.method import Context
from algorithms.registry import METHODS, build_method
from domains.tasks import get_task

ROUNDS = [6, 6]
FAST = {"finetune_steps": 1, "batch_size": 2, "last_k": 1, "reward_model": {"steps": 5, "hidden": 8, "min_feasible": 2}}


def settings(name: str) -> dict:
    fields = {f.name for f in dataclasses.fields(METHODS[name].config_cls)}
    if "finetune_steps" in fields:
        return FAST
    if "reward_model" in fields:
        return {"reward_model": FAST["reward_model"], "scale": 1.0}
    if "inner_epochs" in fields:
        return {"batch_size": 4, **({"pretrain_batch": 4} if "pretrain_batch" in fields else {})}
    return {}


CASES = [(name, "digits-jpeg-compressibility") for name in sorted(METHODS)] + [("seiko-ucb", "digits-jpeg-incompressibility")]


@pytest.mark.parametrize("name,task_name", CASES)
def test_method_runs_on_digits(name, task_name):
    task = get_task(task_name)
    model = task.load_model()
    context = Context(task.featuriser, task.oracle.floor, seed=0, operators=task.operators,
                      pretraining_data=task.pretraining_data, key=task.oracle.key)
    method = build_method(name, context, settings(name))
    oracle = BudgetedOracle(task.oracle, sum(ROUNDS), method=name, seed=0)
    records = run(method, model, oracle, ROUNDS, floor=task.oracle.floor, eval_samples=4, eval_seed=1)
    assert records[-1].queries_used == oracle.used <= sum(ROUNDS)
    assert all(np.isfinite(r.value) for r in records)
    assert len(records[-1].samples) == 4 and records[-1].samples[0].pixels.shape == (16, 16)
    picture = task.render(records[-1].samples, ["0.500"] * len(records[-1].samples))
    assert picture.dtype == np.uint8 and picture.ndim == 3
