"""The runner on real tiny runs: the results schema, and resuming.

One greedy cell of the shipped `protein` spec, shrunk to two rounds of 8
queries, runs once per module; the resume tests work on copies of its folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from benchmarks.cli import main
from tests.tiny_run import TINY as TINY_SETTINGS

TASK = "ehrlich-l32-c2-k4"
TINY = ["protein", *TINY_SETTINGS, "--no-report"]
QUERY_COLUMNS = ["call", "round", "key", "reward", "feasible"]
METRIC_KEYS = ["budget", "queries_used", "auc_top10", "best", "top10", "final_value", "final_feasible", "wall_s"]


def run(out: Path, *extra: str) -> int:
    return main(["run", "--out", str(out), *TINY, *extra])


def cell(out: Path, method: str = "greedy", seed: int = 0) -> Path:
    return out / "protein" / TASK / method / f"seed{seed}"


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A results folder holding one finished tiny cell."""
    out = tmp_path_factory.mktemp("results")
    assert run(out) == 0
    return out


@pytest.fixture
def copy_of_finished(finished, tmp_path) -> Path:
    out = tmp_path / "results"
    shutil.copytree(finished, out)
    return out


def test_cell_folder_holds_the_three_result_files(finished):
    assert sorted(p.name for p in cell(finished).iterdir()) == ["evals.csv", "metrics.json", "queries.csv"]
    assert (finished / "protein" / "manifest.json").exists()


def test_queries_csv_logs_every_charged_query_in_call_order(finished):
    log = pd.read_csv(cell(finished) / "queries.csv", keep_default_na=False, dtype=str)
    assert set(QUERY_COLUMNS) <= set(log.columns)
    charged = log[log["charged"] == "True"]
    assert [int(c) for c in charged["call"]] == list(range(1, len(charged) + 1))  # 1-based, among charged only
    assert (log.loc[log["charged"] == "False", "call"] == "").all()
    assert len(log) == 16 and sorted(set(log["round"])) == ["1", "2"]
    assert (log.groupby("round").size() == 8).all()
    metrics = json.loads((cell(finished) / "metrics.json").read_text())
    assert metrics["queries_used"] == len(charged) <= metrics["budget"] == 16


def test_queries_csv_reward_is_empty_exactly_when_infeasible(finished):
    log = pd.read_csv(cell(finished) / "queries.csv", keep_default_na=False, dtype=str)
    assert set(log["feasible"]) <= {"True", "False"}
    infeasible = log["feasible"] == "False"
    assert (log.loc[infeasible, "reward"] == "").all()
    feasible_rewards = log.loc[~infeasible, "reward"].astype(float)
    assert feasible_rewards.between(0.0, 1.0).all()  # Ehrlich rewards lie in [0, 1]
    assert log["key"].str.fullmatch(r"[A-Z]{32}").all()  # a design of length L=32 is its own key


def test_metrics_json_summarises_the_query_log_and_last_round(finished):
    metrics = json.loads((cell(finished) / "metrics.json").read_text())
    for key in METRIC_KEYS:
        assert key in metrics, key
        assert isinstance(metrics[key], (int, float)), (key, metrics[key])
    log = pd.read_csv(cell(finished) / "queries.csv")
    charged = log[log["charged"]]
    scores = charged["reward"].where(charged["feasible"], metrics["floor"])
    assert metrics["best"] == pytest.approx(scores.max())
    assert metrics["top10"] == pytest.approx(scores.nlargest(10).mean())
    assert metrics["floor"] <= metrics["auc_top10"] <= metrics["best"]
    evals = pd.read_csv(cell(finished) / "evals.csv")
    assert evals["round"].tolist() == [0, 1, 2] and evals["queries_used"].tolist() == [0, 8, 16]
    assert metrics["final_value"] == pytest.approx(evals["value"].iloc[-1])
    assert metrics["final_feasible"] == pytest.approx(evals["feasible_fraction"].iloc[-1])
    assert metrics["wall_s"] > 0
    assert (metrics["task"], metrics["method"], metrics["seed"]) == (TASK, "greedy", 0)
    assert metrics["settings"]["rounds"] == [8, 8] and metrics["settings"]["config"]["finetune_steps"] == 1


def test_finished_cell_is_skipped(copy_of_finished, capsys, monkeypatch):
    import benchmarks.runner

    manifest = copy_of_finished / "protein" / "manifest.json"
    files = [*cell(copy_of_finished).iterdir(), manifest]
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in files}

    def must_not_run(*args, **kwargs):
        raise AssertionError("a finished cell was run again")

    monkeypatch.setattr(benchmarks.runner, "run_cell", must_not_run)
    assert run(copy_of_finished) == 0
    # the cell's files and the manifest of the run that made them are untouched
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in files} == before
    assert "protein: 1 cell finished" in capsys.readouterr().out


def test_a_manifest_a_kill_left_unwritten_is_written_by_the_next_run_without_running_cells(copy_of_finished):
    manifest = copy_of_finished / "protein" / "manifest.json"
    metrics = cell(copy_of_finished) / "metrics.json"
    before = metrics.stat().st_mtime_ns
    manifest.unlink()
    assert run(copy_of_finished) == 0
    written = json.loads(manifest.read_text())
    assert written["cells_done_before"] == 1 and written["cells_run"] == [] and written["executor"] == "pool"
    assert metrics.stat().st_mtime_ns == before  # the finished cell was not run again


def test_the_progress_of_running_cells_is_read_from_their_evals(finished):
    from benchmarks.estimate import Cell
    from benchmarks.runner import _running_status
    from benchmarks.spec import load_spec

    spec = load_spec("protein", ["rounds=[8,8]", "seeds=[0, 1]", "methods=[greedy]"])
    status, partial = _running_status(finished, [Cell(spec, TASK, "greedy", 0, 30.0), Cell(spec, TASK, "greedy", 1, 30.0)])
    assert status == "greedy s0 16/16; greedy s1 0/16"  # seed 1 has written nothing yet
    assert partial == 30.0  # seed 0's spent budget stands for its whole expected time, seed 1's for none


def test_a_running_cell_counts_its_finished_rounds_by_the_reference_cells_round_times(copy_of_finished):
    from benchmarks.estimate import Cell
    from benchmarks.runner import _running_status
    from benchmarks.spec import load_spec

    spec = load_spec("protein", ["rounds=[8,8]", "seeds=[0]", "methods=[greedy]"])
    running = Cell(spec, TASK, "greedy", 0, 30.0, 1, (0.1, 0.6, 1.0))  # round 1 costs most, as fine-tuning does
    evals = cell(copy_of_finished) / "evals.csv"
    evals.write_text("".join(evals.read_text().splitlines(keepends=True)[:3]))  # round 0 and round 1 written
    status, partial = _running_status(copy_of_finished, [running])
    assert status == "greedy s0 8/16" and partial == pytest.approx(18.0)  # 0.6 of the cell, not the 0.5 of its queries
    assert _running_status(copy_of_finished, [running._replace(reference_shares=None)])[1] == pytest.approx(15.0)


def test_the_rounds_a_killed_cell_finished_before_this_run_are_not_this_run_s_work(copy_of_finished):
    from benchmarks.estimate import Cell
    from benchmarks.runner import _Progress
    from benchmarks.spec import load_spec

    spec = load_spec("protein", ["rounds=[8,8]", "seeds=[0]", "methods=[greedy]"])
    resumed = Cell(spec, TASK, "greedy", 0, 30.0, 1, (0.1, 0.6, 1.0))
    evals = cell(copy_of_finished) / "evals.csv"
    evals.write_text("".join(evals.read_text().splitlines(keepends=True)[:3]))  # killed after round 1
    progress = _Progress([resumed], 0, copy_of_finished)
    try:
        assert progress.bar.total == 12  # 0.4 of its 30 s are left to this run
        progress.show(18.0, "", [resumed])  # the resumed cell, not yet past round 1
        assert progress.bar.n == 0 and progress.speed().startswith("measuring")
        progress.show(30.0, "", [resumed])  # round 2 done
        assert progress.bar.n == 12
    finally:
        progress.close()


def test_the_reference_round_shares_come_from_the_committed_cells_of_the_same_rounds():
    from benchmarks.estimate import reference_shares
    from benchmarks.spec import load_spec

    protein = load_spec("protein")
    shares = reference_shares(protein, "ehrlich-l32-c2-k4", "seiko-ucb")
    assert len(shares) == len(protein.rounds) + 1 and shares[-1] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(shares, shares[1:]))
    # A fine-tuning round costs about the same whatever its queries: round 1 (128 queries) is no
    # fifteenth of the work, as counting queries would say.
    assert shares[1] - shares[0] > 0.15
    assert reference_shares(load_spec("protein", ["rounds=[8,8]"]), "ehrlich-l32-c2-k4", "seiko-ucb") is None


def test_a_run_records_the_spec_it_runs_before_its_cells_finish(tmp_path, monkeypatch):
    # A folder half remade after its spec's settings changed is read against the spec being run.
    import benchmarks.runner as runner

    def killed(*args, **kwargs):
        raise RuntimeError("killed before any cell finished")

    monkeypatch.setattr(runner, "_run_cells", killed)
    with pytest.raises(RuntimeError, match="killed"):
        run(tmp_path)
    manifest = json.loads((tmp_path / "protein" / "manifest.json").read_text())
    assert manifest["complete"] is False and manifest["cells_run"] == [[TASK, "greedy", 0]]
    assert manifest["spec"]["rounds"] == [8, 8]


def test_killed_cell_is_rerun_from_scratch(finished, copy_of_finished):
    folder = cell(copy_of_finished)
    # What a kill leaves: part of the logs and no metrics.json.
    (folder / "queries.csv").write_text("".join((folder / "queries.csv").read_text().splitlines(keepends=True)[:5]))
    (folder / "evals.csv").write_text("".join((folder / "evals.csv").read_text().splitlines(keepends=True)[:2]))
    (folder / "metrics.json").unlink()
    assert run(copy_of_finished) == 0
    assert len(pd.read_csv(folder / "queries.csv")) == 16
    assert pd.read_csv(folder / "evals.csv")["round"].tolist() == [0, 1, 2]
    assert json.loads((folder / "metrics.json").read_text())["queries_used"] > 4
    # Same seed, same settings: the restarted cell asks exactly what the uninterrupted one asked.
    same = ["call", "round", "key", "reward", "feasible", "charged", "cached"]
    restarted, uninterrupted = (pd.read_csv(c / "queries.csv")[same] for c in (folder, cell(finished)))
    pd.testing.assert_frame_equal(restarted, uninterrupted)
    manifest = json.loads((copy_of_finished / "protein" / "manifest.json").read_text())
    assert manifest["cells_done_before"] == 0 and manifest["cells_run"] == [[TASK, "greedy", 0]]


def test_cell_finished_with_other_settings_is_refused_without_rerun(copy_of_finished, capsys):
    folder = cell(copy_of_finished)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert run(copy_of_finished, "--set", "eval_samples=4") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("seiko-bench: error: ")
    assert f"{folder} was finished with other settings; pass --rerun" in err
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_rerun_replaces_a_cell_finished_with_other_settings(copy_of_finished):
    folder = cell(copy_of_finished)
    old = json.loads((folder / "metrics.json").read_text())
    assert run(copy_of_finished, "--set", "eval_samples=4", "--rerun") == 0
    new = json.loads((folder / "metrics.json").read_text())
    assert new["settings"]["eval_samples"] == 4 and new["fingerprint"] != old["fingerprint"]
    assert len(pd.read_csv(folder / "queries.csv")) == 16


def test_parallel_workers_run_every_cell(tmp_path):
    out = tmp_path / "results"
    extra = ["--set", "methods=[greedy,non-adaptive]", "--workers", "2",
             "--set", "config.non-adaptive.finetune_steps=1", "--set", "config.non-adaptive.batch_size=4",
             "--set", "config.non-adaptive.reward_model.steps=5"]  # fmt: skip
    assert run(out, *extra) == 0
    for method in ("greedy", "non-adaptive"):
        metrics = json.loads((cell(out, method) / "metrics.json").read_text())
        assert metrics["method"] == method and 0 < metrics["queries_used"] <= metrics["budget"] == 16
    manifest = json.loads((out / "protein" / "manifest.json").read_text())
    assert len(manifest["cells_run"]) == 2


def test_evaluation_calls_are_counted_beside_the_charged_ones(finished):
    metrics = json.loads((cell(finished) / "metrics.json").read_text())
    assert metrics["eval_oracle_calls"] == 8 * 3  # 8 held-out samples after rounds 0, 1 and 2
    assert metrics["total_oracle_calls"] == metrics["oracle_calls"] + 24
    assert pd.read_csv(cell(finished) / "evals.csv")["eval_oracle_calls"].tolist() == [8, 8, 8]


@pytest.mark.parametrize("setting", ["evaluation=off", "eval_samples=0"])
def test_evaluation_off_calls_no_oracle_outside_the_budget(tmp_path, setting):
    assert run(tmp_path, "--set", setting) == 0
    metrics = json.loads((cell(tmp_path) / "metrics.json").read_text())
    assert metrics["eval_oracle_calls"] == 0 and metrics["total_oracle_calls"] == metrics["oracle_calls"] == 16
    assert metrics["final_value"] is None
    assert pd.read_csv(cell(tmp_path) / "evals.csv")["value"].isna().all()


class Half:
    """A separate evaluation oracle (a cheap proxy): half the Ehrlich reward."""

    def __init__(self):
        from domains.tasks import get_task

        self.inner = get_task(TASK).oracle
        self.name, self.floor, self.optimum = "half", self.inner.floor, None

    def __call__(self, designs):
        out = self.inner(designs)
        return type(out)(out.reward / 2, out.feasible)

    def key(self, design):
        return design


def make_evaluator():
    return Half()


def test_a_separate_evaluation_oracle_scores_the_held_out_samples(tmp_path, finished):
    assert run(tmp_path, "--set", f"evaluation={__file__}:make_evaluator") == 0
    assert json.loads((cell(tmp_path) / "metrics.json").read_text())["eval_oracle_calls"] == 24
    ours = pd.read_csv(cell(tmp_path) / "evals.csv")["value"]
    own = pd.read_csv(cell(finished) / "evals.csv")["value"]
    assert ours.iloc[0] == pytest.approx(own.iloc[0] / 2)  # the same pretrained samples, scored by the proxy


def test_stale_cell_of_older_code_is_rerun(copy_of_finished):
    metrics_path = cell(copy_of_finished) / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    metrics["code"]["hash"] = "0" * 16  # as if another version of the code had written it
    metrics_path.write_text(json.dumps(metrics))
    assert run(copy_of_finished) == 0
    assert json.loads(metrics_path.read_text())["code"]["hash"] != "0" * 16


def test_code_version_covers_the_tasks_own_domain_and_not_the_others(tmp_path):
    from benchmarks.code_version import code_version
    from domains.tasks import TaskRef

    files = TaskRef(TASK).code_files()
    assert files and all("domains/sequences" in str(p) or "domains/diffusion" in str(p) for p in files)
    assert any(p.suffix == ".safetensors" for p in files)  # the shipped checkpoint is part of the code
    module = tmp_path / "mine.py"
    module.write_text("A = 1\n")
    before = code_version([module])
    assert code_version([module]) == before
    module.write_text("A = 2\n")
    assert code_version([module])["hash"] != before["hash"]


def test_a_tasks_code_covers_the_modules_it_imports_from_other_domains_not_their_checkpoints():
    from domains.tasks import TaskRef

    files = {str(p).split("domains/")[-1] for p in TaskRef("gcn4-occupancy").code_files()}
    assert {"dna/tasks.py", "sequences/mdlm.py", "sequences/user_task.py"} <= files  # its model is the sequence domain's
    assert not any(f.startswith("sequences/checkpoints") for f in files)  # the protein weights are not its code
    assert not any(f.startswith(("molecules/", "images/")) for f in files)


def test_code_version_covers_the_methods_own_code_and_what_it_runs_not_other_methods():
    from benchmarks.code_version import code_version, method_files

    names = {method: {p.name for p in method_files(method)} for method in ("ddpo-is", "large-scale-rl", "greedy")}
    shared = {"loop.py", "budgeted_oracle.py", "method.py", "config.py", "registry.py"}
    assert shared <= names["ddpo-is"] and "seiko.py" not in names["ddpo-is"] and "reward_models.py" not in names["ddpo-is"]
    assert {"ddpo.py", "large_scale_rl.py"} <= names["large-scale-rl"]  # it runs DDPO's update
    assert {"seiko.py", "reward_models.py", "optimism.py"} <= names["greedy"] and "ddpo.py" not in names["greedy"]
    assert code_version([], "ddpo-is")["hash"] != code_version([], "greedy")["hash"]
    assert code_version([], "ddpo-is") == code_version([], "ddpo-sf")  # variants of one module share its code


def test_the_run_header_counts_cells_and_forecasts_from_the_reference_run(copy_of_finished, capsys):
    from benchmarks.estimate import plan
    from benchmarks.spec import load_spec

    spec = load_spec("protein", ["seeds=[0, 1]", "methods=[greedy]", "rounds=[8,8]", "eval_samples=8", "auc_freq=4",
                                 "config.greedy.finetune_steps=1", "config.greedy.batch_size=4",
                                 "config.greedy.reward_model.steps=5"])
    line = plan([spec], copy_of_finished, workers=2, rerun=False)
    assert line.startswith("2 cells in 1 spec: 1 finished, 1 to run on 2 workers; expected about ")
    assert plan([spec], copy_of_finished, workers=2, rerun=True).startswith("2 cells in 1 spec: 0 finished, 2 to run")


def test_a_dry_run_scales_the_forecast_by_this_machines_yardstick_against_the_reference_machines(tmp_path):
    import json
    import re

    from benchmarks.estimate import REFERENCE_MACHINE, machine_factor, plan
    from benchmarks.spec import load_spec

    stored = tmp_path / "machine.json"
    stored.write_text(json.dumps({"yardstick_s": 0.5}))
    assert machine_factor(1.0, stored) == 2.0 and machine_factor(1.0, tmp_path / "none.json") is None
    assert machine_factor(1.0) is not None, f"{REFERENCE_MACHINE.name} is shipped beside the estimate"
    spec = load_spec("protein")

    def minutes(line: str) -> int:
        return int(re.search(r"expected about (\d+) min", line).group(1))

    reference, here = plan([spec], tmp_path, 2, False), plan([spec], tmp_path, 2, False, factor=2.0)
    assert "on this machine" in here and "on this machine" not in reference
    assert abs(minutes(here) - 2 * minutes(reference)) <= 1


def test_a_cell_without_a_reference_of_its_own_is_forecast_from_its_method_on_the_task():
    import json

    from benchmarks.estimate import REFERENCE, reference_seconds
    from benchmarks.spec import load_spec

    def mean_wall(pattern: str) -> float:
        times = [json.loads(p.read_text())["wall_s"] for p in REFERENCE.glob(f"{pattern}/seed*/metrics.json")]
        return sum(times) / len(times)

    tuning = load_spec("protein-tuning")  # not committed: its cells borrow the committed specs' times
    assert reference_seconds(tuning, "ehrlich-l32-c2-k4", "greedy") == mean_wall("*/ehrlich-l32-c2-k4/greedy")
    assert reference_seconds(tuning, "ehrlich-l32-c2-k4", "ucb-c1") == mean_wall("*/ehrlich-l32-c2-k4/seiko-ucb")
    protein = load_spec("protein")
    assert reference_seconds(protein, "ehrlich-l32-c2-k4", "greedy") == mean_wall("protein/ehrlich-l32-c2-k4/greedy")
