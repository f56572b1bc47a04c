"""`seiko-bench`: list, run, status, report, export, sample, pretrain.

User errors (a malformed spec, an unknown name, an oracle that raises, a spent
budget, a missing checkpoint) end with one line on stderr and exit status 2;
finished cells are never touched by a failing run, so a rerun resumes.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path

import torch

from algorithms.budgeted_oracle import BudgetExhausted, OracleError
from algorithms.registry import METHODS
from benchmarks.lock import FolderLocked, results_lock
from benchmarks.runner import EXECUTORS, Stopped, run_specs
from benchmarks.spec import DEFAULT_SUITE, SPECS, SUITES, Spec, expand_suites, load_spec
from benchmarks.tracking import TRACKERS, Tracking
from domains.base import CapabilityError
from domains.tasks import list_tasks, pretrain
from reports import write_report

USER_ERRORS = (ValueError, OracleError, BudgetExhausted, FileNotFoundError, CapabilityError, FolderLocked)


def _list(args: argparse.Namespace) -> None:
    print("tasks (domain):")
    for name, domain in sorted(list_tasks().items()):
        print(f"  {name}  ({domain})")
    print("methods:")
    for name, entry in METHODS.items():
        print(f"  {name:16s} {entry.summary}")
    print("specs:")
    for path in sorted(SPECS.glob("*.yaml")):
        print(f"  {path.stem}")
    print("suites (spec names that run several specs):")
    for name, specs in SUITES.items():
        print(f"  {name:16s} {' '.join(specs)}{'  (default)' if name == DEFAULT_SUITE else ''}")


def _writable_folder(out: Path) -> None:
    """Refuse, in one line, a results folder that is a file or cannot be written."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"--out {out}: cannot create the results folder ({err.strerror})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out}: the results folder is not writable")


def _run(args: argparse.Namespace) -> None:
    for name in ("workers", "processes"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ValueError(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.address is not None and args.executor != "ray":
        raise ValueError("--address names a Ray cluster; it goes with --executor ray")
    names = expand_suites(args.spec or [DEFAULT_SUITE])
    specs = [load_spec(s, args.set) for s in names]  # all validated before any cell runs
    if args.dry_run:
        return _dry_run(specs, args)
    _writable_folder(args.out)
    with results_lock(args.out):
        from benchmarks.estimate import plan

        workers = args.workers or max(1, (os.cpu_count() or 1) // args.processes)
        print(f"seiko-bench: {plan(specs, args.out, workers, args.rerun, args.processes)}", flush=True)
        tracking = None if args.log_with is None else Tracking(args.log_with, args.log_dir or args.out / "trackers")
        try:
            finished = run_specs(specs, args.out, workers=workers, rerun=args.rerun, tracking=tracking,
                                 executor=args.executor, address=args.address, processes=args.processes)
        except (KeyboardInterrupt, Stopped):
            if not args.no_report:
                _report_what_finished(args.out, specs)
            raise
        for name, cells in finished.items():
            print(f"{name}: {len(cells)} cell{'s' * (len(cells) != 1)} finished under {args.out / name}")
        if not args.no_report:
            _write_report(args.out, specs)


def _dry_run(specs: list[Spec], args: argparse.Namespace) -> None:
    """What `run` would do, and what it would cost, with nothing run or written."""
    from benchmarks.estimate import machine_factor, plan
    from benchmarks.experiments.yardstick import reference_seconds as yardstick_seconds
    from benchmarks.status import describe, spec_states

    workers = args.workers or max(1, (os.cpu_count() or 1) // args.processes)
    torch.set_num_threads(1)  # as each cell runs, and as the reference machine's yardstick was timed
    factor = machine_factor(min(yardstick_seconds() for _ in range(3)))  # a warm process's best, as stored
    print(f"seiko-bench: dry run: {plan(specs, args.out, workers, args.rerun, args.processes, factor)}")
    for spec in specs:
        print("\n".join(describe(spec, spec_states(spec, args.out), workers)))
    print("Per-spec times are the committed reference run's; the progress bar of a real run corrects them by "
          "this machine's measured speed.")


def _report_what_finished(out: Path, specs: list[Spec]) -> None:
    """After a stopped run: the report of the cells that finished, so that nobody
    has to know to run `seiko-bench report`; a further Ctrl-C here skips it."""
    try:
        _write_report(out, specs)
    except FileNotFoundError:
        print("seiko-bench: stopped before any cell finished; no report written", file=sys.stderr)
    except KeyboardInterrupt:
        print("seiko-bench: report skipped; `seiko-bench report` writes it", file=sys.stderr)
    else:
        print("seiko-bench: stopped; the report above covers the cells finished so far", file=sys.stderr)


def _stop(signum: int, frame: object) -> None:
    raise Stopped


def _report(args: argparse.Namespace) -> None:
    if not args.out.is_dir():
        raise FileNotFoundError(f"no results folder at {args.out}")
    with results_lock(args.out):
        _write_report(args.out)


def _write_report(out: Path, specs: list[Spec] = ()) -> None:
    from benchmarks.status import report_labels

    written = write_report(out, report_labels(out, specs), first=[spec.name for spec in specs])
    print(f"report: {len(written)} files written; index at {out / 'README.md'} and {out / 'index.html'}")


def _status(args: argparse.Namespace) -> int:
    from benchmarks.status import CURRENT, EXTRA, describe, find_spec, problems, spec_folders, spec_states

    if not args.out.is_dir():
        raise FileNotFoundError(f"no results folder at {args.out}")
    names = expand_suites(args.spec) if args.spec else spec_folders(args.out)
    if not names:
        raise FileNotFoundError(f"no cells under {args.out}: name a spec (`seiko-bench status protein`) or run one")
    specs = [load_spec(name, args.set) if args.spec else find_spec(name, args.out, args.set) for name in names]
    workers = args.workers or os.cpu_count() or 1
    behind = 0
    for spec in specs:
        states = spec_states(spec, args.out)
        print("\n".join(describe(spec, states, workers)), flush=True)
        for line in problems(states):
            print(f"seiko-bench: {line}", file=sys.stderr)
        behind += sum(s.state not in (CURRENT, EXTRA) for s in states)
    if args.strict and behind:
        print(f"seiko-bench: status --strict: {behind} cell{'s are' if behind != 1 else ' is'} stale, missing or "
              "broken; regenerate before "
              "quoting these results as a release", file=sys.stderr)
        return 1
    return 0


def _export(args: argparse.Namespace) -> None:
    from reports.export import export

    written = export(args.results, args.out)
    print(f"export: {', '.join(str(p) for p in written)}")


def _pretrain(args: argparse.Namespace) -> None:
    """Pretraining runs with `--threads` torch threads (one by default, as every cell
    does): torch's default of one per core spins against any other work on the
    machine and made a 13-minute pretraining an hour or more on two busy cores."""
    if args.threads < 1:
        raise ValueError(f"--threads must be at least 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    if args.data is not None and args.task is not None:  # a shipped model's architecture on the user's data
        if list_tasks().get(args.task) != "molecules" or args.alphabet is not None or args.out is None:
            raise ValueError("--data with a task name pretrains the molecule model on your SMILES (--out PATH, no "
                             "--alphabet); for sequences give --data FILE --alphabet LETTERS --out PATH and no task")
        kwargs = {} if args.steps is None else {"steps": args.steps}
        report = pretrain(args.task, data=args.data, out=args.out, seed=args.seed, **kwargs)
    elif args.data is not None:  # the user's own designs: a new alphabet or length needs its own model
        if args.alphabet is None or args.out is None:
            raise ValueError("pretraining on your own data takes --data FILE --alphabet LETTERS --out PATH "
                             "and no task name")
        from domains.sequences.pretraining import pretrain_on_data

        kwargs = {} if args.steps is None else {"steps": args.steps}
        report = pretrain_on_data(args.data, args.alphabet, args.out, seed=args.seed, **kwargs)
    else:
        if args.task is None:
            raise ValueError("name a task to pretrain (`seiko-bench list`), or give --data FILE --alphabet LETTERS "
                             "--out PATH to pretrain the sequence model on your own designs")
        if args.alphabet is not None:
            raise ValueError("--alphabet goes with --data; a shipped task has its own alphabet")
        kwargs = {k: v for k, v in (("steps", args.steps), ("out", args.out)) if v is not None}
        report = pretrain(args.task, seed=args.seed, **kwargs)
    print(json.dumps(report, indent=2))


def _sample(args: argparse.Namespace) -> None:
    """What a task's pretrained model makes of its oracle before any fine-tuning:
    the first check of one's own task (is the model feasible enough to start
    from, is the reward spread wide enough to learn from?), at no budget."""
    if args.n < 1:
        raise ValueError(f"-n must be at least 1, got {args.n}")
    from algorithms.budgeted_oracle import ask_oracle
    from domains.tasks import task_ref

    torch.set_num_threads(args.threads)
    task = task_ref(args.task, str(Path.cwd())).build()
    model = task.load_model()
    designs = model.sample(args.n, generator=torch.Generator().manual_seed(args.seed)).designs
    reward, feasible, _ = ask_oracle(task.oracle, designs)
    kept = reward[feasible]
    summary = {"task": task.name, "samples": args.n, "feasible_fraction": float(feasible.mean()),
               "distinct": len({task.oracle.key(d) for d in designs})}
    if len(kept):
        summary |= {"reward_mean": float(kept.mean()), "reward_std": float(kept.std()),
                    "reward_max": float(kept.max()), "optimum": task.oracle.optimum}
    reasons = getattr(task.oracle, "reasons", None)
    if reasons is not None and not feasible.all():
        refused = [r for r in reasons(designs) if r is not None]
        summary["infeasible_because"] = {r: refused.count(r) for r in sorted(set(refused))[:10]}
    print(json.dumps(summary, indent=2))
    best = sorted((r, str(d)) for r, d, ok in zip(reward, designs, feasible) if ok)[::-1][:args.show]
    for r, design in best:
        print(f"{r:.4f}  {design}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="seiko-bench", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="tasks, methods and shipped specs").set_defaults(func=_list)

    run = sub.add_parser("run", help="run every cell of a spec (resumable), then write the report")
    run.add_argument("spec", nargs="*", help="spec or suite names, or YAML paths (default: the quick suite, "
                                                f"{' '.join(SUITES[DEFAULT_SUITE])}; the full one: reference)")
    run.add_argument("--out", type=Path, default=Path("results"), help="results folder (default: results/)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a spec field, YAML value: --set seeds=[0] --set config.greedy.kl_weight=0.1")
    run.add_argument("--workers", type=int, default=None,
                     help="parallel cells (default: one per core, or per --processes cores)")
    run.add_argument("--processes", type=int, default=1,
                     help="processes each cell runs data-parallel on (default 1); a cell's numbers depend on the "
                          "spec's shards (default: as many as processes), not on this")
    run.add_argument("--executor", choices=EXECUTORS, default="pool",
                     help="where cells run: a pool of processes here (default), or Ray tasks (pip install -e '.[ray]')")
    run.add_argument("--address", default=None,
                     help="with --executor ray: a running Ray cluster (e.g. ray://head:10001 or auto); "
                          "default: a local Ray on --workers CPUs")
    run.add_argument("--rerun", action="store_true", help="rerun cells that are already finished")
    run.add_argument("--dry-run", action="store_true",
                     help="say which cells would run and the time they should take, and run nothing")
    run.add_argument("--no-report", action="store_true", help="skip writing the report")
    run.add_argument("--log-with", choices=TRACKERS, default=None,
                     help="also log every round to TensorBoard or Weights & Biases (accelerate's trackers; "
                          "pip install -e '.[track]')")
    run.add_argument("--log-dir", type=Path, default=None,
                     help="where the tracker writes (default: <out>/trackers)")
    run.set_defaults(func=_run)

    status = sub.add_parser("status", help="which cells the current code made, which are stale or missing, and "
                                           "what regenerating them costs")
    status.add_argument("spec", nargs="*", help="spec or suite names, or YAML paths (default: every spec folder "
                                                "under --out, each checked against the spec its manifest records)")
    status.add_argument("--out", type=Path, default=Path("results"), help="results folder (default: results/)")
    status.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="the overrides the cells were run with, as given to `seiko-bench run`")
    status.add_argument("--workers", type=int, default=None, help="workers the regeneration estimate assumes "
                                                                  "(default: one per core)")
    status.add_argument("--strict", action="store_true",
                        help="exit 1 when any cell is stale, missing or broken: the check before a release")
    status.set_defaults(func=_status)

    report = sub.add_parser("report", help="leaderboards and curves from a results folder")
    report.add_argument("out", nargs="?", type=Path, default=Path("results"), help="results folder (default: results/)")
    report.set_defaults(func=_report)

    exp = sub.add_parser("export", help="one table of every cell (cells.parquet, cells.csv) and of every query "
                                        "(queries.parquet), for pandas")
    exp.add_argument("results", nargs="?", type=Path, default=Path("results"), help="results folder (default: results/)")
    exp.add_argument("--out", type=Path, default=None, help="where to write the tables (default: the results folder)")
    exp.set_defaults(func=_export)

    smp = sub.add_parser("sample", help="sample a task's pretrained model and score it with the task's oracle "
                                        "(feasibility, reward spread, best designs): no budget spent")
    smp.add_argument("task", help="a task name (`seiko-bench list`) or your factory, my_tasks.py:make_task")
    smp.add_argument("-n", type=int, default=256, help="samples (default 256)")
    smp.add_argument("--seed", type=int, default=0, help="sampling seed")
    smp.add_argument("--show", type=int, default=5, help="best feasible designs to print (default 5)")
    smp.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    smp.set_defaults(func=_sample)

    pre = sub.add_parser("pretrain", help="pretrain a task's diffusion model, or the sequence model on your own "
                                          "designs, and save its checkpoint")
    pre.add_argument("task", nargs="?", help="task name (see `seiko-bench list`); omit with --data")
    pre.add_argument("--data", type=Path, help="your designs: FASTA, or one sequence per line, all of one length; "
                                               "with a molecule task, a SMILES file (.smi, .csv with a SMILES column)")
    pre.add_argument("--alphabet", help="the letters of your designs, e.g. ACGT (with --data)")
    pre.add_argument("--out", type=Path, help="checkpoint to write (.safetensors; default for a task: its shipped one)")
    pre.add_argument("--steps", type=int, default=None, help="training steps (default: the task's, as shipped)")
    pre.add_argument("--seed", type=int, default=0, help="training seed")
    pre.add_argument("--threads", type=int, default=1,
                     help="torch threads (default 1, as each cell; raise it on an idle machine with many cores)")
    pre.set_defaults(func=_pretrain)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # SIGTERM stops a run as a second Ctrl-C does, and still leaves the report of what finished.
    previous = signal.signal(signal.SIGTERM, _stop) if threading.current_thread() is threading.main_thread() else None
    try:
        code = args.func(args)
    except BrokenPipeError:  # `seiko-bench list | head`: the reader left, which is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except USER_ERRORS as err:
        print(f"seiko-bench: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a results folder that became unwritable, a full disk: the path and the reason
        print(f"seiko-bench: error: {err.filename or ''}: {err.strerror or err}; finished cells are kept",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("seiko-bench: interrupted; finished cells are kept, rerun the same command to resume", file=sys.stderr)
        return 130
    except Stopped:
        print("seiko-bench: stopped (SIGTERM); finished cells are kept, rerun the same command to resume",
              file=sys.stderr)
        return 143
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
