"""`--executor ray` runs the same cells as the process pool and writes the same
results: a 4-cell spec on a local Ray with 2 CPUs against the pool with 2
workers, compared file by file with only the timing columns left out."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from benchmarks.cli import main

pytest.importorskip("ray", reason="the Ray executor needs ray (pip install -e '.[ray]')")

FOUR_CELLS = [
    "--set", "rounds=[16,16]", "--set", "seeds=[0,1]", "--set", "methods=[greedy,ddpo-is]",
    "--set", "eval_samples=8", "--set", "auc_freq=4",
    "--set", "config.greedy.finetune_steps=2", "--set", "config.greedy.batch_size=4",
    "--set", "config.greedy.reward_model.steps=5", "--set", "config.ddpo-is.batch_size=4",
    "--workers", "2", "--no-report",
]  # fmt: skip
TIMINGS = {"wall_s", "peak_rss_mb", "environment"}  # what a machine's load changes, not the code


def run(out: Path, *extra: str) -> int:
    return main(["run", "protein", "--out", str(out), *FOUR_CELLS, *extra])


def results(out: Path) -> dict[str, object]:
    """Every cell file of `out`, timings left out, keyed by its path under `out`."""
    found: dict[str, object] = {}
    for path in sorted(out.glob("protein/*/*/seed*/*")):
        name = str(path.relative_to(out))
        if path.suffix == ".csv":
            frame = pd.read_csv(path)
            found[name] = frame.drop(columns=[c for c in frame.columns if c in TIMINGS]).to_csv(index=False)
        elif path.suffix == ".json":
            found[name] = {k: v for k, v in json.loads(path.read_text()).items() if k not in TIMINGS}
    return found


def test_ray_writes_the_pools_results_cell_for_cell(tmp_path):
    assert run(tmp_path / "pool") == 0
    assert run(tmp_path / "ray", "--executor", "ray") == 0
    pool, ray = results(tmp_path / "pool"), results(tmp_path / "ray")
    assert len(pool) == 4 * 3 and pool.keys() == ray.keys()  # 4 cells, 3 files each
    different = [name for name in pool if pool[name] != ray[name]]
    assert not different, different
    manifest = json.loads((tmp_path / "ray" / "protein" / "manifest.json").read_text())
    assert manifest["executor"] == "ray" and len(manifest["cells_run"]) == 4


def test_a_cell_that_asks_for_more_than_the_cluster_has_is_refused_in_one_line(tmp_path, capsys):
    assert run(tmp_path, "--executor", "ray", "--set", "resources={cpus: 1, gpus: 1}") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == ("seiko-bench: error: a cell of spec 'protein' asks for 1 CPUs and 1 GPUs; "
                       "the Ray cluster has 2 and 0")


def test_an_address_without_ray_is_refused(tmp_path, capsys):
    assert run(tmp_path, "--address", "auto") == 2
    assert "--address names a Ray cluster; it goes with --executor ray" in capsys.readouterr().err


def test_a_data_parallel_cell_reserves_its_resources_once_per_process(tmp_path, capsys):
    assert run(tmp_path, "--executor", "ray", "--processes", "2", "--set", "resources={cpus: 2, gpus: 0}") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == ("seiko-bench: error: a cell of spec 'protein' asks for 4 CPUs and 0 GPUs on its 2 processes; "
                       "the Ray cluster has 2 and 0")
