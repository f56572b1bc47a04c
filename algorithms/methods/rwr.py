"""Reward-weighted regression: fine-tune on the denoising loss of good samples.

Peters & Schaal 2007; for diffusion models Lee et al. 2023 ("Aligning
text-to-image models using human feedback") and DDPO's RWR baseline (Black et
al., ICLR 2024, Sec. 5). Each round the current model's samples are measured,
and the model is trained on its own pretraining objective over those samples
weighted by exp(beta * advantage) (advantage = reward standardised over the
round), or, in the sparse variant, on the top `sparse_fraction` alone with
weight 1. No reward model, no KL: the weighting itself keeps updates small.

The weights are normalised over the whole round (mean 1), and each minibatch's
loss is sum_i w_i * l_i / batch_len with those round weights, so that over an
epoch every design is weighted by its round weight. The models'
`denoising_loss` returns the weighted *mean* (divided by the minibatch's own
weight sum), which would renormalise each minibatch and undo the round's
weighting: a minibatch of poor designs would count as much as one holding the
best; `RWR.update` multiplies that mean back by the minibatch's weight sum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from algorithms.method import Context, Feedback, SamplingMethod, Variant
from algorithms.parallel import PieceGradients
from domains.base import DiffusionModel, index_states


@dataclass
class RWRConfig:
    """RWR's weighting and training."""

    beta: float = 1.0
    """Inverse temperature of exp(beta * advantage)."""
    sparse_fraction: float | None = None
    """If set, weight 1 on the top fraction of the round's samples and 0 elsewhere (sparse RWR)."""
    epochs: int = 2
    """Passes over each round's samples."""
    batch_size: int = 64
    """Samples per gradient step."""
    lr: float = 1e-4
    """Adam learning rate."""

    def __post_init__(self) -> None:
        if self.sparse_fraction is not None and not 0 < self.sparse_fraction <= 1:
            raise ValueError(f"sparse_fraction must lie in (0, 1], got {self.sparse_fraction}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1")


def rwr_weights(reward: np.ndarray, beta: float, sparse_fraction: float | None) -> np.ndarray:
    """Per-sample weights, normalised to mean 1 so the learning rate keeps its meaning."""
    if sparse_fraction is not None:
        keep = max(1, int(np.ceil(sparse_fraction * len(reward))))
        weights = np.zeros(len(reward))
        weights[np.argsort(-reward, kind="stable")[:keep]] = 1.0
    else:
        advantage = (reward - reward.mean()) / (reward.std() + 1e-8)
        weights = np.exp(beta * (advantage - advantage.max()))  # shifted: no overflow, same after normalising
    return weights / weights.mean()


def effective_sample_size(weights: np.ndarray) -> float:
    """(sum w)^2 / sum w^2: how many equally weighted samples the round's weights
    amount to (the round's size for beta = 0, 1 when one sample takes all)."""
    return float(weights.sum() ** 2 / (weights**2).sum())


class RWR(SamplingMethod):
    requires = ("sample", "encode", "conditions", "denoising_loss", "trainable_parameters")

    def __init__(self, config: RWRConfig, context: Context, name: str = "rwr"):
        self.cfg, self.ctx, self.name = config, context, name
        self.generator = torch.Generator().manual_seed(context.seed)

    def update(self, model: DiffusionModel, data: Feedback, round: int) -> dict[str, float]:
        latest, reward = data.round_scores(round, self.ctx.floor)
        weights = torch.as_tensor(rwr_weights(reward, self.cfg.beta, self.cfg.sparse_fraction), dtype=torch.float32)
        designs = [data.designs[i] for i in latest]
        x0, condition = model.encode(designs), model.conditions(designs)
        params, ranks = model.trainable_parameters(), self.ctx.ranks
        opt = torch.optim.Adam(params, lr=self.cfg.lr)
        losses = []
        for _ in range(self.cfg.epochs):
            order = torch.randperm(len(latest), generator=self.generator)
            for start in range(0, len(latest), self.cfg.batch_size):
                minibatch = order[start : start + self.cfg.batch_size]
                if weights[minibatch].sum() == 0:  # sparse RWR: nothing to learn in this batch
                    continue
                opt.zero_grad()
                grads, piece_losses = PieceGradients(params, ranks), []
                # This rank's pieces of the minibatch (all of it on one process), each with its own noise.
                for piece, piece_generator in ranks.pieces(len(minibatch), self.generator):
                    rows = minibatch[piece.start : piece.stop]
                    piece_weight = weights[rows].sum()
                    if piece_weight == 0:
                        piece_losses.append(0.0)
                        continue
                    weighted_mean = model.denoising_loss(index_states(x0, rows), generator=piece_generator,
                                                         weights=weights[rows],
                                                         condition=None if condition is None else condition[rows])
                    loss = weighted_mean * piece_weight / len(minibatch)  # sum_i w_i * l_i / batch_len
                    loss.backward()
                    grads.piece_done()
                    piece_losses.append(float(loss.detach()))
                grads.sum()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                losses.append(sum(ranks.gather(piece_losses, len(minibatch))))
        return {"weighted_loss": float(np.mean(losses)) if losses else float("nan"), "max_weight": float(weights.max()),
                "weights_ess": effective_sample_size(weights.numpy())}


VARIANTS = {
    "rwr": Variant(RWR, RWRConfig, "reward-weighted regression: denoising loss weighted by exp(beta * advantage)"),
    "rwr-sparse": Variant(RWR, RWRConfig, "sparse RWR: denoising loss on the top 10% of each round",
                          {"sparse_fraction": 0.1}),
}
