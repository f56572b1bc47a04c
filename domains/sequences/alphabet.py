"""Sequences as strings over a fixed alphabet, and back to token ids.

Oracles, featurisers and models of the sequence domain all speak strings to the
outside (what a lab writes down) and token ids inside; this is the one place
that converts, so that a bad design gets the same clear error everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
_EXTRA = "abcdefghijklmnopqrstuvwxyz0123456789"


def alphabet_of_size(v: int) -> str:
    """The first v letters of the 20 amino acids followed by lowercase letters and digits."""
    letters = AMINO_ACIDS + _EXTRA
    if not 2 <= v <= len(letters):
        raise ValueError(f"alphabet size must be between 2 and {len(letters)}, got {v}")
    return letters[:v]


def encode(designs: Sequence[str], alphabet: str, length: int) -> torch.Tensor:
    """(N, length) long token ids; a one-line ValueError names the first bad design."""
    index = {a: i for i, a in enumerate(alphabet)}
    rows = []
    for n, design in enumerate(designs):
        if not isinstance(design, str):
            raise ValueError(f"design {n} is a {type(design).__name__}, expected a string over {alphabet!r}")
        if len(design) != length:
            raise ValueError(f"design {n} has length {len(design)}, expected {length}")
        try:
            rows.append([index[a] for a in design])
        except KeyError as err:
            raise ValueError(f"design {n} has letter {err.args[0]!r}, not in the alphabet {alphabet!r}") from None
    return torch.tensor(rows, dtype=torch.long).reshape(len(rows), length)


def decode(tokens: torch.Tensor, alphabet: str) -> list[str]:
    return ["".join(alphabet[i] for i in row) for row in tokens.tolist()]
