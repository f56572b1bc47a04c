"""A cell on two processes (gloo, CPU) against one process with the same two
shards of every batch (`algorithms.parallel`): the same query log, and the same
trained parameters to float tolerance, for a method of each kind of update:
reward back-propagation through the sampler (Greedy), the policy gradient
(DDPO-IS, and large-scale RL with its regulariser every rank computes in full)
and the weighted denoising loss (RWR). Were gradients not summed across the
processes (ddpo-pytorch's issue #10), each rank would step on half a batch and
the parameters would differ; the test also checks that they moved at all."""

from __future__ import annotations

import pickle
from pathlib import Path

import pandas as pd
import pytest
import torch

from algorithms import loop
from algorithms.budgeted_oracle import BudgetedOracle
from algorithms.method import Context
from algorithms.parallel import Ranks
from algorithms.registry import build_method
from benchmarks.cli import main
from benchmarks.launch import join_group, launch
from domains.tasks import get_task
from tests.tiny_run import TINY

TASK = "ehrlich-l32-c2-k4"
SETTINGS = {
    "greedy": {"finetune_steps": 3, "batch_size": 8, "reward_model": {"steps": 5}},
    "ddpo-is": {"batch_size": 8, "inner_epochs": 1, "timestep_fraction": 0.25},
    "large-scale-rl": {"batch_size": 8, "inner_epochs": 1, "timestep_fraction": 0.25, "pretrain_batch": 4},
    "rwr": {"batch_size": 8, "epochs": 1},
}


def train_all(out: str, ranks: Ranks | None) -> None:
    """Every method of SETTINGS for two rounds of 16 queries; rank 0 pickles each one's
    trained parameters and query log to `out`. `ranks` None: this process's place
    in the group `launch` started."""
    if ranks is None:
        world, rank = join_group()
        assert world == 2
        ranks = Ranks(world, rank, shards=2)
    torch.set_num_threads(1)
    task = get_task(TASK)
    results = {}
    for name, settings in SETTINGS.items():
        model = task.load_model()
        before = [p.detach().clone() for p in model.trainable_parameters()]
        method = build_method(name, Context.from_task(task, 0, ranks), settings)
        oracle = BudgetedOracle(task.oracle, 32, method=name, seed=0)
        loop.run(method, model, oracle, [16, 16], floor=task.oracle.floor, eval_samples=8, ranks=ranks)
        after = [p.detach().clone() for p in model.trainable_parameters()]
        results[name] = {"before": before, "after": after, "log": oracle.log()}
    if ranks.main:
        Path(out).write_bytes(pickle.dumps(results))


def test_two_processes_train_what_one_process_trains_on_the_same_shards(tmp_path):
    one, two = tmp_path / "one.pkl", tmp_path / "two.pkl"
    train_all(str(one), Ranks(world=1, rank=0, shards=2))
    launch(train_all, (str(two), None), processes=2)
    alone, parallel = pickle.loads(one.read_bytes()), pickle.loads(two.read_bytes())
    for name in SETTINGS:
        pd.testing.assert_frame_equal(without_times(parallel[name]["log"]), without_times(alone[name]["log"]))
        moved = sum(float((a - b).abs().sum()) for a, b in zip(alone[name]["after"], alone[name]["before"]))
        assert moved > 0, f"{name} did not train"
        for a, b in zip(parallel[name]["after"], alone[name]["after"]):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=f"{name}: parameters differ")


CELL = ["protein", *TINY, "--no-report"]


def without_times(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=[c for c in frame.columns if c in ("wall_s", "peak_rss_mb", "seconds")])


def test_a_cell_on_two_processes_writes_the_cell_of_one_process_with_two_shards(tmp_path):
    assert main(["run", "--out", str(tmp_path / "two"), *CELL, "--processes", "2"]) == 0
    assert main(["run", "--out", str(tmp_path / "one"), *CELL, "--set", "shards=2"]) == 0
    folder = Path("protein", TASK, "greedy", "seed0")
    for name in ("queries.csv", "evals.csv"):
        pd.testing.assert_frame_equal(without_times(pd.read_csv(tmp_path / "two" / folder / name)),
                                      without_times(pd.read_csv(tmp_path / "one" / folder / name)))
    assert (tmp_path / "two" / folder / "metrics.json").read_text().count('"processes": 2') == 1
    # The same settings: the one-process run finds the two-process cell finished.
    assert main(["run", "--out", str(tmp_path / "two"), *CELL, "--set", "shards=2"]) == 0


def test_shards_that_the_processes_cannot_split_are_refused(tmp_path, capsys):
    assert main(["run", "--out", str(tmp_path), *CELL, "--processes", "2", "--set", "shards=3"]) == 2
    assert "shards=3 cannot be split among 2 processes" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["0", "-1"])
def test_processes_below_one_are_refused(tmp_path, capsys, flag):
    assert main(["run", "--out", str(tmp_path), *CELL, "--processes", flag]) == 2
    assert "--processes must be at least 1" in capsys.readouterr().err
