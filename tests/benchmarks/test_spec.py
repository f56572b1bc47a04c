"""Specs: YAML plus `--set` overrides, checked before any cell runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from algorithms.registry import resolve_config
from benchmarks.spec import SPECS, SUITES, SpecError, expand_suites, load_spec
from domains.base import UnknownName

TASK = "ehrlich-l32-c2-k4"
MINIMAL = f"tasks: [{TASK}]\nmethods: [greedy, seiko-ucb]\nseeds: [0, 1]\nrounds: [8, 16]\n"


def write(tmp_path: Path, text: str, name: str = "mini.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_fill_name_budget_and_evaluation(tmp_path):
    spec = load_spec(write(tmp_path, MINIMAL))
    assert spec.name == "mini"  # the file's stem names the results folder
    assert spec.budget == 24  # sum(rounds)
    assert (spec.eval_samples, spec.auc_freq) == (256, 100)
    assert spec.config == {} and spec.description == ""


def test_suite_names_expand_to_their_specs_once_each_in_order():
    assert expand_suites(["quick"]) == ["protein-quick", "dna-quick"]
    assert expand_suites(["protein", "reference", "mine.yaml"]) == ["protein", "protein-hard", "images", "dna",
                                                                     "mine.yaml"]
    for specs in SUITES.values():
        for name in specs:
            assert load_spec(name).name == name  # every suite names shipped specs


def test_the_quick_specs_are_cells_of_the_reference_specs_with_less_budget():
    """The quick suite keeps the reference settings of each method it runs, so its
    cells answer the same question with less feedback, not a different one."""
    for quick, full in (("protein-quick", "protein"), ("dna-quick", "dna")):
        small, big = load_spec(quick), load_spec(full)
        assert set(small.tasks) <= set(big.tasks) and set(small.methods) <= set(big.methods)
        assert small.rounds == big.rounds[: len(small.rounds)] and small.budget <= big.budget
        for method in small.methods:
            assert small.method(method).config == big.method(method).config, method


def test_the_hard_protein_spec_runs_the_protein_settings_on_a_task_of_the_same_model():
    """protein-hard changes the task (more motifs), not the recipe: its cells differ
    from protein's by the oracle alone, and both start from one pretrained model."""
    from domains.sequences.tasks import checkpoint_path

    hard, default = load_spec("protein-hard"), load_spec("protein")
    assert hard.rounds == default.rounds and hard.eval_samples == default.eval_samples
    assert set(hard.methods) <= set(default.methods)
    for method in hard.methods:
        assert hard.method(method).config == default.method(method).config, method
    assert checkpoint_path(hard.tasks[0]) == checkpoint_path(default.tasks[0])


def test_shipped_spec_loads_by_name():
    spec = load_spec("protein")
    assert spec.name == "protein"
    assert spec.tasks == [TASK]
    assert spec.budget == sum(spec.rounds) == 1920


def test_cells_are_every_task_method_seed(tmp_path):
    spec = load_spec(write(tmp_path, MINIMAL))
    assert spec.cells() == [(TASK, "greedy", 0), (TASK, "greedy", 1), (TASK, "seiko-ucb", 0), (TASK, "seiko-ucb", 1)]


def test_set_overrides_top_level_fields_as_yaml(tmp_path):
    spec = load_spec(write(tmp_path, MINIMAL), ["seeds=[3]", "rounds=[4, 4, 4]", "eval_samples=8", "name=smoke"])
    assert spec.seeds == [3]
    assert spec.rounds == [4, 4, 4] and spec.budget == 12
    assert spec.eval_samples == 8
    assert spec.name == "smoke"


def test_set_overrides_nested_config_keeping_the_other_defaults(tmp_path):
    path = write(tmp_path, MINIMAL + "config:\n  greedy:\n    finetune_steps: 7\n")
    spec = load_spec(path, ["config.greedy.kl_weight=0.5", "config.greedy.reward_model.steps=5"])
    assert spec.config == {"greedy": {"finetune_steps": 7, "kl_weight": 0.5, "reward_model": {"steps": 5}}}
    cfg = resolve_config("greedy", spec.config["greedy"])
    assert (cfg.finetune_steps, cfg.kl_weight, cfg.reward_model.steps) == (7, 0.5, 5)
    assert cfg.optimism == "none" and cfg.reward_model.ensemble_size == 1  # greedy's own defaults survive


def test_later_set_wins(tmp_path):
    spec = load_spec(write(tmp_path, MINIMAL), ["seeds=[1]", "seeds=[2]"])
    assert spec.seeds == [2]


@pytest.mark.parametrize("assignment", ["seeds", "=3", "seeds=[0"])
def test_malformed_set_is_rejected(tmp_path, assignment):
    with pytest.raises(SpecError, match="--set"):
        load_spec(write(tmp_path, MINIMAL), [assignment])


def test_set_through_a_non_mapping_is_rejected(tmp_path):
    with pytest.raises(SpecError, match="'x' is not an index of a list of 2"):
        load_spec(write(tmp_path, MINIMAL), ["seeds.x=1"])
    with pytest.raises(SpecError, match="description is not a mapping or a list"):
        load_spec(write(tmp_path, MINIMAL + "description: hi\n"), ["description.x=1"])


def test_set_reaches_into_a_list_entry_by_index(tmp_path):
    spec = load_spec(write(tmp_path, MINIMAL), ["rounds.1=4"])
    assert spec.rounds == [8, 4] and spec.budget == 12


def test_unknown_spec_field_suggests_the_closest(tmp_path):
    with pytest.raises(UnknownName, match=r"unknown spec field 'seed'; did you mean 'seeds'\?"):
        load_spec(write(tmp_path, MINIMAL + "seed: [0]\n"))


def test_unknown_field_from_set_is_rejected(tmp_path):
    with pytest.raises(UnknownName, match="'evals_samples'; did you mean 'eval_samples'"):
        load_spec(write(tmp_path, MINIMAL), ["evals_samples=8"])


@pytest.mark.parametrize("rounds", ["[0, 8]", "[8, -1]", "[8, 2.5]", "[8, '8']"])
def test_rounds_must_be_positive_integers(tmp_path, rounds):
    with pytest.raises(SpecError, match="rounds must be positive integers"):
        load_spec(write(tmp_path, MINIMAL), [f"rounds={rounds}"])


@pytest.mark.parametrize("rounds", ["[]", "8"])
def test_rounds_must_be_a_non_empty_list(tmp_path, rounds):
    with pytest.raises(SpecError, match="rounds must be a non-empty list"):
        load_spec(write(tmp_path, MINIMAL), [f"rounds={rounds}"])


def test_budget_must_equal_the_sum_of_rounds(tmp_path):
    with pytest.raises(SpecError, match=r"rounds \[8, 16\] sum to 24 but budget is 30"):
        load_spec(write(tmp_path, MINIMAL), ["budget=30"])


def test_budget_smaller_than_one_round_is_rejected(tmp_path):
    with pytest.raises(SpecError, match=r"budget 4 is smaller than one round \(8 queries\)"):
        load_spec(write(tmp_path, MINIMAL), ["budget=4"])


def test_budget_equal_to_the_sum_is_accepted(tmp_path):
    assert load_spec(write(tmp_path, MINIMAL), ["budget=24"]).budget == 24


@pytest.mark.parametrize("field", ["eval_samples", "auc_freq"])
def test_eval_samples_and_auc_freq_must_be_positive(tmp_path, field):
    with pytest.raises(SpecError, match=f"{field} must be an integer >= "):
        load_spec(write(tmp_path, MINIMAL), [f"{field}=-1"])


@pytest.mark.parametrize(
    "setting, named",
    [
        ("config.greedy.kl_wieght=0.1",
         r"greedy: unknown setting 'kl_wieght'; did you mean 'kl_weight'"),
        ("config.greedy.reward_model.stepz=5", r"greedy.reward_model: unknown setting 'stepz'; did you mean 'steps'"),
    ],
)
def test_unknown_setting_in_a_method_config_is_named(tmp_path, setting, named):
    with pytest.raises(SpecError, match=named):
        load_spec(write(tmp_path, MINIMAL), [setting])


def test_a_setting_for_a_method_that_takes_none_says_so(tmp_path):
    with pytest.raises(SpecError, match="best-of-n: unknown setting 'n'; it takes no settings"):
        load_spec(write(tmp_path, MINIMAL.replace("greedy, ", "best-of-n, ")), ["config.best-of-n.n=5"])


def test_config_of_an_unknown_method_suggests_the_closest(tmp_path):
    with pytest.raises(SpecError, match="spec 'mini' does not run method 'greddy'; did you mean 'greedy'"):
        load_spec(write(tmp_path, MINIMAL), ["config.greddy.kl_weight=0.1"])
    with pytest.raises(UnknownName, match="unknown method 'greddy'; did you mean 'greedy'"):
        load_spec(write(tmp_path, MINIMAL + "config: {greddy: {kl_weight: 0.1}}\n"))


def test_unknown_task_suggests_the_closest(tmp_path):
    with pytest.raises(UnknownName, match=f"unknown task 'ehrlich-l32-c2-k5'; did you mean '{TASK}'"):
        load_spec(write(tmp_path, MINIMAL), ["tasks=[ehrlich-l32-c2-k5]"])


def test_unknown_method_suggests_the_closest(tmp_path):
    with pytest.raises(UnknownName, match="unknown method 'seiko-ucbb'; did you mean 'seiko-ucb'"):
        load_spec(write(tmp_path, MINIMAL), ["methods=[greedy, seiko-ucbb]"])


def test_unknown_spec_name_suggests_the_closest_shipped_spec():
    with pytest.raises(UnknownName, match="unknown spec 'protien'; did you mean 'protein'"):
        load_spec("protien")


def test_missing_spec_file_is_named(tmp_path):
    with pytest.raises(SpecError, match="no spec file at .*nowhere.yaml"):
        load_spec(tmp_path / "nowhere.yaml")


def test_malformed_yaml_names_the_file_and_line(tmp_path):
    path = write(tmp_path, MINIMAL + "methods: [greedy\n", "broken.yaml")
    with pytest.raises(SpecError, match=r"malformed YAML in .*broken.yaml line \d+"):
        load_spec(path)


def test_yaml_that_is_not_a_mapping_is_rejected(tmp_path):
    with pytest.raises(SpecError, match="must be a YAML mapping of fields, got list"):
        load_spec(write(tmp_path, "- greedy\n- seiko-ucb\n"))


def test_missing_required_field_is_a_spec_error(tmp_path):
    with pytest.raises(SpecError, match="rounds"):
        load_spec(write(tmp_path, MINIMAL.replace("rounds: [8, 16]\n", "")))



VARIANTS = MINIMAL.replace("methods: [greedy, seiko-ucb]", "methods: [greedy, ucb-c1]") + (
    "variants:\n  ucb-c1: {method: seiko-ucb, config: {bonus: {bonus_scale: 1.0}}}\n"
)


def test_variant_runs_its_method_with_its_settings(tmp_path):
    spec = load_spec(write(tmp_path, VARIANTS), ["config.ucb-c1.kl_weight=0.5"])
    resolved = spec.method("ucb-c1")
    config = resolved.config
    assert resolved.method == "seiko-ucb"
    assert (config.optimism, config.bonus.bonus_scale, config.kl_weight) == ("ucb", 1.0, 0.5)
    assert spec.method("greedy").config == resolve_config("greedy")


def test_variant_that_shadows_a_method_is_rejected(tmp_path):
    text = VARIANTS.replace("ucb-c1: {method", "greedy: {method")
    with pytest.raises(SpecError, match="shadows a method"):
        load_spec(write(tmp_path, text))


def test_variant_of_an_unknown_method_suggests_the_closest(tmp_path):
    with pytest.raises(UnknownName, match="did you mean 'seiko-ucb'"):
        load_spec(write(tmp_path, VARIANTS.replace("method: seiko-ucb", "method: seiko-ubc")))


def test_shipped_tuning_spec_uses_seeds_apart_from_the_reported_ones():
    assert not set(load_spec("protein-tuning").seeds) & set(load_spec("protein").seeds)


@pytest.mark.parametrize("name", ["protein", "protein-quick", "protein-hard", "dna", "images"])
def test_set_changes_exactly_the_method_it_names_though_the_spec_shares_a_block_by_anchor(name):
    spec = load_spec(name)
    assert "greedy" in spec.methods and "*" in (SPECS / f"{name}.yaml").read_text()  # an alias shares a block
    changed = load_spec(name, ["config.greedy.kl_weight=0.123"])
    assert changed.method("greedy").config.kl_weight == 0.123
    for method in spec.methods:
        if method != "greedy":
            assert changed.method(method).config == spec.method(method).config, method


def test_a_bad_setting_names_the_method_the_user_named():
    with pytest.raises(SpecError, match=r"greedy\.kl_weight must be a number"):
        load_spec("protein", ["config.greedy.kl_weight=lots"])
    with pytest.raises(SpecError, match=r"greedy: unknown setting 'kl_wieght'; did you mean 'kl_weight'"):
        load_spec("protein", ["config.greedy.kl_wieght=0.1"])


def test_set_for_a_method_the_spec_does_not_run_names_both_and_the_closest():
    with pytest.raises(SpecError, match=r"spec 'protein-quick' does not run method 'greedyy'; did you mean 'greedy'"):
        load_spec("protein-quick", ["config.greedyy.kl_weight=0.1"])
    with pytest.raises(SpecError, match=r"does not run method 'rwr'; it runs seiko-ucb, greedy, ddpo-is, best-of-n"):
        load_spec("protein-quick", ["config.rwr.beta=2"])


def test_a_task_file_imports_the_modules_beside_it(tmp_path):
    helper = tmp_path / "tasks_dir"
    helper.mkdir()
    (helper / "my_oracle_helpers.py").write_text("NAME = 'beside'\n")
    (helper / "my_task.py").write_text(
        "from my_oracle_helpers import NAME\n"
        "from domains.tasks import get_task\n"
        "def make_task():\n"
        "    return get_task('ehrlich-l32-c2-k4')\n")
    spec = load_spec(write(tmp_path, MINIMAL.replace(f"tasks: [{TASK}]", "tasks: [tasks_dir/my_task.py:make_task]")))
    assert spec.task_names() == [TASK]


def test_evaluation_left_out_is_on_for_shipped_tasks_and_off_for_a_users_own(tmp_path):
    assert load_spec(write(tmp_path, MINIMAL)).evaluation == "task"
    (tmp_path / "mine.py").write_text("from domains.tasks import get_task\n"
                                      "def make_task():\n    return get_task('ehrlich-l32-c2-k4')\n")
    own = load_spec(write(tmp_path, MINIMAL.replace(f"tasks: [{TASK}]", "tasks: [mine.py:make_task]")))
    assert own.evaluation == "off" and own.eval_samples == 0
    asked = load_spec(write(tmp_path, MINIMAL.replace(f"tasks: [{TASK}]", "tasks: [mine.py:make_task]")
                            + "evaluation: task\n"))
    assert asked.evaluation == "task"
    for name in ("protein", "dna", "images"):
        assert load_spec(name).evaluation == "task"
