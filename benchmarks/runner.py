"""Runs the unfinished cells of a spec, resumably, on a pool of processes or as Ray tasks.

What a cell computes, and when a finished one is stale, is `benchmarks.cell`;
this module only schedules cells, so it is not part of their code version.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from datetime import datetime, timezone
from itertools import islice
from multiprocessing import active_children, get_context
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from benchmarks.cell import cell_dir, environment, run_cell
from benchmarks.code_version import cell_code
from benchmarks.estimate import Cell, expected_seconds, split_cells
from benchmarks.launch import stop_with_parent
from benchmarks.spec import Spec
from benchmarks.tracking import Tracking
from reports.files import atomic_write

EXECUTORS = ("pool", "ray")


def run_specs(specs: list[Spec], out: Path, *, workers: int | None = None, rerun: bool = False,
              tracking: Tracking | None = None, executor: str = "pool",
              address: str | None = None, processes: int = 1) -> dict[str, list[dict[str, Any]]]:
    """Run every unfinished cell of `specs` under `out`, on a pool of processes
    (`executor="pool"`) or as Ray tasks (`"ray"`, on the cluster at `address`, else
    a local Ray on `workers` CPUs); both write the same cell folders. Each cell
    runs data-parallel on `processes` processes of its own. The cells of
    all specs share the workers and one progress bar, so a run has one ETA.
    Returns every spec's finished cells' metrics, by spec name.

    `<out>/<spec>/manifest.json` describes the last run that ran a spec's cells: it
    is written when the run starts them (`complete: false`, so that a folder half
    remade after a change of its spec's settings is read against the spec being
    run), again once they have all finished, and by a run that finds every cell
    finished but the manifest missing (a kill during its write)."""
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    todo: dict[str, list[Cell]] = {}
    done: dict[str, list[dict[str, Any]]] = {}
    for spec in specs:
        todo[spec.name], done[spec.name] = split_cells(spec, out, rerun, processes)
    every = [cell for cells in todo.values() for cell in cells]
    for spec in specs:
        if todo[spec.name]:
            _write_manifest(spec, out, executor, done[spec.name], [], todo[spec.name], complete=False)
    try:
        ran = _run_cells(every, out, workers, sum(map(len, done.values())), tracking, executor, address) if every else []
    except Interrupted as stop:  # the cells that finished while the Ctrl-C drained may complete a spec
        _write_manifests(specs, out, executor, todo, done, stop.done, complete_only=True)
        raise
    _write_manifests(specs, out, executor, todo, done, ran)
    return done


def _write_manifests(specs: list[Spec], out: Path, executor: str, todo: dict[str, list[Cell]],
                     done: dict[str, list[dict[str, Any]]], ran: list[dict[str, Any]],
                     complete_only: bool = False) -> None:
    """Each spec's manifest after a run (`done` gains what `ran`); after an interrupted
    one (`complete_only`), only for the specs whose every cell to run has finished."""
    for spec in specs:
        spec_ran = [m for m in ran if m["spec"] == spec.name]
        if complete_only and len(spec_ran) < len(todo[spec.name]):
            continue
        if spec_ran or not (out / spec.name / "manifest.json").exists():
            _write_manifest(spec, out, executor, done[spec.name], spec_ran, todo[spec.name])
        done[spec.name] += spec_ran


def _write_manifest(spec: Spec, out: Path, executor: str, done: list[dict[str, Any]],
                    ran: list[dict[str, Any]], todo: list[Cell], complete: bool = True) -> None:
    codes = {f"{task}/{method}": cell_code(spec, task, method) for task in spec.task_names() for method in spec.methods}
    # Each task's info as its cells ran it: settings a machine could not honour are replaced there, and say so.
    task_info = {cell["task"]: cell.get("task_info") for cell in done + ran}
    manifest = {"spec": spec.as_dict(), "code": codes, "environment": environment(), "executor": executor,
                "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "task_info": task_info, "cells_done_before": len(done),
                "cells_run": [[cell.task, cell.method, cell.seed] for cell in todo], "complete": complete}
    (out / spec.name).mkdir(parents=True, exist_ok=True)
    atomic_write(out / spec.name / "manifest.json", json.dumps(manifest, indent=2) + "\n")


class _Pool:
    """Cells on a pool of spawned processes on this machine."""

    def __init__(self, workers: int):
        self.slots = workers
        self.pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=stop_with_parent,
                                        initargs=(os.getpid(),))

    def submit(self, cell: Cell, out: Path, tracking: Tracking | None) -> Future:
        return self.pool.submit(run_cell, cell.spec, cell.task, cell.method, cell.seed, out, False, tracking,
                                cell.processes)

    def wait(self, pending: set[Future], timeout: float) -> set[Future]:
        return wait(pending, timeout=timeout, return_when=FIRST_COMPLETED)[0]

    def result(self, handle: Future) -> dict[str, Any]:
        return handle.result()  # re-raises a cell's error here, in the parent

    def close(self, abort: bool = False) -> None:
        if abort:
            for child in active_children():
                child.kill()
        self.pool.shutdown(wait=not abort, cancel_futures=abort)


RAY_CONNECT_S = 10.0
"""How long a Ray address may take to answer before the run gives up on it."""


def _reachable(address: str) -> None:
    """Refuse, within `RAY_CONNECT_S`, a `host:port` (or ray://host:port) where nothing
    listens: Ray itself retries such an address for minutes before it fails."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto" or another form Ray resolves itself
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=RAY_CONNECT_S).close()
    except OSError as err:
        raise ValueError(f"--address {address}: nothing answers there ({err.strerror or err}); "
                         "start the cluster (`ray start --head`) or check the address") from None


class _Ray:
    """Cells as Ray tasks, each reserving its spec's `resources`: on a local Ray
    started here with `workers` CPUs, or on the running cluster at `address`
    (which then receives this project's packages as the tasks' code). A
    data-parallel cell reserves them once for each of its `processes`."""

    def __init__(self, specs: list[Spec], workers: int, address: str | None, processes: int):
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
            _reachable(address)
            try:
                ray.init(address=address, runtime_env={"py_modules": packages}, log_to_driver=False,
                         configure_logging=False)
            except ConnectionError as err:
                raise ValueError(f"--address {address}: no Ray cluster there ({err})") from None
        available = ray.cluster_resources()
        cpus_there, gpus_there = available.get("CPU", 0), available.get("GPU", 0)
        fits = []  # how many cells of each spec the cluster holds at once
        for spec in specs:
            cpus, gpus = spec.resources["cpus"] * processes, spec.resources["gpus"] * processes
            if gpus > gpus_there or cpus > cpus_there:
                ray.shutdown()
                on = f" on its {processes} processes" if processes > 1 else ""
                raise ValueError(f"a cell of spec {spec.name!r} asks for {cpus:g} CPUs and {gpus:g} GPUs{on}; the "
                                 f"Ray cluster has {cpus_there:g} and {gpus_there:g}")
            fits.append(min([cpus_there / cpus] + ([gpus_there / gpus] if gpus else [])))
        self.slots = max(1, int(min(fits)))
        self.remote = ray.remote(max_retries=0)(run_cell)

    def submit(self, cell: Cell, out: Path, tracking: Tracking | None) -> Any:
        resources = cell.spec.resources  # per process of a data-parallel cell
        task = self.remote.options(num_cpus=resources["cpus"] * cell.processes,
                                   num_gpus=resources["gpus"] * cell.processes)
        return task.remote(cell.spec, cell.task, cell.method, cell.seed, out, False, tracking, cell.processes)

    def wait(self, pending: set[Any], timeout: float) -> set[Any]:
        return set(self.ray.wait(list(pending), num_returns=1, timeout=timeout)[0])

    def result(self, handle: Any) -> dict[str, Any]:
        try:
            return self.ray.get(handle)
        except self.ray.exceptions.RayTaskError as err:
            raise err.cause from None  # the cell's own error, as the pool would raise it

    def close(self, abort: bool = False) -> None:
        self.ray.shutdown()  # ends this job's tasks; on abort, the running cells with it


def _rounds_written(out: Path, cell: Cell) -> tuple[int, int]:
    """The rows a running cell's evals.csv holds (round 0's evaluation first) and the
    queries it has spent, read from that file, which it writes after every round
    (cells run in other processes, so the parent reads their files)."""
    evals = cell_dir(out, cell.spec, cell.task, cell.method, cell.seed) / "evals.csv"
    try:
        rows = evals.read_text().strip().split("\n")[1:]
        return len(rows), int(rows[-1].split(",")[1])
    except (OSError, IndexError, ValueError):
        return 0, 0


def _running_status(out: Path, running: list[Cell]) -> tuple[str, float]:
    """Where each running cell is, and the expected seconds of work its finished rounds
    stand for: their share of a reference cell's time where one ran these rounds, else
    the share of the budget they spent."""
    parts, partial = [], 0.0
    for cell in running:
        rows, used = _rounds_written(out, cell)
        parts.append(f"{cell.method} s{cell.seed} {used}/{cell.spec.budget}")
        if cell.reference_shares is not None:
            done = cell.reference_shares[rows - 1] if rows else 0.0
        else:
            done = min(1.0, used / cell.spec.budget)
        partial += expected_seconds(cell) * done
    return "; ".join(parts), partial


def _key(cell: Cell) -> tuple[str, str, str, int]:
    return cell.spec.name, cell.task, cell.method, cell.seed


class _Progress:
    """One bar for a whole run, across specs: work counted in the reference run's
    cell seconds (`benchmarks.estimate`), so that tqdm's ETA is the forecast
    corrected by this machine's speed, and a running cell counts its finished rounds.
    The rounds a killed run's cells had finished before this run (read from `out`)
    are not this run's work: counted, they made a resumed run look many times faster."""

    def __init__(self, todo: list[Cell], done_before: int, out: Path | None = None):
        self.total_cells, self.finished = done_before + len(todo), done_before
        self.finished_work = 0.0
        self.resumed = {} if out is None else {_key(cell): _running_status(out, [cell])[1] for cell in todo}
        total = sum(map(expected_seconds, todo)) - sum(self.resumed.values())
        self.bar = tqdm(total=round(total), desc=self._desc(),
                        bar_format="{desc} {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}{postfix}]")

    def _desc(self) -> str:
        return f"{self.finished}/{self.total_cells} cells"

    def cell_done(self, cell: Cell, metrics: dict[str, Any]) -> None:
        self.finished += 1
        self.finished_work += expected_seconds(cell) - self.resumed.get(_key(cell), 0.0)
        self.bar.set_description_str(self._desc(), refresh=False)
        value_line(cell, metrics)
        self.show(0.0, "")

    def show(self, partial: float, status: str, running: list[Cell] = ()) -> None:
        """`partial`: the work the `running` cells' finished rounds stand for (`_running_status`)."""
        partial -= sum(self.resumed.get(_key(cell), 0.0) for cell in running)
        self.bar.update(max(0, round(self.finished_work + partial) - self.bar.n))
        self.bar.set_postfix_str(f"{self.speed()}; {status}" if status else self.speed(), refresh=True)

    def speed(self) -> str:
        """This machine's pace against the reference run's, once a round has shown it:
        the ETA is the reference forecast divided by it."""
        elapsed = self.bar.format_dict["elapsed"]
        if self.bar.n == 0 or elapsed < 1:
            return "measuring this machine's speed (no round finished yet)"
        return f"{self.bar.n / elapsed:.2f}x the reference run's speed"

    def close(self) -> None:
        self.bar.close()


def value_line(cell: Cell, metrics: dict[str, Any]) -> None:
    """The line each finished cell gets, above the progress bar (or alone, once it is closed)."""
    value = metrics["final_value"]
    tqdm.write(f"{cell.spec.name}/{cell.task} {cell.method} seed{cell.seed}: "
               + (f"value {value:.3f}" if value is not None else "done"))


class Interrupted(KeyboardInterrupt):
    """A first Ctrl-C, after the running cells finished: `done` holds every cell this run finished."""

    def __init__(self, done: list[dict[str, Any]]):
        super().__init__()
        self.done = done


class Stopped(Exception):
    """The run was asked to stop now (SIGTERM: a scheduler's or a user's `kill`).
    Unlike a first Ctrl-C, which lets running cells finish, it stops them too;
    each resumes from its last finished round at the next run."""


def _run_cells(todo: list[Cell], out: Path, workers: int | None, done_before: int, tracking: Tracking | None,
               executor: str, address: str | None) -> list[dict[str, Any]]:
    done: list[dict[str, Any]] = []
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo)))
    progress = _Progress(todo, done_before, out)
    try:
        if workers == 1 and executor == "pool":
            for cell in todo:
                done.append(run_cell(cell.spec, cell.task, cell.method, cell.seed, out, progress=True,
                                     tracking=tracking, processes=cell.processes))
                progress.cell_done(cell, done[-1])
            return done
        specs = list({id(cell.spec): cell.spec for cell in todo}.values())
        engine = _Pool(workers) if executor == "pool" else _Ray(specs, workers, address, todo[0].processes)
        # Cells are handed out one per free slot, not queued up front, so that a
        # Ctrl-C leaves nothing queued that would start after it.
        queue = iter(todo)
        running = {engine.submit(cell, out, tracking): cell for cell in islice(queue, engine.slots)}
        try:
            while running:
                finished_now = engine.wait(set(running), timeout=2.0)
                for handle in finished_now:
                    cell = running.pop(handle)
                    done.append(engine.result(handle))
                    progress.cell_done(cell, done[-1])
                for cell in islice(queue, len(finished_now)):
                    running[engine.submit(cell, out, tracking)] = cell
                status, partial = _running_status(out, list(running.values()))
                progress.show(partial, status, list(running.values()))
        except KeyboardInterrupt:
            # The first Ctrl-C: no queued cell starts, the running ones finish and are kept; the second aborts.
            progress.close()
            print(f"seiko-bench: finishing {len(running)} running cell{'s' * (len(running) != 1)}; "
                  "Ctrl-C again to abort", file=sys.stderr, flush=True)
            try:
                while running:
                    for handle in engine.wait(set(running), timeout=2.0):
                        cell = running.pop(handle)
                        done.append(engine.result(handle))
                        value_line(cell, done[-1])
                engine.close()
            except KeyboardInterrupt:
                engine.close(abort=True)
                raise
            raise Interrupted(done) from None
        except Stopped:
            engine.close(abort=True)  # SIGTERM: stop now; the running cells resume from their checkpoints
            raise
        except BaseException:
            engine.close()  # cells already running finish and are kept
            raise
        engine.close()
    finally:
        progress.close()
    return done
