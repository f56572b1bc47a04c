"""Point mutation and uniform crossover of fixed-length strings.

The moves of holo-bench's reference genetic optimiser for Ehrlich functions;
written here because they are a few lines over our own encoding.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from domains.sequences import alphabet as alpha


class StringOperators:
    """The sequence-domain `Operators`: every child keeps the alphabet and the length."""

    def __init__(self, alphabet: str, length: int):
        self.alphabet, self.length = alphabet, length

    def mutate(self, designs: Sequence[str], rate: float, generator: torch.Generator) -> list[str]:
        """Each letter is redrawn uniformly (possibly to itself) with probability `rate`."""
        tokens = alpha.encode(designs, self.alphabet, self.length)
        redraw = torch.rand(tokens.shape, generator=generator) < rate
        letters = torch.randint(len(self.alphabet), tokens.shape, generator=generator)
        return alpha.decode(torch.where(redraw, letters, tokens), self.alphabet)

    def crossover(self, a: Sequence[str], b: Sequence[str], generator: torch.Generator) -> list[str]:
        """Uniform crossover: each position comes from either parent with probability 1/2."""
        ta, tb = alpha.encode(a, self.alphabet, self.length), alpha.encode(b, self.alphabet, self.length)
        from_a = torch.rand(ta.shape, generator=generator) < 0.5
        return alpha.decode(torch.where(from_a, ta, tb), self.alphabet)
