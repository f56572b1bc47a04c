"""The README's worked example is a test: it must run as printed.

Blocks fenced ```python run here; blocks fenced ```py need what this machine
lacks (Stable Diffusion weights, a GPU) and are only read."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_readme_own_oracle_example_runs_and_spends_its_budget(capsys):
    (example,) = python_blocks()
    namespace: dict = {}
    exec(compile(example, str(README), "exec"), namespace)
    log = namespace["oracle"].log()
    assert log["charged"].sum() <= 96
    assert {"call", "round", "key", "reward", "feasible"} <= set(log.columns)
    assert "held-out value" in capsys.readouterr().out
