"""What one round of a method costs on each backend: samples per second and peak memory.

    python -m benchmarks.experiments.backend_costs           # every workload, a Markdown table
    python -m benchmarks.experiments.backend_costs sd-ddpo-is --set gradient_checkpointing=false

Each workload runs in a fresh process (peak resident memory is a process's
lifetime maximum, so two workloads in one process would hide the smaller),
with two torch threads, through the public API: the task (`domains.tasks`: a
shipped one by name, Stable Diffusion's by import path as a spec names it), its model and oracle,
the registered method, `algorithms.loop.run` for one round with no held-out
evaluation, then an evaluation of as many held-out samples timed apart (the
loop evaluates every round; its cost is the spec's `eval_samples`, not the
method's). Times are also given as a ratio to `yardstick`'s reference
workload measured in the same process, which is what the stored baseline
(`benchmarks/backend_costs_baseline.json`, checked by `benchmarks/test_backend_costs.py`) compares.

The Stable Diffusion workloads are DDPO's epoch at a CPU's size: a UNet of
1.1M parameters built from a config with random weights (`tiny_sd`,
nothing downloaded), 32x32 RGB images, 20 DDIM steps with eta 1,
classifier-free guidance 5, 4 batches of 8 of DDPO's animal prompts, JPEG
incompressibility, LoRA rank 4 on the attention projections, float32; DDPO-IS
trains one inner epoch of clipped PPO over all 20 steps in batches of 8;
Greedy (a SEIKO round without optimism) fits its reward model on CLIP features
and fine-tunes 4 steps of 8 differentiable samples through the last 4 steps.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from benchmarks.experiments.yardstick import reference_seconds
from domains.base import Task
from domains.tasks import TaskRef, get_task

PROJECT = Path(__file__).resolve().parents[2]
"""The repository's root, where a fresh process finds `benchmarks` and `domains`."""
THREADS = 2
SD = "domains.images.sd_task:build_task"
"""The Stable Diffusion task's factory, as `benchmarks/specs/sd-aesthetic.yaml` names it."""
SD_SETTINGS: dict[str, Any] = dict(
    num_steps=20, eta=1.0, guidance_scale=5.0, resolution=32, lora_rank=4, micro_batch=8, dtype="float32", device="cpu",
    prompts=["cat", "dog", "horse", "monkey", "rabbit", "zebra", "spider", "bird"])
WORKLOADS: dict[str, dict[str, Any]] = {
    "sd-ddpo-is": dict(task=SD, method="ddpo-is", queries=32,
                       config={"clip_range": 1e-4, "inner_epochs": 1, "batch_size": 8, "lr": 3e-4}),
    "sd-greedy": dict(task=SD, method="greedy", queries=32,
                      config={"finetune_steps": 4, "batch_size": 8, "last_k": 4}),
    "digits-ddpo-is": dict(task="digits-jpeg-incompressibility", method="ddpo-is", queries=64, config={}),
    "digits-greedy": dict(task="digits-jpeg-incompressibility", method="greedy", queries=64, config={}),
    "protein-ddpo-is": dict(task="ehrlich-l32-c2-k4", method="ddpo-is", queries=128, config={}),
    "protein-greedy": dict(task="ehrlich-l32-c2-k4", method="greedy", queries=128, config={}),
}
"""One round of each (backend, method): the digits and protein rounds at their default specs' first-round sizes."""


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _task(name: str, sd_changes: dict[str, Any], workdir: Path) -> Task:
    """A shipped task by name, or the Stable Diffusion task on tiny components written under `workdir`."""
    if name != SD:
        return get_task(name)
    from benchmarks.experiments.tiny_sd import BENCH_SIZE, build

    pipeline, clip = build(workdir, BENCH_SIZE)
    config = {**SD_SETTINGS, "pretrained": str(pipeline), **sd_changes}
    return TaskRef(SD, {"config": config, "reward": "jpeg-incompressibility", "clip": str(clip)}).build()


def measure(name: str, sd_changes: dict[str, Any] | None = None, seed: int = 0) -> dict[str, Any]:
    """One round of workload `name` in this process (see the module's docstring)."""
    from algorithms import loop
    from algorithms.budgeted_oracle import BudgetedOracle
    from algorithms.method import Context
    from algorithms.registry import build_method

    spec = WORKLOADS[name]
    torch.set_num_threads(THREADS)
    torch.manual_seed(seed)
    reference = reference_seconds()
    with tempfile.TemporaryDirectory() as workdir:
        task = _task(spec["task"], sd_changes or {}, Path(workdir))
        model = task.load_model()
        loaded_mb = _peak_rss_mb()
        method = build_method(spec["method"], Context.from_task(task, seed), spec["config"])
        oracle = BudgetedOracle(task.oracle, spec["queries"], method=name, seed=seed)
        seconds = {"propose": 0.0, "update": 0.0}

        def timed(part: str, call):
            def run(*args, **kwargs):
                start = time.perf_counter()
                try:
                    return call(*args, **kwargs)
                finally:
                    seconds[part] += time.perf_counter() - start
            return run

        method.propose, method.update = timed("propose", method.propose), timed("update", method.update)
        start = time.perf_counter()
        loop.run(method, model, oracle, [spec["queries"]], floor=task.oracle.floor, eval_samples=0)
        round_s = time.perf_counter() - start
        round_peak_mb = _peak_rss_mb()
        start = time.perf_counter()
        loop.evaluate(model, method, task.oracle, task.oracle.floor, spec["queries"], seed=10_000)
        eval_s = time.perf_counter() - start
    cuda = torch.cuda.is_available()
    return {
        "workload": name, "queries": spec["queries"], "threads": THREADS, "settings": sd_changes or {},
        "round_s": round_s, "sampling_s": seconds["propose"], "update_s": seconds["update"],
        "samples_per_s": spec["queries"] / round_s, "eval_s": eval_s, "eval_samples_per_s": spec["queries"] / eval_s,
        "loaded_rss_mb": loaded_mb, "peak_rss_mb": round_peak_mb,
        "peak_allocated_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
        "reference_s": reference, "round_ratio": round_s / reference,
    }


def measure_in_fresh_process(name: str, sd_changes: dict[str, Any] | None = None) -> dict[str, Any]:
    """`measure` in a new Python process, so that its peak memory is this workload's alone."""
    command = [sys.executable, "-m", "benchmarks.experiments.backend_costs", name, "--json"]
    for key, value in (sd_changes or {}).items():
        command += ["--set", f"{key}={json.dumps(value)}"]
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS)}
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=PROJECT)
    if done.returncode:
        raise RuntimeError(f"workload {name} failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(rows: list[dict[str, Any]]) -> str:
    """The README's table of `rows` (from `measure`)."""
    lines = ["| workload | settings | samples/s (round) | sampling s | update s | evaluation samples/s "
             "| peak RSS MB (after loading) |",
             "|---|---|--:|--:|--:|--:|--:|"]
    for r in rows:
        settings = ", ".join(f"{k}={v}" for k, v in r["settings"].items()) or "defaults"
        lines.append(f"| {r['workload']} | {settings} | {r['samples_per_s']:.2f} | {r['sampling_s']:.1f} | "
                     f"{r['update_s']:.1f} | {r['eval_samples_per_s']:.2f} | {r['peak_rss_mb']:.0f} "
                     f"({r['loaded_rss_mb']:.0f}) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("workloads", nargs="*", help=f"any of {', '.join(WORKLOADS)} (default: all)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a Stable Diffusion setting (StableDiffusionConfig), YAML value")
    p.add_argument("--json", action="store_true", help="measure here and print one JSON line (one workload)")
    args = p.parse_args(argv)
    changes = {}
    for assignment in args.set:
        key, _, value = assignment.partition("=")
        changes[key] = yaml.safe_load(value)
    names = args.workloads or list(WORKLOADS)
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        p.error(f"unknown workload {unknown[0]!r}; known: {', '.join(WORKLOADS)}")
    if args.json:
        (name,) = names
        print(json.dumps(measure(name, changes)))
        return
    rows = [measure_in_fresh_process(name, changes if name.startswith("sd-") else None) for name in names]
    print(table(rows))


if __name__ == "__main__":
    main()
