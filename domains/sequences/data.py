"""A user's own sequences, read from a file, for pretraining the masked model.

Two formats, told apart by the first line that is neither blank nor a comment:
- FASTA: it starts with '>'. Lines starting with '>' are headers; a record's
  sequence is the concatenation of the lines up to the next header, so it may
  span several lines.
- plain: anything else. One sequence per line.
In both, blank lines and lines starting with '#' are ignored, and surrounding
whitespace (including a Windows line end) is stripped from every line.

Letters and case: every letter must be in the alphabet the user names (any
distinct characters, e.g. "ACGT" or the 20 amino acids). If the alphabet's
letters are all of one case, the file may use either case: with an upper-case
alphabet such as "ACGT", 'acgt' is read as 'ACGT' (and with an all-lower-case
alphabet, upper case is read as lower case). An alphabet that mixes cases
("ACGTacgt") is case-sensitive: each letter is taken as written.

The masked diffusion model has one fixed length, so every sequence must have the
length of the first. Bad input is a one-line error naming the file and line.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from domains.sequences import alphabet as alpha


def check_alphabet(alphabet: str) -> str:
    """The alphabet itself, or a one-line ValueError: at least two distinct,
    non-whitespace letters."""
    if not isinstance(alphabet, str):
        raise ValueError(f"the alphabet must be a string of letters, e.g. 'ACGT', got a {type(alphabet).__name__}")
    if len(alphabet) < 2:
        raise ValueError(f"the alphabet {alphabet!r} has {len(alphabet)} letter(s); it needs at least 2, e.g. 'ACGT'")
    seen: set[str] = set()
    for letter in alphabet:
        if letter.isspace():
            raise ValueError(f"the alphabet {alphabet!r} contains whitespace; give its letters only, e.g. 'ACGT'")
        if letter in seen:
            raise ValueError(f"the alphabet {alphabet!r} repeats the letter {letter!r}; each letter must appear once")
        seen.add(letter)
    return alphabet


def _case_folding(alphabet: str) -> dict[int, str]:
    """str.translate table taking the other case of each letter to the alphabet's
    own, when the alphabet's letters are all of one case; empty otherwise."""
    has_lower = any(a.islower() for a in alphabet)
    has_upper = any(a.isupper() for a in alphabet)
    if has_lower == has_upper:  # mixed case (case-sensitive), or no cased letters at all
        return {}
    other = str.lower if has_upper else str.upper
    return {ord(other(a)): a for a in alphabet if len(other(a)) == 1 and other(a) != a}


def read_sequences(path: str | Path, alphabet: str) -> list[str]:
    """The sequences of a FASTA or plain one-per-line file (see the module
    docstring), in file order, written in the alphabet's letters.

    Raises FileNotFoundError for a missing file and ValueError (one line,
    `file:line: ...`) for a letter outside the alphabet, a sequence whose length
    differs from the first one's, a FASTA record without a sequence, or a file
    with no sequences; and ValueError for a bad alphabet (see `check_alphabet`).
    """
    check_alphabet(alphabet)
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file of sequences")
    if path.is_dir():
        raise ValueError(f"{path}: is a folder, expected a file of sequences (FASTA or one per line)")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not a text file of sequences ({err.reason} at byte {err.start})") from None
    fold, allowed = _case_folding(alphabet), set(alphabet)

    records: list[tuple[int, str]] = []  # (line number to blame for the record, sequence)
    fasta: bool | None = None
    header_line, header, parts = 0, "", []

    def close_record() -> None:
        if not parts:
            raise ValueError(f"{path}:{header_line}: FASTA record {header!r} has no sequence")
        records.append((header_line, "".join(parts)))

    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if fasta is None:
            fasta = line.startswith(">")
        if line.startswith(">"):
            if not fasta:
                raise ValueError(f"{path}:{number}: a FASTA header in a plain file; "
                                 "a FASTA file must start with a '>' header line")
            if header_line:
                close_record()
            header_line, header, parts = number, line, []
            continue
        line = line.translate(fold)
        if not allowed.issuperset(line):
            bad = next(c for c in line if c not in allowed)
            raise ValueError(f"{path}:{number}: letter {bad!r} is not in the alphabet {alphabet!r}")
        if fasta:
            parts.append(line)
        else:
            records.append((number, line))
    if fasta and header_line:
        close_record()
    if not records:
        raise ValueError(f"{path}: no sequences (the file is empty or holds only blank lines, '#' comments "
                         "and headers)")

    first_line, first = records[0]
    for number, sequence in records[1:]:
        if len(sequence) != len(first):
            where = f"the record starting at line {number}" if fasta else f"the sequence at line {number}"
            raise ValueError(
                f"{path}:{number}: {where} has length {len(sequence)}, but the first sequence (line {first_line}) "
                f"has length {len(first)}; the masked model needs one length: trim or pad the sequences to one "
                "length, or keep only those of one length"
            )
    return [sequence for _, sequence in records]


def encode_sequences(sequences: Sequence[str], alphabet: str) -> torch.Tensor:
    """(N, L) long token ids (token i is alphabet[i]) of sequences of one length L,
    as `read_sequences` returns them: the training data of the masked model."""
    check_alphabet(alphabet)
    if not sequences:
        raise ValueError("no sequences to encode")
    return alpha.encode(sequences, alphabet, len(sequences[0]))
