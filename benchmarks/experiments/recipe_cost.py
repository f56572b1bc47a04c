"""What each method of a spec costs per cell, side by side: the cost half of a
recipe comparison (the quality half is the spec's own run on tuning seeds).

    python -m benchmarks.experiments.recipe_cost [--spec protein-cost] [--methods A B] [--pairs 3] [--rounds 128 256]

Each measurement is one cell of one of the spec's methods, run by `seiko-bench
run` in a fresh process on one worker (one torch thread, as every cell), with
the spec's settings but the rounds given here; the methods take turns (A B C A
B C ...), so that a machine's changing load falls on all of them alike. It
prints each method's median wall time and its ratio to the first method's:
ratios measured in one run are what compare, not the seconds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.spec import load_spec


def cell_seconds(spec: str, method: str, seed: int, rounds: list[int], out: Path) -> float:
    """The wall time a fresh `seiko-bench run` records for one cell (its own metrics.json)."""
    command = [sys.executable, "-m", "benchmarks.cli", "run", spec, "--out", str(out), "--workers", "1", "--no-report",
               "--set", f"methods=[{method}]", "--set", f"seeds=[{seed}]", "--set", f"rounds={rounds}"]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    (metrics,) = out.glob(f"{spec}/*/{method}/seed{seed}/metrics.json")
    return json.loads(metrics.read_text())["wall_s"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", default="protein-cost", help="a spec whose methods are the recipes to compare")
    parser.add_argument("--pairs", type=int, default=3, help="turns each method takes")
    parser.add_argument("--rounds", type=int, nargs="+", default=[128], help="the rounds of each measured cell")
    parser.add_argument("--methods", nargs="+", help="the spec's methods to compare, the first the baseline (all)")
    args = parser.parse_args(argv)
    spec = load_spec(args.spec)
    methods = args.methods or spec.methods
    unknown = sorted(set(methods) - set(spec.methods))
    if unknown:
        parser.error(f"spec {args.spec!r} does not run {', '.join(unknown)}; it runs {', '.join(spec.methods)}")
    seconds: dict[str, list[float]] = {m: [] for m in methods}
    with tempfile.TemporaryDirectory() as tmp:
        for turn in range(args.pairs):
            for method in methods:
                out = Path(tmp) / f"{turn}-{method}"
                seconds[method].append(cell_seconds(args.spec, method, spec.seeds[0], args.rounds, out))
                print(f"turn {turn + 1}/{args.pairs} {method}: {seconds[method][-1]:.1f} s", file=sys.stderr, flush=True)
    first = statistics.median(seconds[methods[0]])
    print(f"| method ({args.spec}, rounds {args.rounds}) | median s | runs | vs {methods[0]} |")
    print("|:--|--:|:--|--:|")
    for method, runs in seconds.items():
        median = statistics.median(runs)
        print(f"| {method} | {median:.1f} | {' / '.join(f'{s:.1f}' for s in runs)} | {median / first:.2f}x |")


if __name__ == "__main__":
    main()
