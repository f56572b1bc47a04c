"""The house rules of issue 34, kept: a reader finds any method in at most three
files of at most 300 lines, beside the framework every method shares."""

from __future__ import annotations

from functools import reduce
from pathlib import Path

from algorithms.registry import METHODS
from benchmarks.code_version import method_files

ALGORITHMS = Path(__file__).resolve().parents[2] / "algorithms"


def framework() -> set[Path]:
    """The modules every method runs (loop, budgeted oracle, method base, config, registry...)."""
    return reduce(set.__and__, (set(method_files(m)) for m in METHODS))


def lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def test_no_module_of_algorithms_is_over_300_lines():
    long = {str(p.relative_to(ALGORITHMS)): lines(p) for p in ALGORITHMS.rglob("*.py") if lines(p) > 300}
    assert not long, long


def test_each_method_reads_in_at_most_three_files_beside_the_framework():
    shared = framework()
    assert ALGORITHMS / "loop.py" in shared and ALGORITHMS / "budgeted_oracle.py" in shared
    own = {m: sorted(str(p.relative_to(ALGORITHMS)) for p in set(method_files(m)) - shared) for m in METHODS}
    assert own["seiko-ucb"] == ["methods/seiko.py", "optimism.py", "reward_models.py"], own["seiko-ucb"]
    # A method built on SEIKO reads in SEIKO's files and one of its own: direct
    # back-propagation (SEIKO's round without optimism or KL) and Non-adaptive
    # (one round of it), 35-37 lines each.
    built_on_seiko = {"direct-backprop", "non-adaptive"}
    for m in built_on_seiko:
        assert own[m] == sorted([f"methods/{m.replace('-', '_')}.py", *own["seiko-ucb"]]), own[m]
    assert {m: f for m, f in own.items() if len(f) > 3 and m not in built_on_seiko} == {}
