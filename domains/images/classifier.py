"""The digits backend's feasibility classifier: a small CNN that says which digit
a 16x16 image shows, and how sure it is.

An image is feasible for the JPEG tasks when this classifier gives the digit it
was generated for enough probability (domains/images/jpeg.py). Fine-tuning for
compressibility pushes images towards blank ones and incompressibility towards
noise, so the classifier must not be confident on either: besides the usual
cross-entropy on the train digits it is trained with Outlier Exposure
(Hendrycks, Mazeika and Dietterich, ICLR 2019, "Deep Anomaly Detection with
Outlier Exposure", Eq. 1): synthetic non-digits (constant images, uniform and
salt-and-pepper dots, blurred noise, scattered ink without a shape) are
pushed towards the uniform prediction with weight `outlier_weight` (their
lambda = 0.5 for vision). This is a guard, not a proof: a fine-tuned model
may still find images that fool the classifier, which is what the feasible
rate and the samples in a report are there to show.

Input is a model tensor (N, 1, 16, 16) in [-1, 1], the diffusion model's own
representation, so the classifier can also be used with gradients.
`seiko-bench pretrain digit-classifier` runs `train_classifier` and writes
checkpoints/digit-classifier.safetensors with a JSON beside it.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from domains.images.digits import IMAGE_SIZE, NUM_CLASSES, from_pixels, split_digits

CHECKPOINT = Path(__file__).parent / "checkpoints" / "digit-classifier.safetensors"
"""Where `seiko-bench pretrain digit-classifier` writes the classifier (JSON beside it)."""
PRETRAIN_COMMAND = "seiko-bench pretrain digit-classifier"


@dataclass(frozen=True)
class ClassifierConfig:
    """Architecture of the CNN: three 3x3 conv layers, then one linear layer."""

    channels: tuple[int, int, int] = (16, 32, 64)
    """Output channels of the three conv layers; the first two are followed by 2x2 max-pooling
    (16 -> 8 -> 4 pixels), so the linear layer sees channels[2] * 4 * 4 features."""

    def __post_init__(self) -> None:
        if len(self.channels) != 3 or min(self.channels) < 1:
            raise ValueError(f"channels={self.channels} must be three positive widths")


@dataclass(frozen=True)
class TrainConfig:
    """How the classifier is trained; the defaults made the committed checkpoint."""

    epochs: int = 40
    """Passes over the 4,000 train digits."""
    batch_size: int = 128
    """Digits per step (plus half as many synthetic outliers)."""
    lr: float = 3e-3
    """Peak learning rate of AdamW under a one-cycle schedule."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    max_shift: int = 1
    """Train digits are translated by up to this many pixels each way (zero padding is
    background): MNIST centres digits by mass only, so a 1-pixel jitter at 16x16 (about
    2 MNIST pixels) is the variation a generated digit shows."""
    outlier_weight: float = 0.5
    """lambda of Outlier Exposure: weight of the cross-entropy to the uniform prediction on
    synthetic non-digits (0 turns it off)."""
    seed: int = 0
    """Seeds the weights' initialisation, the batch order, the shifts and the outliers."""
    split_seed: int = 0
    """Seed of `split_digits`: the classifier never sees that split's held-out digits."""

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 2:
            raise ValueError(f"epochs={self.epochs} must be >= 1 and batch_size={self.batch_size} >= 2")
        if not 0 <= self.max_shift < IMAGE_SIZE // 2:
            raise ValueError(f"max_shift={self.max_shift} must lie in 0..{IMAGE_SIZE // 2 - 1}")
        if self.outlier_weight < 0:
            raise ValueError(f"outlier_weight={self.outlier_weight} must be >= 0")


class DigitClassifier(nn.Module):
    """(N, 1, 16, 16) float in [-1, 1] -> (N, 10) logits."""

    def __init__(self, config: ClassifierConfig = ClassifierConfig()):
        super().__init__()
        self.config = config
        c1, c2, c3 = config.channels
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c2, c3, 3, padding=1), nn.ReLU(),
        )  # fmt: skip
        self.head = nn.Linear(c3 * (IMAGE_SIZE // 4) ** 2, NUM_CLASSES)
        self.report: dict[str, Any] = {}  # the training report, once trained or loaded
        self.train_config: dict[str, Any] | None = None  # the TrainConfig it was trained with, once loaded

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1:] != (1, IMAGE_SIZE, IMAGE_SIZE):
            raise ValueError(f"expected images of shape (N, 1, {IMAGE_SIZE}, {IMAGE_SIZE}), got {tuple(x.shape)}")
        return self.head(self.features(x).flatten(1))

    @torch.no_grad()
    def probabilities(self, pixels: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        """(N, 10) float64 class probabilities of (N, 16, 16) uint8 pixels, in eval mode."""
        was_training = self.training
        self.eval()
        x = from_pixels(pixels)
        probs = [torch.softmax(self(x[i : i + batch_size]).double(), dim=1) for i in range(0, len(x), batch_size)]
        self.train(was_training)
        return torch.cat(probs).numpy() if probs else np.zeros((0, NUM_CLASSES))


def synthetic_outliers(n: int, generator: torch.Generator) -> torch.Tensor:
    """(n, 1, 16, 16) non-digits in [-1, 1], five kinds in equal shares: constant images
    (blank included), uniform noise, salt-and-pepper dots on black (density 2% to 50%),
    blurred noise (blobs) and scattered ink (10% to 30% of the pixels lit at random
    intensities: about a digit's amount of ink, without its shape). These are where
    fine-tuning for JPEG size drifts to."""
    s = IMAGE_SIZE
    kind = torch.arange(n) % 5

    def u(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator)

    constant = u(n, 1, 1, 1).expand(n, 1, s, s)
    uniform = u(n, 1, s, s)
    dots = (u(n, 1, s, s) < 0.02 + 0.48 * u(n, 1, 1, 1)).float()
    blobs = F.interpolate(u(n, 1, 4, 4), size=(s, s), mode="bicubic", align_corners=False).clamp(0, 1)
    low, high = blobs.amin((2, 3), keepdim=True), blobs.amax((2, 3), keepdim=True)
    blobs = (blobs - low) / (high - low + 1e-6)  # stretched to the full range
    scattered = (u(n, 1, s, s) < 0.1 + 0.2 * u(n, 1, 1, 1)).float() * u(n, 1, s, s).sqrt()
    images = torch.stack([constant, uniform, dots, blobs, scattered])[kind, torch.arange(n)]
    return images * 2 - 1


def _shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Each image translated by its own (dy, dx) in [-max_shift, max_shift]^2, background filled."""
    if max_shift == 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, value=-1.0)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, n), generator=generator)
    rows = (dy[:, None] + torch.arange(h))[:, :, None]  # (n, h, 1)
    cols = (dx[:, None] + torch.arange(w))[:, None, :]  # (n, 1, w)
    return padded[torch.arange(n)[:, None, None], 0, rows, cols][:, None]


@torch.no_grad()
def accuracy(model: DigitClassifier, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of images whose top class is their label (puts the model in eval mode)."""
    model.eval()
    return float((model(x).argmax(1) == y).double().mean())


def train_classifier(
    config: TrainConfig = TrainConfig(),
    model_config: ClassifierConfig = ClassifierConfig(),
    *,
    path: str | Path | None = CHECKPOINT,
) -> tuple[DigitClassifier, dict[str, Any]]:
    """Train on the train split, measure on the held-out split, and save to `path`
    (weights as safetensors, config and report as JSON beside it; None saves nothing).
    Deterministic for a given config on a given machine: the global RNG is forked,
    seeded for the initialisation and restored afterwards."""
    start = time.perf_counter()
    split = split_digits(seed=config.split_seed)
    generator = torch.Generator().manual_seed(config.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = DigitClassifier(model_config)
    n = len(split.train_x)
    steps_per_epoch = -(-n // config.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch)
    for _ in range(config.epochs):
        model.train()
        order = torch.randperm(n, generator=generator)
        for i in range(0, n, config.batch_size):
            batch = order[i : i + config.batch_size]
            x = _shift(split.train_x[batch], config.max_shift, generator)
            loss = F.cross_entropy(model(x), split.train_y[batch])
            if config.outlier_weight > 0:
                outliers = synthetic_outliers(max(1, len(batch) // 2), generator)
                # Cross-entropy to the uniform distribution over the 10 digits (OE, Eq. 1).
                loss = loss - config.outlier_weight * torch.log_softmax(model(outliers), dim=1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval().requires_grad_(False)

    with torch.no_grad():
        held_out_probs = torch.softmax(model(split.held_out_x), 1)
        true_prob = held_out_probs[torch.arange(len(split.held_out_y)), split.held_out_y]
        outlier_probs = torch.softmax(model(synthetic_outliers(1000, torch.Generator().manual_seed(10_000))), 1)
    report = {
        "held_out_accuracy": accuracy(model, split.held_out_x, split.held_out_y),
        "train_accuracy": accuracy(model, split.train_x, split.train_y),
        "held_out_examples": len(split.held_out_y),
        "held_out_true_label_probability_at_least": {
            str(p): float((true_prob >= p).double().mean()) for p in (0.5, 0.9)
        },
        "outliers_max_probability_quantiles": {
            str(q): float(outlier_probs.amax(1).quantile(q)) for q in (0.5, 0.99, 1.0)
        },
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "torch_version": torch.__version__,
        "wall_s": round(time.perf_counter() - start, 1),
    }
    model.report = report
    if path is not None:
        save_classifier(model, path, training=config)
    return model, report


def save_classifier(model: DigitClassifier, path: str | Path, *, training: TrainConfig | None = None) -> None:
    """Weights at `path` (safetensors), {"config", "training", "report"} as JSON beside it;
    each written to a temporary file first and then moved into place, so a reader never
    sees half a checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    tmp.replace(path)
    meta = {
        "config": asdict(model.config),
        "training": asdict(training) if training is not None else None,
        "report": model.report,
    }
    meta_path = path.with_suffix(".json")
    tmp_json = meta_path.with_name(meta_path.name + ".tmp")
    tmp_json.write_text(json.dumps(meta, indent=2) + "\n")
    tmp_json.replace(meta_path)


def load_classifier(path: str | Path | None = None) -> DigitClassifier:
    """The trained classifier (eval mode, parameters frozen) with its report in `.report`
    and its training settings in `.train_config`; `path` defaults to the committed checkpoint."""
    path = Path(path) if path is not None else CHECKPOINT
    meta_path = path.with_suffix(".json")
    if not path.exists() or not meta_path.exists():
        raise FileNotFoundError(
            f"no digit classifier at {path} (with {meta_path.name} beside it); run `{PRETRAIN_COMMAND}`"
        )
    meta = json.loads(meta_path.read_text())
    model = DigitClassifier(ClassifierConfig(channels=tuple(meta["config"]["channels"])))
    model.load_state_dict(load_file(str(path)))
    model.report = meta.get("report") or {}
    model.train_config = meta.get("training")
    return model.eval().requires_grad_(False)
