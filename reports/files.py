"""Writing result files so that no reader ever sees half of one.

The runner writes cells, checkpoints and manifests, and the report writes its
pages, into folders that a browser, a concurrent report or a resumed run may be
reading; both write through `atomic_write`. It lives here, with the reports,
because `reports` imports nothing of the runner, the methods or the domains, so
everything that writes results can import it.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def atomic_write(path: Path, data: bytes | str) -> Path:
    """Write `data` to `path` through a temp file in the same folder and os.replace.

    A reader (a browser on the HTML, a concurrent report) sees the old file or
    the new one, never half of one.
    """
    data = data.encode() if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "xb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
