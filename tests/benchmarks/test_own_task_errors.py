"""A user's task and data: bad input is one line on stderr with exit status 2, before anything is written."""

from __future__ import annotations

import pytest

from benchmarks.cli import main

SPEC = "methods: [best-of-n]\nseeds: [0]\nrounds: [4]\n"


def error_of(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("seiko-bench: error: ")
    return err


@pytest.mark.parametrize(
    "tasks_module, task, message",
    [
        ("import nonexistent_package\n", "tasks.py:make", "tasks.py does not import: ModuleNotFoundError"),
        ("def make():\n    return 42\n", "tasks.py:make", "returned a int, not a domains.base.Task"),
        ("def make(length):\n    return None\n", "tasks.py:make", "missing 1 required positional argument"),
        ("x = 1\n", "tasks.py:make", "has no function 'make'"),
        ("", "no_such_module_xyz:make", "module 'no_such_module_xyz' does not import"),
        ("", "missing.py:make", "no file"),
    ],
)
def test_a_task_factory_that_fails_is_one_line_and_no_cell_is_written(tmp_path, capsys, tasks_module, task, message):
    (tmp_path / "tasks.py").write_text(tasks_module)
    spec = tmp_path / "mine.yaml"
    spec.write_text(f"tasks: ['{task}']\n" + SPEC)
    out = tmp_path / "out"
    assert message in error_of(["run", str(spec), "--out", str(out)], capsys)
    assert not out.exists()


def test_a_task_name_that_would_leave_the_results_folder_is_refused(tmp_path, capsys):
    spec = tmp_path / "mine.yaml"
    spec.write_text("tasks: [{task: ehrlich-l32-c2-k4, name: ../../escape}]\n" + SPEC)
    assert "it names a folder" in error_of(["run", str(spec), "--out", str(tmp_path / "out")], capsys)


@pytest.mark.parametrize(
    "text, message",
    [
        ("ACGT\nACGX\n", "designs.txt:2: letter 'X' is not in the alphabet 'ACGT'"),
        (">a\nACGT\n>b\nACG\n", "designs.txt:3:"),
        ("", "no sequences"),
    ],
)
def test_a_bad_pretraining_file_is_one_line_naming_file_and_line(tmp_path, capsys, text, message):
    data = tmp_path / "designs.txt"
    data.write_text(text)
    out = tmp_path / "model.safetensors"
    err = error_of(["pretrain", "--data", str(data), "--alphabet", "ACGT", "--out", str(out)], capsys)
    assert message in err
    assert not out.exists()


def test_pretraining_on_data_needs_an_alphabet_and_an_output(tmp_path, capsys):
    assert "--alphabet LETTERS --out PATH" in error_of(["pretrain", "--data", str(tmp_path / "x.txt")], capsys)


def test_pretraining_a_task_on_data_is_for_the_molecule_model_and_a_missing_smiles_file_is_named(tmp_path, capsys):
    out = str(tmp_path / "model.safetensors")
    err = error_of(["pretrain", "ehrlich-l32-c2-k4", "--data", str(tmp_path / "x.txt"), "--out", out], capsys)
    assert "molecule model on your SMILES" in err
    assert f"no SMILES file at {tmp_path / 'x.smi'}" in error_of(
        ["pretrain", "qed", "--data", str(tmp_path / "x.smi"), "--out", out], capsys)


@pytest.mark.parametrize("workers", ["0", "-3"])
def test_workers_below_one_are_refused(tmp_path, capsys, workers):
    assert "--workers must be at least 1" in error_of(["run", "protein", "--out", str(tmp_path), "--workers", workers],
                                                      capsys)


def test_an_out_that_is_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert "is a file, not a folder" in error_of(["run", "protein", "--out", str(tmp_path / "file")], capsys)


@pytest.mark.parametrize("setting, message", [("seeds=[0.5]", "seeds must be integers"),
                                              ("seeds=[true]", "seeds must be integers"),
                                              ("seeds=[0,0]", "repeat a seed"),
                                              ("auc_freq=2.5", "auc_freq must be an integer"),
                                              ("eval_samples=abc", "eval_samples must be an integer"),
                                              ("config=5", "config must map method names"),
                                              ("name=../../escape", "it names a folder")])
def test_spec_values_of_the_wrong_type_are_one_line(tmp_path, capsys, setting, message):
    assert message in error_of(["run", "protein", "--out", str(tmp_path), "--set", setting], capsys)
