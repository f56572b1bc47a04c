"""Data parallelism inside one cell: the processes (ranks) that share its work.

A cell may run on N processes (`seiko-bench run --processes N`; accelerate
starts them and their torch.distributed group, `benchmarks.launch`). Every rank
holds the whole state of the cell, the model, the method and the feedback, and
keeps it identical to the others':

- the oracle is asked once, by rank 0, and its answer (or its error) is
  broadcast (`Ranks.broadcast`), so the budget is spent once;
- a batch is cut into `shards` pieces, each drawn with its own generator, seeded
  from the method's generator, which every rank advances alike; each rank draws
  and differentiates only its own pieces (`Ranks.pieces`);
- sampled designs are gathered to every rank (`Ranks.gather`), and a step's
  gradient is summed piece by piece, then across ranks, before the optimiser's
  step (`PieceGradients`); a loss term every rank computes in full (a
  regulariser) is back-propagated after that sum, on every rank alike.

So a cell's numbers depend on `shards`, not on how many processes computed them:
N processes, and one process with `shards` = N, draw the same designs, ask the
same queries and train the same parameters, up to the order of floating-point
sums. With `shards` = 1 a batch is drawn in one stream from the method's own
generator, as on one process always.

Why not accelerate's `Accelerator.prepare`: a method's state is not one model
and one optimiser (a KL anchor, reward ensembles refitted every round, the
optimiser some methods keep across rounds), and DDP's wrapper would replace the
module a checkpoint pickles and a method differentiates through its sampler;
synchronising gradients by hand is a dozen lines here, once for every method.
accelerate's collectives (`gather_object`, `broadcast_object_list`) carry the objects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

T = TypeVar("T")


@dataclass(frozen=True)
class Ranks:
    """This process's place among a cell's `world` processes, and the `shards` a batch is cut into."""

    world: int = 1
    rank: int = 0
    shards: int = 1

    def __post_init__(self) -> None:
        if self.world < 1 or not 0 <= self.rank < self.world:
            raise ValueError(f"rank {self.rank} of {self.world} processes is not a rank")
        if self.shards < 1 or self.shards % self.world:
            raise ValueError(f"shards={self.shards} must be a positive multiple of the {self.world} processes, "
                             "so that every process draws the same number of pieces")

    @property
    def main(self) -> bool:
        """Rank 0: the one that asks the oracle and writes the cell's files."""
        return self.rank == 0

    def pieces(self, n: int, generator: torch.Generator) -> list[tuple[range, torch.Generator]]:
        """This rank's pieces of a batch of n rows, as (rows, generator) pairs,
        empty pieces left out. One piece, drawn with `generator` itself, when
        `shards` = 1; otherwise `shards` near-equal pieces, each with its own
        generator seeded from `generator`, taken round-robin by the ranks."""
        if self.shards == 1:
            return [(range(n), generator)] if n else []
        seeds = torch.randint(0, 2**62, (self.shards,), generator=generator).tolist()
        bounds = np.linspace(0, n, self.shards + 1).round().astype(int)
        return [(range(bounds[j], bounds[j + 1]), torch.Generator().manual_seed(seeds[j]))
                for j in range(self.rank, self.shards, self.world) if bounds[j + 1] > bounds[j]]

    def gather(self, mine: list[T], n: int) -> list[T]:
        """Every rank's results of `pieces(n, ...)` (one per non-empty piece), on every
        rank, in the pieces' order: the whole batch, as one process would draw it."""
        if self.world == 1:
            return mine
        from accelerate.utils import gather_object

        everyone = gather_object([mine])  # one list per rank, in rank order
        sizes = np.diff(np.linspace(0, n, self.shards + 1).round().astype(int))
        owners = [j % self.world for j in range(self.shards) if sizes[j] > 0]
        taken = [iter(parts) for parts in everyone]
        return [next(taken[rank]) for rank in owners]

    def broadcast(self, make: Callable[[], T]) -> T:
        """`make()` computed on rank 0 only, its value (or its exception) on every rank."""
        if self.world == 1:
            return make()
        from accelerate.utils import broadcast_object_list

        box: list = [None]
        if self.main:
            try:
                box = [(True, make())]
            except Exception as err:  # every rank raises it, so none waits for the next collective
                box = [(False, err)]
        broadcast_object_list(box, from_process=0)
        ok, value = box[0]
        if not ok:
            raise value
        return value



class PieceGradients:
    """One optimiser step's gradient, summed piece by piece and then over the
    ranks: each piece's gradient (all its backward calls) is set apart before
    the next piece's, so one process with two pieces adds g0 + g1 exactly as
    two processes' sum does, not (g0a + g0b + g1a) + g1b. The difference is in
    the last bits, but Adam divides by the root of tiny second moments, and
    last bits became 10% of DDPO's parameter change in two rounds."""

    def __init__(self, params: Iterable[torch.nn.Parameter], ranks: Ranks):
        self.params, self.ranks = list(params), ranks
        self.total: list[torch.Tensor | None] = [None] * len(self.params)

    def piece_done(self) -> None:
        """Set apart the gradient of the piece just back-propagated."""
        for i, p in enumerate(self.params):
            if p.grad is not None:
                self.total[i] = p.grad if self.total[i] is None else self.total[i] + p.grad
                p.grad = None

    def sum(self) -> None:
        """Every parameter's gradient: the pieces' sum, summed over the ranks (a
        rank whose pieces did not reach a parameter contributes zeros)."""
        for p, total in zip(self.params, self.total):
            p.grad = total
            if self.ranks.world > 1:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                torch.distributed.all_reduce(p.grad)


ONE_PROCESS = Ranks()
"""A cell on one process, its batches drawn in one stream: the default everywhere."""
