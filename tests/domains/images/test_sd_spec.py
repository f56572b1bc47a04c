"""The Stable Diffusion task is reachable from a spec: checkpoint and reward are task parameters."""

from __future__ import annotations

import json

import pandas as pd

from benchmarks.cli import main
from benchmarks.spec import load_spec


def overrides(tiny_sd) -> list[str]:
    config = {"pretrained": tiny_sd.pipeline, "prompts": list(tiny_sd.prompts), "num_steps": 4,
              "resolution": tiny_sd.resolution, "micro_batch": 4, "device": "cpu"}
    return [f"tasks.0.params.config={json.dumps(config)}", "tasks.0.params.reward=jpeg-compressibility",
            f"tasks.0.params.clip={tiny_sd.clip}", "tasks.0.params.aesthetic_weights=null",
            "methods=[best-of-n, seiko-ucb]", "seeds=[0]", "rounds=[4]", "eval_samples=2",
            "config.seiko-ucb={finetune_steps: 1, batch_size: 2, last_k: 1, reward_model: {steps: 5, hidden: 16, min_feasible: 2}}"]


def test_the_shipped_sd_spec_names_the_task_by_import_path_with_parameters(tiny_sd):
    spec = load_spec("sd-aesthetic", overrides(tiny_sd))
    assert spec.task_names() == ["sd-aesthetic"]
    task = spec.task("sd-aesthetic").build()
    assert task.oracle.name.startswith("sd-jpeg") and task.info["resolution"] == tiny_sd.resolution


def test_a_tiny_sd_cell_runs_through_the_runner(tiny_sd, tmp_path):
    sets = [x for o in overrides(tiny_sd) for x in ("--set", o)]
    assert main(["run", "sd-aesthetic", "--out", str(tmp_path), *sets, "--workers", "1", "--no-report"]) == 0
    for method in ("best-of-n", "seiko-ucb"):
        cell = tmp_path / "sd-aesthetic" / "sd-aesthetic" / method / "seed0"
        assert pd.read_csv(cell / "queries.csv")["charged"].sum() == 4
        assert json.loads((cell / "metrics.json").read_text())["settings"]["task_params"]["reward"] == "jpeg-compressibility"
    info = json.loads((tmp_path / "sd-aesthetic" / "manifest.json").read_text())["task_info"]["sd-aesthetic"]
    assert info["dtype"] == "float32" and info["fallbacks"] == []  # what ran, as asked


def test_an_unknown_sd_setting_is_one_line(tiny_sd, tmp_path, capsys):
    sets = ["--set", "tasks.0.params.config={pretrainde: x}"]
    assert main(["run", "sd-aesthetic", "--out", str(tmp_path), *sets]) == 2
    assert "unknown settings ['pretrainde']" in capsys.readouterr().err
