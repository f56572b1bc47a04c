"""Pretraining molecules: the MOSES training set, or a user's own SMILES file.

MOSES (Polykovskiy et al. 2020) is 1.58M ZINC-derived molecules filtered for
drug-likeness (MW 250-350, at most 7 rotatable bonds, C N O F S Cl Br only, no
charges). Its data ships inside the `molsets` wheel on PyPI, the one source
this project's machines can always reach: `pip download --no-deps` fetches the
wheel without its pinned, uninstallable dependencies, and the training split is
read out of it as a zip. Nothing from `moses` is imported.
"""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path

from domains.wheels import DataError, cache_dir, wheel_file

MOSES_WHEEL = "molsets==0.3.1"
MOSES_TRAIN = "moses/dataset/data/train.csv.gz"


def moses_train(cache: Path | None = None) -> list[str]:
    """The MOSES training SMILES, fetched into the cache on first use."""
    path = (cache or cache_dir()) / "moses" / "train.csv.gz"
    return read_smiles(wheel_file(MOSES_WHEEL, MOSES_TRAIN, path, "the MOSES data", "pass your own SMILES file instead"))


def read_smiles(path: str | Path) -> list[str]:
    """SMILES from a file: one per line (.smi, .txt), or a CSV with a column named
    SMILES (any case); gzipped or not. A header line that is not a molecule is skipped."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no SMILES file at {path}")
    raw = path.read_bytes()
    text = (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode()
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        raise DataError(f"{path} holds no SMILES")
    header = [cell.strip().lower() for cell in rows[0]]
    column = header.index("smiles") if "smiles" in header else 0
    start = 1 if "smiles" in header else 0
    smiles = [row[column].split()[0] for row in rows[start:] if row and row[column].strip()]
    if not smiles:
        raise DataError(f"{path} holds no SMILES")
    return smiles
