"""Oracles of the DNA tasks: how strongly a transcription factor binds a
designed sequence, by its JASPAR matrix, under the rules of DNA synthesis.

Binding is the log-odds score of the factor's position weight matrix
against a background base composition, on both strands: a matrix from the
JASPAR database that `pyjaspar` ships (release `JASPAR_RELEASE`), its counts
normalised with a pseudocount of 0.25 per base and scored by Biopython's
`Bio.motifs` (written by hand: nothing). The score of a sequence aggregates
its sites either as the best one (`best`), reported as JASPAR's relative
score (score - min) / (max - min) in [0, 1], 1 for a perfect site, or as an
occupancy-style log2 of the summed 2^score over every site and strand
(`occupancy`), which rewards several sites, in units of one perfect site's
score and at least 0 (below that no site stands out of the background: on
yeast promoters the median is near 0 bits, the 99th percentile near 10, one
perfect site 14-21 bits). A specificity task subtracts `off_weight` times
the best relative score of each off-target factor.

Feasible means synthesisable (`SynthesisRules`): GC content inside a window,
no homopolymer run longer than a limit, none of a set of restriction sites
on either strand (a Golden Gate assembly with BsaI or BsmBI cuts there). A
design with a letter outside ACGT (an N) is infeasible too, not an error.
`reasons` says which rule failed.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import pandas as pd

from domains.base import OracleOutput

JASPAR_RELEASE = "JASPAR2026"
YEAST_BACKGROUND = {"A": 0.31, "C": 0.19, "G": 0.19, "T": 0.31}
"""Base composition of the S. cerevisiae S288C genome (GC 38%), the background
the pretraining sequences come from."""
AGGREGATES = ("best", "occupancy")
ALPHABET = "ACGT"
"""The bases, in the order of every count table and one-hot of this domain."""
COMPLEMENT = str.maketrans(ALPHABET, "TGCA")


def reverse_complement(seq: str) -> str:
    return seq.translate(COMPLEMENT)[::-1]


@dataclass(frozen=True)
class SynthesisRules:
    """What a synthesis provider accepts; `problem` names the first rule a sequence breaks."""

    gc_min: float = 0.3
    gc_max: float = 0.7
    max_homopolymer: int = 6
    """Longest run of one base allowed."""
    sites: tuple[tuple[str, str], ...] = (("BsaI", "GGTCTC"), ("BsmBI", "CGTCTC"))
    """(enzyme, recognition site): neither strand may hold one."""

    def __post_init__(self) -> None:
        if not 0 <= self.gc_min <= self.gc_max <= 1:
            raise ValueError(f"the GC window must satisfy 0 <= gc_min <= gc_max <= 1, got {self.gc_min}..{self.gc_max}")
        if self.max_homopolymer < 1:
            raise ValueError(f"max_homopolymer must be at least 1, got {self.max_homopolymer}")
        for enzyme, site in self.sites:
            if not site or set(site) - set(ALPHABET):
                raise ValueError(f"{enzyme}: recognition site {site!r} must be letters of {ALPHABET}")

    def problem(self, seq: str) -> str | None:
        """None when `seq` (upper case) can be synthesised, else why not."""
        if not seq:
            return "empty sequence"
        other = sorted(set(seq) - set(ALPHABET))
        if other:
            return f"letter {other[0]} (only A, C, G, T)"
        gc = (seq.count("G") + seq.count("C")) / len(seq)
        if not self.gc_min <= gc <= self.gc_max:
            return f"GC {gc:.2f} outside {self.gc_min:g}-{self.gc_max:g}"
        run = max(len(m.group(0)) for m in re.finditer(r"(.)\1*", seq))
        if run > self.max_homopolymer:
            return f"homopolymer of {run} > {self.max_homopolymer}"
        for enzyme, site in self.sites:
            if site in seq or reverse_complement(site) in seq:
                return f"{enzyme} site {site}"
        return None


@cache
def _database():
    from pyjaspar import jaspardb

    return jaspardb(release=JASPAR_RELEASE)


@cache
def _matrix_ids() -> dict[str, str]:
    """Every matrix of the release: id -> factor name, for suggestions. Read from the
    release's SQLite tables: building every motif through pyjaspar takes 40 s."""
    rows = _database().conn.execute("SELECT BASE_ID, VERSION, NAME FROM MATRIX").fetchall()
    return {f"{base}.{version}": name for base, version, name in rows}


class UnknownMatrix(ValueError):
    """A JASPAR id or factor name the release does not hold."""


@cache
def load_matrix(name: str):
    """The JASPAR motif with this matrix id (MA0303.3) or factor name (GCN4; its latest CORE matrix)."""
    db = _database()
    if re.fullmatch(r"MA\d{4}\.\d+", name):
        motif = db.fetch_motif_by_id(name)
    else:
        found = db.fetch_motifs_by_name(name)
        motif = max(found, key=lambda m: (m.collection == "CORE", m.matrix_id)) if found else None
    if motif is None:
        known = _matrix_ids()
        close = difflib.get_close_matches(name, sorted(set(known) | set(known.values())), n=3, cutoff=0.6)
        hint = f"; close: {', '.join(close)}" if close else ""
        raise UnknownMatrix(f"no JASPAR matrix {name!r} in {JASPAR_RELEASE}{hint}")
    return motif


class Site:
    """One factor's log-odds matrix and its score range."""

    def __init__(self, name: str, background: dict[str, float]):
        motif = load_matrix(name)
        self.matrix_id, self.factor = motif.matrix_id, motif.name
        self.counts = pd.DataFrame({base: list(motif.counts[base]) for base in ALPHABET})
        """(position, base) counts of the matrix, for logos."""
        self.pssm = motif.counts.normalize(pseudocounts=0.25).log_odds(background)
        self.reverse = self.pssm.reverse_complement()
        self.length = self.pssm.length
        self.max, self.min = float(self.pssm.max), float(self.pssm.min)

    def scores(self, seq: str) -> np.ndarray:
        """Log-odds (bits) of every site on both strands."""
        if len(seq) < self.length:
            return np.full(1, self.min)
        return np.concatenate([np.atleast_1d(self.pssm.calculate(seq)), np.atleast_1d(self.reverse.calculate(seq))])

    def relative(self, seq: str) -> float:
        return (float(self.scores(seq).max()) - self.min) / (self.max - self.min)

    def occupancy(self, seq: str) -> float:
        return max(0.0, float(np.logaddexp2.reduce(self.scores(seq)))) / self.max


class BindingOracle:
    """A factor's binding to a designed DNA sequence (`aggregate`: best site's
    relative score, or occupancy in bits), minus `off_weight` times each
    off-target factor's best relative score; NaN where the sequence cannot be
    synthesised or is not `length` long (when given)."""

    def __init__(self, factor: str, *, aggregate: str = "best", off_targets: Sequence[str] = (),
                 off_weight: float = 1.0, rules: SynthesisRules = SynthesisRules(), length: int | None = None,
                 background: dict[str, float] = YEAST_BACKGROUND):
        if aggregate not in AGGREGATES:
            raise ValueError(f"aggregate must be one of {', '.join(AGGREGATES)}; got {aggregate!r}")
        if abs(sum(background.values()) - 1) > 1e-6 or set(background) != set(ALPHABET):
            raise ValueError(f"background must give A, C, G, T probabilities summing to 1, got {background}")
        self.site = Site(factor, background)
        self.off = [Site(f, background) for f in off_targets]
        self.aggregate, self.off_weight, self.rules, self.length = aggregate, off_weight, rules, length
        self.name = f"{self.site.factor}-{self.site.matrix_id}-{aggregate}" + "".join(
            f"-not-{s.factor}" for s in self.off)
        self.floor = -off_weight * len(self.off)
        # Best site: a perfect one; occupancy: no bound short of packing perfect sites, so none is claimed.
        self.optimum = 1.0 if aggregate == "best" else None

    def key(self, design: Any) -> str:
        return design.upper() if isinstance(design, str) else repr(design)

    def problem(self, design: Any) -> str | None:
        if not isinstance(design, str):
            return f"not a string ({type(design).__name__})"
        seq = design.upper()
        if self.length is not None and len(seq) != self.length:
            return f"length {len(seq)}, not {self.length}"
        return self.rules.problem(seq)

    def assess(self, design: Any) -> tuple[float, str | None]:
        """(reward, None) for a feasible design, (NaN, reason) otherwise."""
        reason = self.problem(design)
        if reason is not None:
            return math.nan, reason
        seq = design.upper()
        on = self.site.relative(seq) if self.aggregate == "best" else self.site.occupancy(seq)
        return on - self.off_weight * sum(s.relative(seq) for s in self.off), None

    def reasons(self, designs: Sequence[Any]) -> list[str | None]:
        return [self.problem(d) for d in designs]

    def __call__(self, designs: Sequence[Any]) -> OracleOutput:
        reward = np.array([self.assess(d)[0] for d in designs], dtype=np.float64).reshape(len(designs))
        return OracleOutput(reward=reward, feasible=~np.isnan(reward))
