"""Sequence logos of designs, so that a user sees what a run found.

A logo stacks, at every position, the letters in proportion to their
frequency among the designs, the stack as tall as the position's information
(2 bits minus its entropy): what the designs share stands out as a tall word,
background stays flat. A factor's site may sit anywhere in a design, so a
picture has two logos beside the factor's own: the designs position by
position, and their best sites for the factor (each read on the strand it
sits on), aligned. Drawn by `logomaker` (Tareen & Kinney 2020) on matplotlib;
nothing here but the layout.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from domains.dna.oracles import ALPHABET, Site, reverse_complement


def counts(designs: Sequence[str]) -> pd.DataFrame:
    """(position, base) counts of designs of one length (logomaker's own counting; a letter outside ACGT counts for no base)."""
    import logomaker

    return logomaker.alignment_to_matrix(list(designs), to_type="counts", characters_to_ignore="N").reindex(
        columns=list(ALPHABET), fill_value=0)


def best_sites(designs: Sequence[str], site: Site) -> list[str]:
    """Each design's highest-scoring site for the factor, read 5'->3' on its strand."""
    out = []
    for design in designs:
        seq = design.upper()
        if len(seq) < site.length:
            continue
        scores = site.scores(seq)
        forward = len(scores) // 2
        i = int(scores.argmax())
        word = seq[i % forward:i % forward + site.length]
        out.append(word if i < forward else reverse_complement(word))
    return out


def logos(panels: Sequence[tuple[pd.DataFrame, str]], title: str) -> np.ndarray:
    """Information logos of count tables side by side (widths in proportion to
    their lengths), as uint8 RGB pixels under `title`."""
    import logomaker
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    widths = [len(frame) + 4 for frame, _ in panels]
    fig, axes = plt.subplots(1, len(panels), figsize=(max(5.0, 0.14 * sum(widths)), 2.1), dpi=80,
                             gridspec_kw={"width_ratios": widths}, squeeze=False)
    try:
        for ax, (frame, label) in zip(axes[0], panels):
            information = logomaker.transform_matrix(frame, from_type="counts", to_type="information")
            logomaker.Logo(information, ax=ax, color_scheme="classic")
            ax.set_ylim(0, 2)
            ax.set_title(label, fontsize=8)
            ax.set_xlabel("position")
        axes[0][0].set_ylabel("bits")
        fig.suptitle(title, fontsize=9)
        fig.tight_layout()
        fig.canvas.draw()
        return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    finally:
        plt.close(fig)


def design_logos(designs: Sequence[str], title: str, site: Site) -> np.ndarray:
    """The designs' logo, the logo of their best sites for `site`'s factor, and the factor's JASPAR logo."""
    found = best_sites(designs, site)
    return logos([(counts(designs), f"{len(designs)} designs, by position"),
                  (counts(found), f"their best {site.factor} sites"),
                  (site.counts, f"{site.factor} {site.matrix_id}")], title)
