"""How good a molecule generator is, in the terms papers report: validity,
uniqueness, novelty, QED, SA and the Frechet ChemNet distance.

Definitions follow MOSES (Polykovskiy et al. 2020) and GuacaMol's
distribution-learning suite: validity is the fraction of samples RDKit
sanitises as one molecule, with no valence correction. DiGress and GDSS count
a sample that sanitises but falls into several fragments as valid, scored as
its largest fragment (DiGress's `compute_validity`, GDSS's
`valid_mol_can_with_seg`); that figure is `validity_largest_fragment`, the
one to set beside theirs. Uniqueness is distinct valid molecules over valid ones; novelty
is valid distinct molecules absent from the reference set over distinct ones.
FCD (Preuer et al. 2018) compares ChemNet activations of the valid samples with
those of reference molecules; the `fcd` package ships ChemNet's weights, so it
runs offline.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from rdkit import Chem
from rdkit.Chem import rdFingerprintGenerator
from rdkit.DataStructs import BulkTanimotoSimilarity

from domains.molecules import oracles


def quality(samples: Sequence[str], reference: Sequence[str], *, fcd_reference: Sequence[str] | None = None,
            ) -> dict[str, Any]:
    """The generator report over `samples` (SMILES), with novelty against
    `reference` (canonicalised here) and FCD against `fcd_reference` (default:
    `reference`). Means of QED and SA are over the valid samples."""
    parsed = [oracles.read(s) for s in samples]  # each sample parsed once: a molecule, or why it is none
    reasons = [m if isinstance(m, str) else oracles.structure_problem(m) for m in parsed]
    molecules = [m for m, r in zip(parsed, reasons) if r is None]
    valid = [Chem.MolToSmiles(m) for m in molecules]
    distinct = set(valid)
    known = {oracles.canonical_smiles(s) for s in reference}
    report: dict[str, Any] = {
        "samples": len(samples),
        "validity": len(valid) / max(len(samples), 1),
        "validity_largest_fragment": sum(r is None or r.endswith(" fragments") for r in reasons) / max(len(samples), 1),
        "uniqueness": len(distinct) / max(len(valid), 1),
        "novelty": len(distinct - known) / max(len(distinct), 1),
        "invalid_reasons": dict(Counter(r.split(":")[0] for r in reasons if r is not None).most_common()),
    }
    if valid:
        report["qed_mean"] = float(np.mean([oracles.qed(m) for m in molecules]))
        report["sa_mean"] = float(np.mean([oracles.sa_score(m) for m in molecules]))
        report["heavy_atoms_mean"] = float(np.mean([m.GetNumAtoms() for m in molecules]))
    if len(valid) > 1:
        import fcd  # imported here: loading ChemNet takes a few seconds that most callers never need

        report["fcd"] = float(fcd.get_fcd(list(valid), list(fcd_reference or reference)))
    return report



def top_designs_metrics(reference: Sequence[str]) -> Callable[[Sequence[str]], dict[str, float]]:
    """The molecule task's `design_metrics`: of the best molecules a run measured,
    `top10_diversity` (mean pairwise Tanimoto distance of their Morgan
    fingerprints, radius 2, 2,048 bits, PMO's diversity) and `top10_novelty`
    (the share absent from `reference`, the training molecules shipped)."""
    known = set(reference)
    fingerprints = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)

    def metrics(keys: Sequence[str]) -> dict[str, float]:
        molecules = [oracles.read(k) for k in keys]
        prints = [fingerprints.GetFingerprint(m) for m in molecules if not isinstance(m, str)]
        distances = [1 - s for i, fp in enumerate(prints) for s in BulkTanimotoSimilarity(fp, prints[i + 1:])]
        return {"top10_diversity": float(np.mean(distances)) if distances else float("nan"),
                "top10_novelty": float(np.mean([k not in known for k in keys])) if keys else float("nan")}

    return metrics
