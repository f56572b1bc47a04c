"""The cost of one round on each backend against a stored baseline (marked `bench`:
`pytest benchmarks/test_backend_costs.py -m bench --benchmark-enable`, with
`--benchmark-json FILE` to keep every figure; `SEIKO_UPDATE_BASELINE=1`
rewrites the baseline from the run). Each workload runs once, in a fresh process
(`benchmarks.experiments.backend_costs`: a peak resident set is a process's
lifetime maximum), timed by pytest-benchmark with the workload's own figures in its
`extra_info`. Its round time, as a ratio to
the reference workload measured beside it, may be at most `TIME_TOLERANCE`
times the baseline's, and its peak resident memory at most `MEMORY_TOLERANCE`
times: three runs of the same code on a quiet machine differed by up to 26% in
that ratio, and Greedy's Stable Diffusion round by 28% in peak RSS (1,341 or
about 1,700 MB, two levels), so both tolerances sit above that noise and far
below the regressions they guard against (the DDPO epoch's 6.3x memory cut)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from benchmarks.experiments.backend_costs import WORKLOADS, measure_in_fresh_process

BASELINE = Path(__file__).with_name("backend_costs_baseline.json")
TIME_TOLERANCE = 1.5
MEMORY_TOLERANCE = 1.4


@pytest.fixture(scope="module")
def baseline():
    stored = json.loads(BASELINE.read_text()) if BASELINE.exists() else {}
    measured: dict[str, dict[str, float]] = {}
    yield stored, measured
    if os.environ.get("SEIKO_UPDATE_BASELINE") == "1" and measured:
        BASELINE.write_text(json.dumps({**stored, **measured}, indent=2, sort_keys=True) + "\n")


@pytest.mark.bench
@pytest.mark.parametrize("name", list(WORKLOADS))
def test_a_round_costs_no_more_than_its_baseline(name, baseline, benchmark):
    if name.startswith("sd-"):
        pytest.importorskip("peft", reason="the Stable Diffusion workloads need the sd extra")
    stored, measured = baseline
    row = benchmark.pedantic(measure_in_fresh_process, args=(name,), rounds=1, iterations=1)
    benchmark.extra_info.update(row)
    measured[name] = {"round_ratio": round(row["round_ratio"], 2), "peak_rss_mb": round(row["peak_rss_mb"])}
    if os.environ.get("SEIKO_UPDATE_BASELINE") == "1":
        return
    assert name in stored, f"no stored baseline for {name}: run with SEIKO_UPDATE_BASELINE=1 on a quiet machine"
    assert row["round_ratio"] <= TIME_TOLERANCE * stored[name]["round_ratio"], (
        f"{name}: a round took {row['round_ratio']:.1f}x the reference, baseline {stored[name]['round_ratio']:.1f}x")
    assert row["peak_rss_mb"] <= MEMORY_TOLERANCE * stored[name]["peak_rss_mb"], (
        f"{name}: peak RSS {row['peak_rss_mb']:.0f} MB, baseline {stored[name]['peak_rss_mb']:.0f} MB")
