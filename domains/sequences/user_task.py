"""A benchmark task for a user's own sequence oracle and pretrained checkpoint.

A user's task factory is then a few lines:

    from domains.sequences.user_task import sequence_task

    def my_task():
        return sequence_task("my-assay", MyAssay(), "models/mine.safetensors", data="designs.fa")

where the checkpoint was made by
`seiko-bench pretrain --data designs.fa --alphabet ACGT --out models/mine.safetensors`
and `MyAssay` is a `domains.base.Oracle` over strings of that alphabet and length.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from domains.base import Oracle, Task
from domains.sequences.data import encode_sequences, read_sequences
from domains.sequences.featuriser import SequenceFeaturiser
from domains.sequences.mdlm import MaskedDiffusionModel, MDLMConfig
from domains.sequences.operators import StringOperators
from domains.sequences.tasks import DOMAIN

_ORACLE_PARTS = ("name", "floor", "optimum", "key")


def _missing(path: Path) -> FileNotFoundError:
    return FileNotFoundError(
        f"no pretrained checkpoint at {path} (with {path.with_suffix('.json').name} beside it); make it with "
        f"`seiko-bench pretrain --data FILE --alphabet LETTERS --out {path}`"
    )


def read_config(checkpoint: str | Path) -> MDLMConfig:
    """The model config of a checkpoint, from the JSON beside it (no weights are read)."""
    path = Path(checkpoint)
    meta_path = path.with_suffix(".json")
    if not path.is_file() or not meta_path.is_file():
        raise _missing(path)
    try:
        return MDLMConfig(**json.loads(meta_path.read_text())["config"])
    except (ValueError, KeyError, TypeError) as err:  # JSONDecodeError is a ValueError
        raise ValueError(f"{meta_path}: not the config of a masked diffusion model checkpoint ({err})") from None


def sequence_task(
    name: str,
    oracle: Oracle,
    checkpoint: str | Path,
    data: str | Path | None = None,
    description: str = "",
    charge_infeasible: bool = True,
    domain: str = DOMAIN,
) -> Task:
    """A `Task` whose model is the masked diffusion model saved at `checkpoint`.

    The alphabet and length come from the checkpoint's config; the oracle must
    score strings of that alphabet and length. Featuriser: one-hot per position
    plus bigram counts; operators (for the genetic algorithm): point mutation
    and uniform crossover. With `data` (the file the model was pretrained on, or
    any FASTA / one-per-line file of such sequences), the task's
    `pretraining_data` draws from it with replacement, for methods that regularise
    with the pretraining objective (large-scale RL); without it they cannot run
    on this task and say so before any query. The checkpoint's config and the
    data are read here, so a missing or mismatched file fails now; the weights
    are read by each `load_model()` call.
    """
    missing = [part for part in _ORACLE_PARTS if not hasattr(oracle, part)] + ([] if callable(oracle) else ["__call__"])
    if missing:
        raise ValueError(f"the oracle of task {name!r} is not a domains.base.Oracle: it lacks {', '.join(missing)}")
    path = Path(checkpoint)
    cfg = read_config(path)
    alphabet, length = cfg.alphabet, cfg.length

    def load_model() -> MaskedDiffusionModel:
        if not path.is_file() or not path.with_suffix(".json").is_file():
            raise _missing(path)
        return MaskedDiffusionModel.load(path)

    pretraining_data = None
    if data is not None:
        sequences = read_sequences(data, alphabet)
        if len(sequences[0]) != length:
            raise ValueError(f"{data}: the sequences have length {len(sequences[0])}, but the model at {path} "
                             f"has length {length}; give the file it was pretrained on")
        tokens = encode_sequences(sequences, alphabet)

        def pretraining_data(n: int, generator: torch.Generator) -> tuple[torch.Tensor, None]:
            return tokens[torch.randint(len(tokens), (n,), generator=generator)], None

    info: dict[str, Any] = {"oracle": oracle.name, "checkpoint": str(path), "alphabet": alphabet, "length": length,
                            "data": None if data is None else str(data)}
    return Task(
        name=name,
        domain=domain,
        description=description or f"{oracle.name} on sequences of length {length} over {alphabet!r}",
        oracle=oracle,
        featuriser=SequenceFeaturiser(alphabet, length),
        load_model=load_model,
        charge_infeasible=charge_infeasible,
        operators=StringOperators(alphabet, length),
        pretraining_data=pretraining_data,
        info=info,
    )
