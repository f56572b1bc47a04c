"""One writer per results folder.

`seiko-bench run` and `report` hold an exclusive advisory lock (flock) on
`<out>/.seiko-bench.lock` while they write. A second run on the same folder
fails at once with one line naming the holder's pid, instead of replacing the
first's cells under it. The kernel releases the lock when its holder dies, by
any signal, so a killed run never leaves the folder locked. Holding it, a run
also removes the temp files that a write killed half-way left behind.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_NAME = ".seiko-bench.lock"


class FolderLocked(RuntimeError):
    """Another process is writing to the results folder."""


@contextmanager
def results_lock(out: Path) -> Iterator[None]:
    """Hold the results folder's lock for the block; `FolderLocked` if another process holds it."""
    path = Path(out) / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise FolderLocked(f"another seiko-bench run (pid {holder}) is writing to {out}; wait for it to end "
                               f"or pass another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _remove_stale_temp_files(Path(out))
        yield
    finally:
        os.close(fd)  # closing the last descriptor releases the lock


def _remove_stale_temp_files(out: Path) -> None:
    """The `.<name>.<uuid>.tmp` files of atomic writes that a kill interrupted: no
    writer is running while we hold the lock, so none of them is in use."""
    for tmp in out.rglob(".*.tmp"):
        tmp.unlink(missing_ok=True)
