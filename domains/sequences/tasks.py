"""The protein-like sequence tasks: Ehrlich functions with a pretrained MDLM.

Each task is one fixed Ehrlich function (its seed is part of the task) and a
masked diffusion model pretrained on samples of that function's Markov
process, so the pretrained model is feasible but knows nothing of the motifs.
A multi-reward task (name ending in `-sum`) shares its base task's function,
model and checkpoint, and scores the mean of the motifs' presences instead of
their product: a weighted sum of one oracle per motif (Zhang et al. 2024's
multi-reward setting), each of which is called for every measurement.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from domains.base import Task
from domains.composite import WeightedSum
from domains.diffusion.pretraining import fit_denoiser
from domains.sequences.ehrlich import Ehrlich, EhrlichConfig, MotifPresence
from domains.sequences.featuriser import SequenceFeaturiser
from domains.sequences.mdlm import MaskedDiffusionModel, MDLMConfig
from domains.sequences.operators import StringOperators
from domains.sequences.pretraining import MODEL, new_model, sample_designs

CHECKPOINTS = Path(__file__).parent / "checkpoints"
DOMAIN = "protein"

_BASE: dict[str, EhrlichConfig] = {
    # v=20 (amino acids), L=32, two motifs of four: the Markov process alone
    # reaches at most 0.375 in 2,000 samples, the optimum is 1.0.
    "ehrlich-l32-c2-k4": EhrlichConfig(num_states=20, dim=32, num_motifs=2, motif_length=4, seed=0),
    # The same Markov process (so the same pretrained model) with four motifs
    # of four that tile half the sequence, each within 8 positions: f is the
    # product of four presences, so the pretrained model's samples score 0.011
    # on average and 0.094 at most in 1,000, and the optimum 1.0 leaves no
    # slack. Longer sequences (holo-bench's L=128) cost 16 times as much per
    # sample at one revealed position a step; this keeps CPU cells in minutes.
    "ehrlich-l32-c4-k4": EhrlichConfig(num_states=20, dim=32, num_motifs=4, motif_length=4, seed=0),
}
MULTI_SUFFIX = "-sum"
TASKS: dict[str, EhrlichConfig] = {**_BASE, **{name + MULTI_SUFFIX: cfg for name, cfg in _BASE.items()}}


def checkpoint_task(name: str) -> str:
    """The task whose checkpoint `name` loads. The model learns the Markov process
    alone (alphabet, length, banned transitions, seed), never the motifs, so the
    tasks that differ only in their motifs, or in summing them, share the first
    such task's checkpoint."""
    process = _process(TASKS[name])
    return next(base for base, cfg in _BASE.items() if _process(cfg) == process)


def _process(cfg: EhrlichConfig) -> tuple[int, int, int, int]:
    return cfg.num_states, cfg.dim, cfg.num_banned, cfg.seed


def checkpoint_path(name: str) -> Path:
    return CHECKPOINTS / f"{checkpoint_task(name)}.safetensors"


def load_model(name: str, path: Path | None = None) -> MaskedDiffusionModel:
    path = path or checkpoint_path(name)
    if not path.exists():
        raise FileNotFoundError(f"no pretrained checkpoint for task {name!r} at {path}; run `seiko-bench pretrain {name}`")
    return MaskedDiffusionModel.load(path)


def build(name: str) -> Task:
    cfg = TASKS[name]
    ehrlich = Ehrlich(cfg)
    description = f"Ehrlich function v={cfg.num_states} L={cfg.dim} c={cfg.num_motifs} k={cfg.motif_length} q={cfg.q}"
    oracle = ehrlich
    if name.endswith(MULTI_SUFFIX):
        c = cfg.num_motifs  # the constructed optimum has every motif: the sum's optimum is 1 too
        oracle = WeightedSum([(MotifPresence(ehrlich, i), 1 / c) for i in range(c)], optimum=1.0)
        description = f"mean motif presence (sum of {c} oracles) under the {description}"
    return Task(
        name=name,
        domain=DOMAIN,
        description=description,
        oracle=oracle,
        featuriser=SequenceFeaturiser(ehrlich.alphabet, cfg.dim),
        load_model=lambda: load_model(name),
        operators=StringOperators(ehrlich.alphabet, cfg.dim),
        pretraining_data=lambda n, generator: (ehrlich.sample_markov(n, generator), None),
        info={"oracle": oracle.name, **asdict(cfg)},
    )


def pretrain(name: str, *, steps: int = 2500, batch_size: int = 256, lr: float = 1e-3, seed: int = 0,
             out: Path | None = None, report_samples: int = 1000) -> dict[str, Any]:
    """Fit the MDLM to fresh Markov-process samples every step, save it, and
    report what the benchmark starts from: feasibility and rewards of samples."""
    if checkpoint_task(name) != name:
        raise ValueError(f"task {name!r} uses the checkpoint of {checkpoint_task(name)!r}; pretrain that")
    oracle = Ehrlich(TASKS[name])
    model = new_model(MDLMConfig(alphabet=oracle.alphabet, length=oracle.config.dim, num_steps=oracle.config.dim,
                                 **MODEL), seed)
    model, final_nelbo = fit_denoiser(model, oracle.sample_markov, steps=steps, batch_size=batch_size, lr=lr,
                                       seed=seed, desc=f"pretrain {name}")
    designs = sample_designs(model, report_samples, torch.Generator().manual_seed(seed + 2))
    answer = oracle(designs)
    values = torch.tensor(answer.reward).nan_to_num(oracle.floor)
    report = {
        "task": name, "steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed, "final_nelbo": final_nelbo,
        "samples": report_samples, "feasible_rate": float(answer.feasible.mean()),
        "reward_mean": float(values.mean()), "reward_max": float(values.max()),
        "reward_quantiles": {q: float(values.quantile(q)) for q in (0.5, 0.9, 0.99)},
        "infeasible_counts_as": oracle.floor,
    }
    model.metadata = {"pretrain": report}
    model.save(out or checkpoint_path(name))
    return report
