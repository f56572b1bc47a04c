"""The DNA tasks: design a yeast promoter sequence that a transcription factor
binds, and that a synthesis provider accepts.

Every task shares one checkpoint: the masked diffusion model of the sequence
domain (`domains/sequences/mdlm.py`) over ACGT, pretrained on the 64 bases
upstream of each coding sequence of S. cerevisiae that pass the synthesis
rules (`data.py`, `oracles.SynthesisRules`). Those sequences ship beside
the checkpoint (`yeast-promoters-l64.txt.gz`), so that large-scale RL's
pretraining term needs no network. Tasks differ in their oracle
(`oracles.BindingOracle`). Reward models read strand-pooled k-mer counts
(`featuriser.py`).

- `gcn4-occupancy`: GCN4 (MA0303.3), the master regulator of amino-acid
  biosynthesis, as occupancy: a native promoter often holds one near-perfect
  site by chance (GCN4's best site on yeast promoters: median relative score
  0.77), so a best-site reward leaves little headroom, while occupancy
  rewards a strong site and more of them.
- `pho4-not-cbf1`: PHO4's best site minus CBF1's (relative scores). Both
  factors bind the E-box CACGTG in yeast promoters and are told apart by its
  flanks, so a design must place a PHO4 site that CBF1 binds poorly: the
  textbook case of specificity in yeast (a perfect PHO4 site scores 0.91 of
  CBF1's best). Best sites, not occupancy: PHO4's occupancy is 0 on most
  promoters, which left the reward to CBF1 alone and the value model
  blind (held-out Spearman 0.15-0.24 against 0.32-0.36).

A spec may set a task's parameters (`factor`, `aggregate`, `off_targets`,
`off_weight`, `gc_min`, `gc_max`, `max_homopolymer`) to score another JASPAR
factor on the same model: `{task: gcn4-occupancy, name: rap1-occupancy,
params: {factor: RAP1}}`.
"""

from __future__ import annotations

import dataclasses
import gzip
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from domains.base import Task
from domains.dna.data import GENOME_WHEEL, yeast_promoters
from domains.dna.featuriser import KmerFeaturiser
from domains.dna.logo import design_logos
from domains.dna.oracles import ALPHABET, JASPAR_RELEASE, BindingOracle, SynthesisRules
from domains.sequences.alphabet import encode
from domains.sequences.mdlm import MaskedDiffusionModel
from domains.sequences.pretraining import pretrain_on_data, sample_designs
from domains.sequences.user_task import sequence_task
from domains.wheels import cache_dir

DOMAIN = "dna"
LENGTH = 64
CHECKPOINTS = Path(__file__).parent / "checkpoints"
CHECKPOINT = CHECKPOINTS / f"yeast-promoters-l{LENGTH}.safetensors"
DATA = CHECKPOINTS / f"yeast-promoters-l{LENGTH}.txt.gz"

TASKS: dict[str, dict[str, Any]] = {
    "gcn4-occupancy": dict(factor="GCN4", aggregate="occupancy"),
    "pho4-not-cbf1": dict(factor="PHO4", aggregate="best", off_targets=("CBF1",)),
}
ORACLE_PARAMS = ("factor", "aggregate", "off_targets", "off_weight")
RULE_PARAMS = tuple(f.name for f in dataclasses.fields(SynthesisRules) if f.name != "sites")

TRAINING_RULES = SynthesisRules(gc_min=0.33, gc_max=0.67, max_homopolymer=5)
"""The pretraining windows pass the synthesis rules with a margin (GC 0.33-0.67, runs of at most
5): a model matches its data's local statistics but not the rules' long-range parts, so its
samples stray a little beyond the data; a margin keeps the strays feasible (docs/tasks.md, 'DNA')."""

# Sized for two CPU cores; `seiko-bench pretrain gcn4-occupancy` with these made the shipped checkpoint.
PRETRAIN: dict[str, Any] = dict(steps=2500, batch_size=256, lr=1e-3)
WINDOWS = 4
"""Promoter windows per gene (`data.yeast_promoters`): the 256 bases upstream of each start codon."""
NUM_STEPS = 16
"""Reverse steps of the shipped model, four positions revealed per step: as feasible as one per
step (0.90 either way; the README's table) at a quarter of the cost of sampling and fine-tuning."""


def _missing() -> FileNotFoundError:
    return FileNotFoundError(f"no pretrained DNA model at {CHECKPOINT}; run `seiko-bench pretrain {next(iter(TASKS))}`")


def promoters() -> list[str]:
    """The shipped pretraining sequences."""
    if not DATA.exists():
        raise _missing()
    return gzip.decompress(DATA.read_bytes()).decode().split()


@cache
def training_tokens() -> torch.Tensor:
    """The shipped windows encoded, once per process: large-scale RL asks for
    pretraining data every round (decoding all of them took 92 ms a call)."""
    return encode(promoters(), ALPHABET, LENGTH)


def oracle(name: str, **params: Any) -> BindingOracle:
    """Task `name`'s oracle; `params` override its factor and synthesis rules."""
    unknown = set(params) - set(ORACLE_PARAMS) - set(RULE_PARAMS)
    if unknown:
        raise ValueError(f"DNA task {name!r} takes the parameters {', '.join(ORACLE_PARAMS + RULE_PARAMS)}; "
                         f"got {', '.join(sorted(unknown))}")
    settings = {**TASKS[name], **{k: v for k, v in params.items() if k in ORACLE_PARAMS}}
    if isinstance(settings.get("off_targets"), str):
        settings["off_targets"] = (settings["off_targets"],)
    rules = SynthesisRules(**{k: v for k, v in params.items() if k in RULE_PARAMS})
    return BindingOracle(**settings, rules=rules, length=LENGTH)


def build(name: str, **params: Any) -> Task:
    """The task `name`, its oracle changed by the spec's parameters (module docstring)."""
    binding = oracle(name, **params)
    if not CHECKPOINT.exists():
        raise _missing()

    def pretraining_data(n: int, generator: torch.Generator) -> tuple[torch.Tensor, None]:
        tokens = training_tokens()
        return tokens[torch.randint(len(tokens), (n,), generator=generator)], None

    rules = binding.rules
    off = "".join(f" minus {s.factor} ({s.matrix_id})'s best site x {binding.off_weight:g}" for s in binding.off)
    description = (f"{binding.site.factor} ({binding.site.matrix_id}, {JASPAR_RELEASE}) {binding.aggregate}{off} "
                   f"on {LENGTH}-base yeast promoters; synthesisable: GC {rules.gc_min:g}-{rules.gc_max:g}, "
                   f"runs <= {rules.max_homopolymer}, no {'/'.join(e for e, _ in rules.sites)} site")
    def render(designs: Sequence[str], labels: Sequence[str] = ()) -> np.ndarray:
        feasible = f", {sum(label != 'infeasible' for label in labels)} of {len(labels)} feasible" if labels else ""
        return design_logos(designs, f"held-out samples of the model{feasible}", binding.site)

    def draw_keys(keys: Sequence[str], labels: Sequence[str]) -> np.ndarray:  # a DNA design's key is itself
        rewards = f", rewards {labels[0]} to {labels[-1]}" if labels else ""
        return design_logos(keys, f"the {len(keys)} best feasible designs measured{rewards}", binding.site)

    task = sequence_task(name, binding, CHECKPOINT, description=description, domain=DOMAIN)
    return dataclasses.replace(
        task, featuriser=KmerFeaturiser(LENGTH), pretraining_data=pretraining_data, render=render, draw_keys=draw_keys,
        info={**task.info, "factor": binding.site.matrix_id, "aggregate": binding.aggregate,
              "off_targets": [s.matrix_id for s in binding.off], "off_weight": binding.off_weight,
              "rules": dataclasses.asdict(rules), "jaspar": JASPAR_RELEASE, "data": DATA.name},
    )


def _quantiles(values: np.ndarray) -> dict[str, float]:
    return {"mean": float(values.mean()), **{f"q{q:g}": float(np.quantile(values, q)) for q in (0.5, 0.9, 0.99)},
            "max": float(values.max())}


def score_report(designs: list[str], rules: SynthesisRules, oracles: dict[str, Callable]) -> dict[str, Any]:
    """Feasibility (with the count of each failed rule) and every task's reward
    distribution over the feasible designs."""
    problems = [rules.problem(d) for d in designs]
    failed: dict[str, int] = {}
    for problem in problems:
        if problem is not None:
            rule = problem.split()[0]
            failed[rule] = failed.get(rule, 0) + 1
    feasible = [d for d, p in zip(designs, problems) if p is None]
    return {"n": len(designs), "feasible_rate": len(feasible) / len(designs), "failed_rules": failed,
            "reward": {name: _quantiles(np.asarray(o(feasible).reward)) for name, o in oracles.items()}
            if feasible else {}}


def pretrain(name: str, *, steps: int = PRETRAIN["steps"], seed: int = 0, out: Path | None = None,
             report_samples: int = 1000, **kwargs: Any) -> dict[str, Any]:
    """Pretrain the shared model on the yeast promoter windows that pass
    `TRAINING_RULES` (read out of the genome wheel into the cache), save it
    with those sequences beside it, and report feasibility and each task's reward distribution for the
    model's samples beside the data's. (A model of your own sequences:
    `seiko-bench pretrain --data FILE --alphabet ACGT --out PATH`.)"""
    if name not in TASKS:
        raise ValueError(f"unknown DNA task {name!r}")
    rules = SynthesisRules()
    out = Path(out or CHECKPOINT)
    sequences = [s for s in yeast_promoters(LENGTH, windows=WINDOWS) if TRAINING_RULES.problem(s) is None]
    plain = cache_dir() / "dna" / f"{out.stem}.txt"  # what pretrain_on_data reads
    plain.parent.mkdir(parents=True, exist_ok=True)
    plain.write_text("\n".join(sequences) + "\n")
    settings = {**PRETRAIN, "steps": steps, "num_steps": NUM_STEPS, **kwargs}
    report = pretrain_on_data(plain, ALPHABET, out, seed=seed, report_samples=report_samples, **settings)
    model = MaskedDiffusionModel.load(out)
    designs = sample_designs(model, report_samples, torch.Generator().manual_seed(seed + 2))
    oracles = {task: oracle(task) for task in TASKS}
    report = {**report, "data": f"yeast promoters ({GENOME_WHEEL}): {WINDOWS} windows of {LENGTH} bases "
                                f"upstream of each CDS, passing {TRAINING_RULES}", "model_samples": score_report(designs, rules, oracles),
              "data_sequences": score_report(sequences, rules, oracles)}
    model.metadata = {"pretrain": report}
    model.save(out)
    shipped = out.with_name(DATA.name)  # beside the checkpoint: DATA for the shipped one
    tmp = shipped.with_suffix(".tmp")
    tmp.write_bytes(gzip.compress(("\n".join(sequences) + "\n").encode(), mtime=0))
    tmp.replace(shipped)
    return report
