"""What an image-domain oracle scores: pixels together with the condition they
were generated for (a digit label or a text prompt).

The condition travels with the design because feasibility depends on it (a
digit image is feasible when a classifier recognises the label it was asked
for) and because two identical pixel arrays made for different prompts are
different measurements.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(eq=False)
class ImageDesign:
    """One generated image and its condition."""

    pixels: np.ndarray
    """(H, W) greyscale or (H, W, 3) RGB, uint8."""
    condition: int | str
    """The digit label (digits backend) or the prompt (Stable Diffusion backend)."""

    def key(self) -> str:
        """The budgeted oracle's cache key: a hash of shape, bytes and condition."""
        digest = hashlib.sha1(np.ascontiguousarray(self.pixels).tobytes())
        digest.update(repr((self.pixels.shape, str(self.pixels.dtype), self.condition)).encode())
        return digest.hexdigest()


def grid(designs: Sequence[ImageDesign], labels: Sequence[str] = (), columns: int = 8, limit: int = 32) -> np.ndarray:
    """The first `limit` designs, `columns` to a row, each drawn at 4-5x its size over
    its condition and label (the runner's oracle reward, or "infeasible", in red),
    as one uint8 RGB picture. Drawn with matplotlib's object API (no pyplot), so no
    global backend is switched in a worker."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    shown = list(designs[:limit])
    if not shown:
        raise ValueError("no designs to draw")
    rows = -(-len(shown) // columns)
    fig = Figure(figsize=(0.95 * columns, 1.1 * rows), dpi=100, layout="constrained")
    for i, ax in enumerate(fig.subplots(rows, columns, squeeze=False).flat):
        ax.set_axis_off()
        if i >= len(shown):
            continue
        design, label = shown[i], (labels[i] if i < len(labels) else "")
        grey = design.pixels.ndim == 2
        ax.imshow(design.pixels, cmap="gray" if grey else None, vmin=0, vmax=255, interpolation="nearest")
        condition = design.condition
        condition = f"digit {condition}" if isinstance(condition, int | np.integer) else str(condition)
        condition = condition if len(condition) <= 14 else condition[:13] + "\u2026"
        ax.set_title(f"{condition}\n{label}" if label else condition, fontsize=7, pad=2,
                     color="tab:red" if label == "infeasible" else "black")
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
