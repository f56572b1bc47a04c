"""Runs the unfinished cells of a spec, resumably, on a pool of processes or as Ray tasks.

What a cell computes, and when a finished one is stale, is `benchmarks.cell`;
this module only schedules cells, so it is not part of their code version.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from itertools import islice
from multiprocessing import active_children, get_context
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from benchmarks.cell import cell_code, cell_dir, cell_settings, environment, finished, run_cell
from benchmarks.spec import Spec
from benchmarks.tracking import Tracking
from reports import atomic_write


def split_cells(spec: Spec, out: Path, rerun: bool) -> tuple[list[tuple[str, str, int]], list[dict[str, Any]]]:
    """The spec's cells still to run, and the metrics of those finished by this code
    with these settings (`finished`)."""
    todo, done = [], []
    codes: dict[tuple[str, str], dict[str, str]] = {}
    for task, method, seed in spec.cells():
        folder = cell_dir(out, spec, task, method, seed)
        code = codes.setdefault((task, method), cell_code(spec, task, method))
        if finished(folder, cell_settings(spec, task, method, seed), code, rerun):
            done.append(json.loads((folder / "metrics.json").read_text()))
        else:
            todo.append((task, method, seed))
    return todo, done


EXECUTORS = ("pool", "ray")


def run_spec(spec: Spec, out: Path, *, workers: int | None = None, rerun: bool = False,
             tracking: Tracking | None = None, executor: str = "pool", address: str | None = None) -> list[dict[str, Any]]:
    """Run every unfinished cell of `spec` under `out`, on a pool of processes
    (`executor="pool"`) or as Ray tasks (`"ray"`, on the cluster at `address`, else
    a local Ray on `workers` CPUs); both write the same cell folders.

    `<out>/<spec>/manifest.json` describes the last run that ran cells; it is
    written once they have all finished, and again by a run that finds every cell
    finished but the manifest missing (a kill during its write)."""
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    todo, done = split_cells(spec, out, rerun)
    manifest_path = out / spec.name / "manifest.json"
    if not todo and manifest_path.exists():
        return done
    ran = _run_cells(spec, out, todo, workers, len(done), tracking, executor, address) if todo else []
    codes = {f"{task}/{method}": cell_code(spec, task, method) for task in spec.task_names() for method in spec.methods}
    # Each task's info as its cells ran it: settings a machine could not honour are replaced there, and say so.
    task_info = {cell["task"]: cell.get("task_info") for cell in done + ran}
    manifest = {"spec": spec.as_dict(), "code": codes, "environment": environment(), "executor": executor,
                "task_info": task_info, "cells_done_before": len(done), "cells_run": todo}
    atomic_write(manifest_path, json.dumps(manifest, indent=2) + "\n")
    return done + ran


def _worker_start(parent: int) -> None:
    """A pool worker ignores Ctrl-C (the parent decides: finish running cells or
    abort) and exits within a second of its parent's death by any signal, so no
    orphan goes on writing into the results folder."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


class _Pool:
    """Cells on a pool of spawned processes on this machine."""

    def __init__(self, workers: int):
        self.slots = workers
        self.pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_worker_start,
                                        initargs=(os.getpid(),))

    def submit(self, *args: Any) -> Future:
        return self.pool.submit(run_cell, *args)

    def wait(self, pending: set[Future], timeout: float) -> set[Future]:
        return wait(pending, timeout=timeout, return_when=FIRST_COMPLETED)[0]

    def result(self, handle: Future) -> dict[str, Any]:
        return handle.result()  # re-raises a cell's error here, in the parent

    def close(self, abort: bool = False) -> None:
        if abort:
            for child in active_children():
                child.kill()
        self.pool.shutdown(wait=not abort, cancel_futures=abort)


class _Ray:
    """Cells as Ray tasks, each reserving the spec's `resources`: on a local Ray
    started here with `workers` CPUs, or on the running cluster at `address`
    (which then receives this project's packages as the tasks' code)."""

    def __init__(self, spec: Spec, workers: int, address: str | None):
        try:
            import ray
        except ImportError:
            raise ValueError("--executor ray needs Ray: pip install -e '.[ray]'") from None
        self.ray = ray
        if address is None:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        else:
            packages = [str(Path(__file__).resolve().parent.parent / name)
                        for name in ("algorithms", "benchmarks", "domains", "reports")]
            try:
                ray.init(address=address, runtime_env={"py_modules": packages}, log_to_driver=False,
                         configure_logging=False)
            except ConnectionError as err:
                raise ValueError(f"--address {address}: no Ray cluster there ({err})") from None
        cpus, gpus = spec.resources["cpus"], spec.resources["gpus"]
        available = ray.cluster_resources()
        if gpus > available.get("GPU", 0) or cpus > available.get("CPU", 0):
            ray.shutdown()
            raise ValueError(f"a cell of spec {spec.name!r} asks for {cpus:g} CPUs and {gpus:g} GPUs; the Ray cluster "
                             f"has {available.get('CPU', 0):g} and {available.get('GPU', 0):g}")
        fits = [available.get("CPU", 0) / cpus] + ([available.get("GPU", 0) / gpus] if gpus else [])
        self.slots = max(1, int(min(fits)))
        self.remote = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=0)(run_cell)

    def submit(self, *args: Any) -> Any:
        return self.remote.remote(*args)

    def wait(self, pending: set[Any], timeout: float) -> set[Any]:
        return set(self.ray.wait(list(pending), num_returns=1, timeout=timeout)[0])

    def result(self, handle: Any) -> dict[str, Any]:
        try:
            return self.ray.get(handle)
        except self.ray.exceptions.RayTaskError as err:
            raise err.cause from None  # the cell's own error, as the pool would raise it

    def close(self, abort: bool = False) -> None:
        self.ray.shutdown()  # ends this job's tasks; on abort, the running cells with it


def _running_status(out: Path, spec: Spec, running: dict[Any, tuple[str, str, int]]) -> str:
    """Where each running cell is, read from the evals.csv it writes after every
    round (the cells run in other processes, so the parent reads their files)."""
    parts = []
    for task, method, seed in running.values():
        evals = cell_dir(out, spec, task, method, seed) / "evals.csv"
        try:
            used = int(evals.read_text().strip().rsplit("\n", 1)[-1].split(",")[1])
        except (OSError, IndexError, ValueError):
            used = 0
        parts.append(f"{method} s{seed} {used}/{spec.budget}")
    return "; ".join(parts)


def _run_cells(spec: Spec, out: Path, todo: list[tuple[str, str, int]], workers: int | None,
               done_before: int, tracking: Tracking | None, executor: str, address: str | None) -> list[dict[str, Any]]:
    done: list[dict[str, Any]] = []
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo)))
    with tqdm(total=len(todo), desc=f"{spec.name}: {done_before} cells done before, running", unit="cell") as bar:
        if workers == 1 and executor == "pool":
            for cell in todo:
                done.append(run_cell(spec, *cell, out, progress=True, tracking=tracking))
                bar.update()
            return done
        engine = _Pool(workers) if executor == "pool" else _Ray(spec, workers, address)
        # Cells are handed out one per free slot, not queued up front, so that a
        # Ctrl-C leaves nothing queued that would start after it.
        queue = iter(todo)
        running = {engine.submit(spec, *cell, out, False, tracking): cell for cell in islice(queue, engine.slots)}
        try:
            while running:
                finished_now = engine.wait(set(running), timeout=2.0)
                for handle in finished_now:
                    running.pop(handle)
                    metrics = engine.result(handle)
                    done.append(metrics)
                    bar.update()
                    bar.write(f"{metrics['method']} seed{metrics['seed']}: value {metrics['final_value']:.3f}"
                              if metrics["final_value"] is not None else f"{metrics['method']} seed{metrics['seed']}: done")
                for cell in islice(queue, len(finished_now)):
                    running[engine.submit(spec, *cell, out, False, tracking)] = cell
                bar.set_postfix_str(_running_status(out, spec, running), refresh=True)
        except KeyboardInterrupt:
            # The first Ctrl-C: no queued cell starts, the running ones finish and are kept; the second aborts.
            bar.close()
            print(f"seiko-bench: finishing {len(running)} running cell{'s' * (len(running) != 1)}; "
                  "Ctrl-C again to abort", file=sys.stderr, flush=True)
            try:
                while running:
                    for handle in engine.wait(set(running), timeout=2.0):
                        running.pop(handle)
                engine.close()
            except KeyboardInterrupt:
                engine.close(abort=True)
            raise
        except BaseException:
            engine.close()  # cells already running finish and are kept
            raise
        engine.close()
    return done
