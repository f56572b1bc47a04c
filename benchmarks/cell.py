"""One cell of a spec, from scratch to its three files, and the code version that says when it is stale.

A cell is one (task, method, seed). Its folder holds queries.csv (the budgeted
oracle's log), evals.csv (held-out value after every round) and, written last,
metrics.json: a cell is finished iff metrics.json exists, so a rerun skips it.
After every round but the last it also holds a checkpoint (`benchmarks.checkpoint`),
so a killed cell goes on from its last finished round and asks no query twice;
the checkpoint is removed once metrics.json is written. Every file is written
atomically (temp file + rename), so nothing half-written is ever read back.

A finished cell records the fingerprint of its settings and the version of the
code that produced it (`benchmarks.code_version`). A rerun with other settings
refuses to replace it; a rerun with the same settings under changed code reruns
it (a stale cell: `seiko-bench status`), so a run leaves no result older than its code.

This module and `benchmarks.checkpoint` are part of every cell's code version; how cells are scheduled
(`benchmarks.runner`: processes, Ctrl-C, progress) is not, because it cannot
change a cell's numbers: a cell seeds itself and runs alone in its process.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import random
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.image import imsave
from tqdm.auto import tqdm

from algorithms import loop
from algorithms.budgeted_oracle import BudgetedOracle
from algorithms.config import plain
from algorithms.method import Context
from algorithms.parallel import Ranks
from algorithms.registry import build_method
from benchmarks import checkpoint
from benchmarks.code_version import cell_code
from benchmarks.spec import Spec, SpecError
from benchmarks.tracking import Tracking, round_values
from domains.base import Oracle
from domains.tasks import TaskRef, load_factory
from reports.files import atomic_write
from reports.metrics import summarise, top_queries

SAMPLE_PICTURES = ("samples_first.png", "samples_last.png")
TOP_PICTURE = "top_designs.png"  # the best measured designs, where a task draws them from their keys
CELL_FILES = ("queries.csv", "evals.csv", "metrics.json", *SAMPLE_PICTURES, TOP_PICTURE)


def png(image: np.ndarray) -> bytes:
    """uint8 (H, W) or (H, W, 3) pixels as PNG bytes, greyscale kept grey."""
    buffer = io.BytesIO()
    imsave(buffer, image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255, format="png")
    return buffer.getvalue()


def sample_labels(record: loop.RoundRecord) -> list[str]:
    """What a sample picture says under each held-out design: its oracle reward, or that it is infeasible."""
    return [f"{reward:.3f}" if ok else "infeasible" for reward, ok in zip(record.sample_rewards, record.sample_feasible)]


def cell_dir(out: Path, spec: Spec, task: str, method: str, seed: int) -> Path:
    return out / spec.name / task / method / f"seed{seed}"


def cell_settings(spec: Spec, task: str, method: str, seed: int, shards: int = 1) -> dict[str, Any]:
    """Everything that determines a cell's result, stored in its metrics.json:
    with the pieces a batch is cut into when more than one (`algorithms.parallel`;
    how many processes computed them cannot change a number). `config` is the
    method's whole config, `spec_config` the part of it the spec writes."""
    ref, resolved = spec.task(task), spec.method(method)
    return {
        "task": task, "task_source": ref.source, "task_params": ref.params,
        "method": method, "runs": resolved.method, "seed": seed, "rounds": spec.rounds, "budget": spec.budget,
        "eval_samples": spec.eval_samples, "evaluation": spec.evaluation, "auc_freq": spec.auc_freq,
        "config": plain(resolved.config), "spec_config": resolved.written, **({"shards": shards} if shards != 1 else {}),
    }


def environment() -> dict[str, Any]:
    """What produced a result: versions, the code's commit, the machine."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, timeout=10).stdout.strip() or None
    except OSError:
        commit = None
    # The CPU's kernel set: a cell reproduces to the last digit only on the same one (AVX2 and
    # AVX-512 round a fine-tuning step's sums differently, and fine-tuning amplifies it).
    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "machine": platform.machine(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cpus": os.cpu_count(), "git_commit": commit}


def fingerprint(settings: dict[str, Any]) -> str:
    """What the spec decides of a cell: its settings with the config as the spec writes it.
    The method's defaults are left to the code version, whose hash covers the module that
    holds them: a new setting whose default keeps a method's behaviour leaves its cells'
    settings as they were, and a changed default makes them stale (rerun), not refused."""
    decided = {key: value for key, value in settings.items() if key != "config"}
    return hashlib.sha256(json.dumps(decided, sort_keys=True).encode()).hexdigest()[:16]


def finished(folder: Path, settings: dict[str, Any], code: dict[str, str], rerun: bool) -> bool:
    """True if the cell is done with these settings by this code. A cell finished
    with other settings is refused (unless asked to rerun); one finished by other
    code is stale and runs again."""
    metrics = folder / "metrics.json"
    if not metrics.exists() or rerun:
        return False
    done = json.loads(metrics.read_text())
    if done.get("fingerprint") != fingerprint(settings):
        raise SpecError(f"{folder} was finished with other settings; pass --rerun to replace it or --out another folder")
    return done.get("code", {}).get("hash") == code["hash"]


def run_cell(spec: Spec, task_name: str, method_name: str, seed: int, out: Path,
             progress: bool = False, tracking: Tracking | None = None, processes: int = 1) -> dict[str, Any]:
    """Run one cell from scratch and write its three files; returns its metrics.
    With `tracking`, every round is also logged to that tracker. With `processes`
    > 1 the cell runs data-parallel on that many new processes (`algorithms.parallel`),
    rank 0 writing its files, and this one waits for them."""
    shards = spec.shards_for(processes)
    if processes == 1:
        return run_rank(spec, task_name, method_name, seed, out, progress, tracking, Ranks(shards=shards))
    from benchmarks.launch import launch

    launch(run_rank, (spec, task_name, method_name, seed, out, False, tracking, None), processes)
    return json.loads((cell_dir(out, spec, task_name, method_name, seed) / "metrics.json").read_text())


def run_rank(spec: Spec, task_name: str, method_name: str, seed: int, out: Path, progress: bool,
             tracking: Tracking | None, ranks: Ranks | None) -> dict[str, Any] | None:
    """One process's part of a cell (`ranks`; None: this process's place in the
    torch.distributed group `benchmarks.launch` started); the metrics on rank 0.

    One torch thread per process: cells run one per core, and oversubscribed torch
    threads on a busy machine are many times slower, not a little."""
    if ranks is None:
        from benchmarks.launch import join_group

        world, rank = join_group()
        ranks = Ranks(world, rank, spec.shards_for(world))
    main = ranks.main
    folder = cell_dir(out, spec, task_name, method_name, seed)
    settings = cell_settings(spec, task_name, method_name, seed, ranks.shards)
    identity = {"fingerprint": fingerprint(settings), "code": cell_code(spec, task_name, method_name)}
    ref = spec.task(task_name)
    folder.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    loop.reset_peak_rss()  # a pool worker runs cell after cell: each records its own peak
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)

    start = time.perf_counter()
    task = ref.build()
    evaluation = evaluation_oracle(spec, task, ref)
    restored = checkpoint.load(folder, identity, task, evaluation)
    journal = folder / checkpoint.JOURNAL
    if restored is None:  # a new cell, or one whose checkpoint is of other settings or code
        for name in (*CELL_FILES, checkpoint.NAME, checkpoint.JOURNAL) if main else ():
            (folder / name).unlink(missing_ok=True)
        model = task.load_model()
        resolved = spec.method(method_name)
        method = build_method(resolved.method, Context.from_task(task, seed, ranks), label=method_name,
                              config=resolved.config)
        oracle = BudgetedOracle(task.oracle, spec.budget, method=method_name, seed=seed,
                                charge_infeasible=task.charge_infeasible, journal=journal)
        resume, spent_s = None, 0.0
    else:  # a killed cell: on from its last finished round, with the answers bought since
        model, method, oracle = restored["model"], restored["method"], restored["oracle"]
        method.ctx.ranks = ranks  # rank 0 pickled its own place
        resume, spent_s = restored["progress"], restored["wall_s"]
        oracle.prepay(journal)
    records: list[loop.RoundRecord] = [] if resume is None else list(resume.records)
    num_rounds = len(method.schedule(spec.rounds))
    bar = tqdm(total=num_rounds, initial=0 if resume is None else resume.round, desc=f"{method_name} seed{seed}",
               unit="round", leave=False, disable=not progress)
    tracker = None if tracking is None or not main else tracking.open(f"{spec.name}/{task_name}/{method_name}/seed{seed}", settings)

    def save(record: loop.RoundRecord) -> None:
        records.append(record)
        if not main:
            return
        if task.render is not None and record.samples and record.round in (0, num_rounds):
            picture = SAMPLE_PICTURES[record.round == num_rounds]
            atomic_write(folder / picture, png(task.render(record.samples, sample_labels(record))))
        atomic_write(folder / "evals.csv", pd.DataFrame([r.row() for r in records]).to_csv(index=False))
        atomic_write(folder / "queries.csv", oracle.log().to_csv(index=False))
        bar.update(record.round > 0)
        bar.set_postfix(value=f"{record.value:.3f}", used=record.queries_used)
        if tracker is not None:
            tracker.log(round_values(record.row()), step=record.queries_used)

    def keep(state: loop.Progress) -> None:
        if main and state.round < num_rounds:  # the last round's state is the finished cell itself
            checkpoint.save(folder, identity, task, evaluation, {
                "progress": state, "model": model, "method": method, "oracle": oracle,
                "wall_s": spent_s + time.perf_counter() - start})

    try:
        loop.run(method, model, oracle, spec.rounds, floor=task.oracle.floor,
                 eval_samples=0 if evaluation is None else spec.eval_samples, eval_seed=10_000 + seed,
                 eval_oracle=evaluation, on_round=save, resume=resume, on_progress=keep,
                 ranks=ranks)
    finally:
        bar.close()  # also on error, so the error line is not glued to an open bar
        if tracker is not None:
            tracker.finish()
    if not main:
        return None
    log = oracle.log()
    best = top_queries(log)
    if task.draw_keys is not None and len(best):
        atomic_write(folder / TOP_PICTURE, png(task.draw_keys(best["key"].tolist(),
                                                              [f"{r:.3f}" for r in best["reward"]])))
    metrics = {
        **summarise(log, spec.budget, task.oracle.floor, freq=spec.auc_freq),
        **(task.design_metrics(best["key"].tolist()) if task.design_metrics is not None else {}),
        "final_value": records[-1].value,
        "final_feasible": records[-1].feasible_fraction,
        "final_learned_reward": records[-1].learned_reward,
        "final_value_spearman": records[-1].value_spearman,
        "eval_oracle_calls": sum(r.eval_oracle_calls for r in records),
        "processes": ranks.world,
        "wall_s": spent_s + time.perf_counter() - start,
        "spec": spec.name, "task": task_name, "method": method_name, "seed": seed,
        "floor": task.oracle.floor, "optimum": task.oracle.optimum, "task_info": task.info,
        "fingerprint": identity["fingerprint"], "settings": settings, "code": identity["code"],
        "environment": environment(),
    }
    metrics["total_oracle_calls"] = metrics["oracle_calls"] + metrics["eval_oracle_calls"]
    metrics = {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in metrics.items()}
    atomic_write(folder / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    for name in (checkpoint.NAME, checkpoint.JOURNAL):
        (folder / name).unlink(missing_ok=True)
    return metrics


def evaluation_oracle(spec: Spec, task, ref: TaskRef) -> Oracle | None:
    """What scores a cell's held-out samples, from the spec's `evaluation` and the
    task's own choice; None when there is no held-out evaluation."""
    if spec.evaluation == "off" or spec.eval_samples == 0:
        return None
    if spec.evaluation == "oracle" or (spec.evaluation == "task" and task.evaluation == "oracle"):
        return task.oracle
    if spec.evaluation == "task":
        return task.evaluation
    oracle = load_factory(spec.evaluation, spec.root)()
    if not callable(oracle) or not hasattr(oracle, "key"):
        raise SpecError(f"evaluation {spec.evaluation} returned a {type(oracle).__name__}, not an Oracle")
    return oracle
