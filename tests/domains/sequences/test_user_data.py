"""Pretraining the masked sequence model on a user's own file of sequences, and
building a task on the checkpoint it writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from domains.base import OracleOutput, Task
from domains.sequences import tasks
from domains.sequences.data import check_alphabet, encode_sequences, read_sequences
from domains.sequences.mdlm import MaskedDiffusionModel, MDLMConfig
from domains.sequences.pretraining import fit_denoiser, new_model, pretrain_on_data, sample_designs
from domains.sequences.user_task import read_config, sequence_task

SEQUENCES = ["ACGTAC", "GGTACA", "TTACGA"]


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(exc: type[Exception], path: Path, alphabet: str = "ACGT") -> str:
    with pytest.raises(exc) as info:
        read_sequences(path, alphabet)
    message = str(info.value)
    assert "\n" not in message
    return message


# ----- reading -----------------------------------------------------------------------
def test_fasta_with_multi_line_records_and_a_plain_file_read_the_same_sequences(tmp_path):
    fasta = write(tmp_path, "reads.fa", ">one first\nACG\nTAC\n\n>two\nGGTACA\n# a comment\n>three\nTT\nAC\nGA\n")
    plain = write(tmp_path, "reads.txt", "# my designs\nACGTAC\n\nGGTACA\r\n  TTACGA  \n")
    assert read_sequences(fasta, "ACGT") == SEQUENCES
    assert read_sequences(plain, "ACGT") == SEQUENCES


def test_lower_case_is_read_as_the_letters_of_an_upper_case_alphabet(tmp_path):
    path = write(tmp_path, "reads.txt", "acgtac\nGGtaCA\nttacga\n")
    assert read_sequences(path, "ACGT") == SEQUENCES
    assert read_sequences(write(tmp_path, "lower.txt", "ACgt\n"), "acgt") == ["acgt"]


def test_an_alphabet_with_both_cases_is_case_sensitive(tmp_path):
    path = write(tmp_path, "reads.txt", "ACgt\nacGT\n")
    assert read_sequences(path, "ACGTacgt") == ["ACgt", "acGT"]
    assert "letter 'g' is not in the alphabet 'ACGTa'" in error_of(ValueError, path, "ACGTa")


def test_encode_sequences_gives_the_alphabet_index_of_each_letter():
    tokens = encode_sequences(["ACGT", "TTAA"], "ACGT")
    assert tokens.dtype == torch.long
    assert tokens.tolist() == [[0, 1, 2, 3], [3, 3, 0, 0]]


@pytest.mark.parametrize("name, text, expected", [
    ("reads.fa", ">a\nACGT\n>b\nAC\nXT\n", "reads.fa:5: letter 'X' is not in the alphabet 'ACGT'"),
    ("reads.txt", "ACGT\nAC T\n", "reads.txt:2: letter ' ' is not in the alphabet 'ACGT'"),
    ("reads.txt", "# header\nACGT\n\nACGTA\n", "reads.txt:4: the sequence at line 4 has length 5, but the first "
                                               "sequence (line 2) has length 4; the masked model needs one length"),
    ("reads.fa", ">a\nAC\nGT\n>b\nACG\n", "reads.fa:4: the record starting at line 4 has length 3, but the first "
                                          "sequence (line 1) has length 4"),
    ("reads.fa", ">a\n>b\nACGT\n", "reads.fa:1: FASTA record '>a' has no sequence"),
    ("reads.txt", "ACGT\n>b\nACGT\n", "reads.txt:2: a FASTA header in a plain file"),
    ("reads.txt", "", "reads.txt: no sequences"),
    ("reads.txt", "\n# only a comment\n\n", "reads.txt: no sequences"),
])
def test_each_bad_file_is_a_one_line_error_naming_the_file_and_line(tmp_path, name, text, expected):
    message = error_of(ValueError, write(tmp_path, name, text))
    assert message.startswith(str(tmp_path / expected.split(":")[0]))
    assert expected.split(":", 1)[1] in message


def test_mixed_lengths_say_how_to_fix_them(tmp_path):
    message = error_of(ValueError, write(tmp_path, "reads.txt", "ACGT\nACG\n"))
    assert "trim or pad" in message


def test_a_missing_file_is_a_one_line_file_not_found_error(tmp_path):
    message = error_of(FileNotFoundError, tmp_path / "nope.fa")
    assert str(tmp_path / "nope.fa") in message


@pytest.mark.parametrize("alphabet, expected", [
    ("ACGA", "repeats the letter 'A'"), ("A", "at least 2"), ("", "at least 2"), ("AC GT", "whitespace"),
])
def test_a_bad_alphabet_is_a_one_line_error(tmp_path, alphabet, expected):
    path = write(tmp_path, "reads.txt", "ACGT\n")
    message = error_of(ValueError, path, alphabet)
    assert expected in message
    with pytest.raises(ValueError, match=expected):
        check_alphabet(alphabet)


# ----- pretraining ---------------------------------------------------------------------
def no_equal_neighbours(design: str) -> bool:
    return all(a != b for a, b in zip(design, design[1:]))


def rule_sequences(n: int, length: int, seed: int) -> list[str]:
    """Uniform strings over ACGT with no two equal neighbours."""
    g = torch.Generator().manual_seed(seed)
    first = torch.randint(4, (n,), generator=g)
    steps = torch.randint(1, 4, (n, length - 1), generator=g)  # each letter differs from the one before
    tokens = torch.cat([first[:, None], first[:, None] + steps.cumsum(1)], 1) % 4
    return ["".join("ACGT"[i] for i in row) for row in tokens.tolist()]


# Uniform random strings of length 12 obey the rule with probability (3/4)^11 = 0.04;
# this tiny model obeys it in 70-80% of samples after 300 steps (seeds 0-2).
TINY = dict(steps=300, batch_size=64, lr=1e-2, num_steps=24, d_model=32, n_layers=1, n_heads=2)
RULE_THRESHOLD = 0.4


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """(data file, checkpoint, report) of a tiny model fitted to 200 rule-obeying sequences."""
    folder = tmp_path_factory.mktemp("user-data")
    data = folder / "designs.fa"
    data.write_text("".join(f">design{i}\n{s[:7]}\n{s[7:]}\n" for i, s in enumerate(rule_sequences(200, 12, 0))))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: threads only add overhead on a busy machine
    try:
        report = pretrain_on_data(data, "ACGT", folder / "model.safetensors", seed=0, report_samples=300, **TINY)
    finally:
        torch.set_num_threads(threads)
    return data, folder / "model.safetensors", report


def test_pretraining_on_a_file_learns_the_rule_of_its_sequences(pretrained):
    _, checkpoint, _ = pretrained
    model = MaskedDiffusionModel.load(checkpoint)
    designs = sample_designs(model, 300, torch.Generator().manual_seed(1))
    untrained = sample_designs(new_model(model.cfg, 0).eval(), 300, torch.Generator().manual_seed(1))
    assert np.mean([no_equal_neighbours(d) for d in designs]) > RULE_THRESHOLD
    assert np.mean([no_equal_neighbours(d) for d in untrained]) < RULE_THRESHOLD / 2


def test_the_pretraining_report_says_what_the_data_and_samples_are(pretrained):
    _, checkpoint, report = pretrained
    assert report["sequences"] == report["distinct_sequences"] == 200
    assert (report["length"], report["alphabet"], report["samples"]) == (12, "ACGT", 300)
    assert 0 <= report["memorised_rate"] <= 1 and 0 < report["distinct_sample_rate"] <= 1
    assert np.isfinite(report["final_nelbo"])
    # the bigram statistics are what the rule is about: the model is closer to the
    # data than uniform strings are, and no closer than the data's own resample
    reference = report["reference_tv"]
    assert reference["data_resample"]["bigram_tv"] < report["bigram_tv"] < 0.75 * reference["uniform"]["bigram_tv"]
    saved = json.loads(checkpoint.with_suffix(".json").read_text())
    assert saved["metadata"]["pretrain"] == json.loads(json.dumps(report))
    assert saved["config"]["alphabet"] == "ACGT" and saved["config"]["length"] == 12


class NoRepeats:
    """A toy oracle: the fraction of A's, feasible without two equal neighbours."""

    name, floor, optimum = "no-repeats", 0.0, 0.5

    def __call__(self, designs):
        feasible = np.array([no_equal_neighbours(d) for d in designs])
        reward = np.array([d.count("A") / len(d) for d in designs], dtype=float)
        return OracleOutput(np.where(feasible, reward, np.nan), feasible)

    def key(self, design):
        return design


def test_sequence_task_loads_the_checkpoint_with_its_alphabet_and_length(pretrained):
    data, checkpoint, _ = pretrained
    task = sequence_task("my-task", NoRepeats(), checkpoint, data=data)
    assert isinstance(task, Task) and task.charge_infeasible
    model = task.load_model()
    assert (model.cfg.alphabet, model.cfg.length) == ("ACGT", 12)
    assert read_config(checkpoint) == model.cfg
    designs = model.sample(8, generator=torch.Generator().manual_seed(0)).designs
    assert task.oracle(designs).reward.shape == (8,)
    assert task.featuriser(designs).shape == (8, task.featuriser.dim) == (8, 12 * 4 + 4 * 4 * (1 + 11))  # gaps 1-11
    g = torch.Generator().manual_seed(0)
    children = task.operators.crossover(designs, task.operators.mutate(designs, 0.5, g), g)
    assert all(len(c) == 12 and set(c) <= set("ACGT") for c in children)
    x, condition = task.pretraining_data(16, g)
    assert condition is None and x.shape == (16, 12)
    assert set(model.decode(x)) <= set(read_sequences(data, "ACGT"))
    model.denoising_loss(x, generator=g)  # what large-scale RL regularises with


def test_sequence_task_without_data_has_no_pretraining_data(pretrained):
    _, checkpoint, _ = pretrained
    task = sequence_task("my-task", NoRepeats(), checkpoint, description="mine", charge_infeasible=False)
    assert task.pretraining_data is None and task.description == "mine" and not task.charge_infeasible


def test_sequence_task_on_a_missing_checkpoint_says_how_to_make_it(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        sequence_task("my-task", NoRepeats(), tmp_path / "mine.safetensors")
    message = str(info.value)
    assert "\n" not in message and str(tmp_path / "mine.safetensors") in message
    assert "seiko-bench pretrain --data" in message


def test_sequence_task_refuses_data_of_another_length(pretrained, tmp_path):
    _, checkpoint, _ = pretrained
    with pytest.raises(ValueError, match="length 4, but the model .* has length 12"):
        sequence_task("my-task", NoRepeats(), checkpoint, data=write(tmp_path, "short.txt", "ACGT\n"))


def test_sequence_task_refuses_an_object_that_is_not_an_oracle(pretrained):
    _, checkpoint, _ = pretrained
    with pytest.raises(ValueError, match="lacks name, floor, optimum, key, __call__"):
        sequence_task("my-task", object(), checkpoint)


def test_pretrain_on_data_checks_the_output_path_before_training(tmp_path):
    data = write(tmp_path, "reads.txt", "ACGT\n")
    with pytest.raises(ValueError, match="is a folder"):
        pretrain_on_data(data, "ACGT", tmp_path, steps=1)
    with pytest.raises(ValueError, match="overwrite the data file"):
        pretrain_on_data(data, "ACGT", tmp_path / "reads.txt", steps=1)


def test_twenty_steps_train_although_one_cycle_warm_up_would_end_at_step_zero():
    model = new_model(MDLMConfig("ACGT", 4, num_steps=4, d_model=8, n_layers=1, n_heads=2), 0)
    data = encode_sequences(["ACGT", "TGCA"], "ACGT")
    _, nelbo = fit_denoiser(model, lambda b, g: data[torch.randint(2, (b,), generator=g)],
                             steps=20, batch_size=4, lr=1e-3, seed=0)
    assert np.isfinite(nelbo)


# ----- the Ehrlich tasks' pretraining is unchanged ---------------------------------------
def old_ehrlich_pretrain(name: str, *, steps: int, batch_size: int, lr: float, seed: int) -> tuple[dict, float]:
    """The loop `domains.sequences.tasks.pretrain` ran before it called `fit_denoiser`."""
    oracle = tasks.Ehrlich(tasks.TASKS[name])
    torch.manual_seed(seed)
    model = MaskedDiffusionModel(MDLMConfig(alphabet=oracle.alphabet, length=oracle.config.dim, num_steps=16, **tasks.MODEL))
    data_gen, noise_gen = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    for _ in range(steps):
        loss = model.denoising_loss(oracle.sample_markov(batch_size, data_gen), generator=noise_gen)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
    return model.state_dict(), loss.item()


def test_the_ehrlich_pretrain_gives_the_same_weights_as_before(tmp_path):
    name, settings = "ehrlich-l32-c2-k4", dict(steps=3, batch_size=16, lr=1e-3, seed=5)
    report = tasks.pretrain(name, out=tmp_path / "model.safetensors", report_samples=4, **settings)
    expected, nelbo = old_ehrlich_pretrain(name, **settings)
    weights = MaskedDiffusionModel.load(tmp_path / "model.safetensors").state_dict()
    assert weights.keys() == expected.keys()
    assert all(torch.equal(weights[k], expected[k]) for k in expected)
    assert report["final_nelbo"] == nelbo
