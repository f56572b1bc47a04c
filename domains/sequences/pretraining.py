"""Pretraining the masked diffusion model: one loop for the built-in tasks and a user's data.

The training loop is `domains.diffusion.pretraining.fit_denoiser` (AdamW,
one-cycle schedule, gradient clip 1.0) over batches from any source: the Ehrlich tasks draw fresh Markov-process
samples (`domains.sequences.tasks.pretrain`), `pretrain_on_data` draws from a
user's file of sequences (what `seiko-bench pretrain --data FILE` runs) and
reports how close the model's samples come to the data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from domains.diffusion.pretraining import fit_denoiser
from domains.sequences.data import encode_sequences, read_sequences
from domains.sequences.mdlm import MaskedDiffusionModel, MDLMConfig

# Sized for two CPU cores. Sampling reveals one position per step (T = L) and
# truncates at min-p 0.1: on the protein task that took the same weights from
# 40% to 97% feasible samples (see domains/sequences/mdlm.py).
MODEL = dict(d_model=64, n_layers=2, n_heads=4, min_p=0.1)


def new_model(cfg: MDLMConfig, seed: int) -> MaskedDiffusionModel:
    """A freshly initialised model; the initial weights depend on `seed` alone."""
    torch.manual_seed(seed)
    return MaskedDiffusionModel(cfg)


def sample_designs(model: MaskedDiffusionModel, n: int, generator: torch.Generator, chunk: int = 250) -> list[str]:
    """n designs from the model, drawn `chunk` at a time."""
    return [d for i in range(0, n, chunk) for d in model.sample(min(chunk, n - i), generator=generator).designs]


def _unigrams(tokens: torch.Tensor, v: int) -> torch.Tensor:
    """(L, v) letter frequencies at each position of (N, L) tokens."""
    counts = torch.zeros(tokens.shape[1], v, dtype=torch.float64)
    counts.scatter_add_(1, tokens.T, torch.ones(tokens.T.shape, dtype=torch.float64))
    return counts / tokens.shape[0]


def _bigrams(tokens: torch.Tensor, v: int) -> torch.Tensor:
    """(L-1, v*v) frequencies of each letter pair at each pair of neighbouring positions."""
    return _unigrams(tokens[:, :-1] * v + tokens[:, 1:], v * v)


def _tv(p: torch.Tensor, q: torch.Tensor) -> float | None:
    """Total-variation distance between matching rows of p and q, averaged over rows."""
    return float(0.5 * (p - q).abs().sum(-1).mean()) if len(p) else None


def distribution_distances(samples: torch.Tensor, data: torch.Tensor, v: int) -> dict[str, float | None]:
    """Mean per-position unigram and per-neighbour-pair bigram total-variation
    distances (0: same frequencies, 1: disjoint) between two (N, L) token sets;
    the bigram distance is None for length-1 sequences."""
    return {"unigram_tv": _tv(_unigrams(samples, v), _unigrams(data, v)),
            "bigram_tv": _tv(_bigrams(samples, v), _bigrams(data, v))}


def pretrain_on_data(
    path: str | Path,
    alphabet: str,
    out: str | Path,
    *,
    steps: int = 2500,
    batch_size: int = 256,
    lr: float = 1e-3,
    seed: int = 0,
    num_steps: int | None = None,
    d_model: int = MODEL["d_model"],
    n_layers: int = MODEL["n_layers"],
    n_heads: int = MODEL["n_heads"],
    report_samples: int = 1000,
) -> dict[str, Any]:
    """Pretrain a masked diffusion model on a user's sequences, save it, report on it.

    `path` is a FASTA or one-per-line file of sequences of one length over
    `alphabet` (see `domains.sequences.data`); the model's length is theirs.
    Each step's batch is drawn with replacement from the data. The checkpoint is
    written to `out` (safetensors, conventionally `*.safetensors`) with a JSON
    beside it (same name, `.json`) holding the model's config and, under
    `metadata.pretrain`, the report returned here (`num_steps` None: one per position):
      sequences, distinct_sequences, length, alphabet: the data;
      final_nelbo: the last training step's NELBO (nats per position);
      over `report_samples` model samples: memorised_rate (the fraction found
      verbatim in the data), distinct_sample_rate, unigram_tv and bigram_tv
      (`distribution_distances` to the data), and reference_tv: the same
      distances for as many sequences drawn from the data itself (what a perfect
      model would score at this sample size) and for uniform random strings.
    The data is read and `out` checked before any training.
    """
    if report_samples < 1:
        raise ValueError(f"report_samples must be at least 1, got {report_samples}")
    path, out = Path(path), Path(out)
    sequences = read_sequences(path, alphabet)
    if out.is_dir():
        raise ValueError(f"{out}: is a folder; give the checkpoint's file name, e.g. {out / 'model.safetensors'}")
    if path.resolve() in (out.resolve(), out.with_suffix(".json").resolve()):
        raise ValueError(f"{out}: saving there would overwrite the data file {path}; choose another --out")
    data = encode_sequences(sequences, alphabet)
    n, length = data.shape
    v = len(alphabet)
    cfg = MDLMConfig(alphabet=alphabet, length=length, num_steps=num_steps or length, d_model=d_model,
                     n_layers=n_layers, n_heads=n_heads, min_p=MODEL["min_p"])
    model = new_model(cfg, seed)
    model, final_nelbo = fit_denoiser(
        model, lambda b, g: data[torch.randint(n, (b,), generator=g)],
        steps=steps, batch_size=batch_size, lr=lr, seed=seed, desc=f"pretrain {path.name}",
    )
    designs = sample_designs(model, report_samples, torch.Generator().manual_seed(seed + 2))
    samples = encode_sequences(designs, alphabet)
    known = set(sequences)
    reference_gen = torch.Generator().manual_seed(seed + 3)
    resample = data[torch.randint(n, (report_samples,), generator=reference_gen)]
    uniform = torch.randint(v, (report_samples, length), generator=reference_gen)
    report = {
        "data": str(path), "sequences": n, "distinct_sequences": len(known), "length": length, "alphabet": alphabet,
        "steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed,
        "model": dict(num_steps=cfg.num_steps, d_model=d_model, n_layers=n_layers, n_heads=n_heads),
        "final_nelbo": final_nelbo, "samples": report_samples,
        "memorised_rate": sum(d in known for d in designs) / report_samples,
        "distinct_sample_rate": len(set(designs)) / report_samples,
        **distribution_distances(samples, data, v),
        "reference_tv": {"data_resample": distribution_distances(resample, data, v),
                         "uniform": distribution_distances(uniform, data, v)},
    }
    model.metadata = {"pretrain": report}
    model.save(out)
    return report
