"""Where one round's time goes: a SEIKO-UCB protein round and a DNA round, split by part.

    python -m benchmarks.experiments.profile_round [--method seiko-ucb] [--json]

Runs the first round of one cell of the shipped `protein` and `dna` specs (their
settings: fine-tuning steps, batch, evaluation samples) in this process, on one
torch thread as a cell does, and times each part exclusively (a part's time
excludes the parts it calls): the policy's denoiser forward, the anchor's
forward (the KL term), backward passes, Gumbel draws, the reward model's fit,
the held-out evaluation's oracle and bookkeeping (its sampling counts as denoiser
forward), and the rest. The parts are found by wrapping the functions that do
them, so the cell runs its real code; the wrappers cost microseconds a call.
Shares, not seconds, are what compare across machines and loads.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import ExitStack
from functools import wraps
from pathlib import Path
from unittest import mock

import torch

from algorithms import loop
from algorithms.reward_models import RewardEnsemble
from benchmarks.cell import run_cell
from benchmarks.spec import load_spec
from domains.diffusion import masked_policy
from domains.diffusion.masked_policy import MaskedPolicy
from domains.tasks import get_task

PARTS = ("denoiser forward", "anchor forward", "backward", "gumbel draws", "reward-model fit", "evaluation (rest)",
         "other")
CELLS = {"protein": "ehrlich-l32-c2-k4", "dna": "gcn4-occupancy"}


class ExclusiveTimer:
    """Wall time per part, each part's own: a nested part's time is taken out of its caller's."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.names: list[str] = []
        self._stack: list[list[float]] = []

    def wrap(self, part: str | Callable[..., str], function: Callable) -> Callable:
        @wraps(function)
        def timed(*args, **kwargs):
            name = part(self, *args) if callable(part) else part
            self.names.append(name)
            self._stack.append([time.perf_counter(), 0.0])  # start, time spent in nested parts
            try:
                return function(*args, **kwargs)
            finally:
                self.names.pop()
                start, nested = self._stack.pop()
                spent = time.perf_counter() - start
                self.seconds[name] += spent - nested
                if self._stack:
                    self._stack[-1][1] += spent

        return timed


def _forward_part(timer: ExclusiveTimer, model: MaskedPolicy, *args) -> str:
    """The anchor is a frozen copy (no parameter trains): its forward is the KL's cost."""
    return "denoiser forward" if any(p.requires_grad for p in model.parameters()) else "anchor forward"


def _backward_part(timer: ExclusiveTimer, *args) -> str:
    """The reward model's own backward passes belong to its fit."""
    return "reward-model fit" if "reward-model fit" in timer.names else "backward"


def profile(spec_name: str, method: str) -> dict[str, float]:
    """Seconds per part of the first round (with round 0's evaluation) of one cell of `spec_name`."""
    full = load_spec(spec_name)
    spec = load_spec(spec_name, [f"methods=[{method}]", "seeds=[0]", f"rounds=[{full.rounds[0]}]", f"budget={full.rounds[0]}",
                                 f"tasks=[{CELLS[spec_name]}]"])
    timer = ExclusiveTimer()
    model = type(get_task(CELLS[spec_name]).load_model())  # its network call: the model's own `_logits`
    patches = [
        mock.patch.object(model, "_logits", timer.wrap(_forward_part, model._logits)),
        mock.patch.object(masked_policy, "gumbel_noise", timer.wrap("gumbel draws", masked_policy.gumbel_noise)),
        mock.patch.object(torch.Tensor, "backward", timer.wrap(_backward_part, torch.Tensor.backward)),
        mock.patch.object(RewardEnsemble, "fit", timer.wrap("reward-model fit", RewardEnsemble.fit)),
        mock.patch.object(loop, "evaluate", timer.wrap("evaluation (rest)", loop.evaluate)),
    ]
    with tempfile.TemporaryDirectory() as out, ExitStack() as stack:
        for patch in patches:
            stack.enter_context(patch)
        start = time.perf_counter()
        run_cell(spec, CELLS[spec_name], method, 0, Path(out))
        total = time.perf_counter() - start
    seconds = dict(timer.seconds)
    seconds["other"] = total - sum(seconds.values())
    return {"total": total, **{part: seconds.get(part, 0.0) for part in PARTS}}


def table(profiles: dict[str, dict[str, float]]) -> str:
    """A Markdown table: seconds and share of the round per part, one column pair per spec."""
    head = "| part | " + " | ".join(f"{name} s | share" for name in profiles) + " |"
    rule = "|:--|" + "--:|--:|" * len(profiles)
    rows = [f"| {part} | " + " | ".join(f"{p[part]:.1f} | {p[part] / p['total']:.0%}" for p in profiles.values())
            + " |" for part in PARTS]
    total = "| whole round | " + " | ".join(f"{p['total']:.1f} | 100%" for p in profiles.values()) + " |"
    return "\n".join([head, rule, *rows, total])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", default="seiko-ucb", help="the method whose round is profiled")
    parser.add_argument("--specs", nargs="+", default=list(CELLS), choices=list(CELLS))
    parser.add_argument("--json", action="store_true", help="print the seconds as JSON instead of a table")
    args = parser.parse_args()
    torch.set_num_threads(1)
    profiles = {name: profile(name, args.method) for name in args.specs}
    print(json.dumps(profiles, indent=2) if args.json else table(profiles))


if __name__ == "__main__":
    main()
