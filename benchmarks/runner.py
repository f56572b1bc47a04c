"""Runs the unfinished cells of a spec on a pool of processes, resumably.

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
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
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


def run_spec(spec: Spec, out: Path, *, workers: int | None = None, rerun: bool = False,
             tracking: Tracking | None = None) -> list[dict[str, Any]]:
    """Run every unfinished cell of `spec` under `out`, on a pool of processes.

    `<out>/<spec>/manifest.json` describes the last run that ran cells, and is
    written only once they have all finished: a failed or empty run leaves it be."""
    todo, done = split_cells(spec, out, rerun)
    if not todo:
        return done
    ran = _run_cells(spec, out, todo, workers, len(done), tracking)
    codes = {f"{task}/{method}": cell_code(spec, task, method) for task in spec.task_names() for method in spec.methods}
    manifest = {"spec": spec.as_dict(), "code": codes, "environment": environment(), "cells_done_before": len(done), "cells_run": todo}
    atomic_write(out / spec.name / "manifest.json", json.dumps(manifest, indent=2) + "\n")
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


def _kill_workers() -> None:
    for child in active_children():
        child.kill()


def _run_cells(spec: Spec, out: Path, todo: list[tuple[str, str, int]], workers: int | None,
               done_before: int, tracking: Tracking | None) -> list[dict[str, Any]]:
    done: list[dict[str, Any]] = []
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo)))
    with tqdm(total=len(todo), desc=f"{spec.name}: {done_before} cells done before, running", unit="cell") as bar:
        if workers == 1:
            for cell in todo:
                done.append(run_cell(spec, *cell, out, progress=True, tracking=tracking))
                bar.update()
            return done
        pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_worker_start,
                                   initargs=(os.getpid(),))
        # Cells are handed out one per free worker, not queued up front, so that a
        # Ctrl-C leaves nothing queued that would start after it.
        queue = iter(todo)
        pending = {pool.submit(run_cell, spec, *cell, out, tracking=tracking) for cell in islice(queue, workers)}
        try:
            while pending:
                finished_now, pending = wait(pending, return_when=FIRST_COMPLETED)
                pending |= {pool.submit(run_cell, spec, *cell, out, tracking=tracking)
                            for cell in islice(queue, len(finished_now))}
                for future in finished_now:
                    metrics = future.result()  # re-raises a cell's error here, in the parent
                    done.append(metrics)
                    bar.update()
                    bar.set_postfix_str(f"{metrics['method']} seed{metrics['seed']}: "
                                        f"value {metrics['final_value']:.3f}")
        except KeyboardInterrupt:
            # The first Ctrl-C: no queued cell starts, the running ones finish and are kept; the second aborts.
            pool.shutdown(wait=False)
            running = list(pending)
            bar.close()
            print(f"seiko-bench: finishing {len(running)} running cell{'s' * (len(running) != 1)}; "
                  "Ctrl-C again to abort", file=sys.stderr, flush=True)
            try:
                wait(running)
            except KeyboardInterrupt:
                _kill_workers()
            raise
        except BaseException:
            pool.shutdown()  # cells already running finish and are kept
            raise
        pool.shutdown()
    return done
