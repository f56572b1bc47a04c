"""Molecule oracles: GuacaMol's multi-property objectives, QED and penalised logP, with feasibility reasons.

The seven MPOs follow GuacaMol (Brown et al. 2019, "GuacaMol: Benchmarking Models for de Novo Molecular
Design", J. Chem. Inf. Model. 59, 1096), as its reference implementation defines them for the v2 goal-directed
suite; written from those definitions with RDKit, not ported. Each MPO is the geometric mean of terms, each term
a raw property passed through a score modifier into [0, 1]. The geometric mean is GuacaMol's choice for these
objectives because one failed property then pulls the whole score towards 0: it cannot be bought back by
excelling at the others.

Similarities are Tanimoto on RDKit's unfolded *count* fingerprints, as GuacaMol's calls produce them
(`GetMorganFingerprint(mol, r)` and `GetAtomPairFingerprint(mol, maxLength=10)`, which the fingerprint
generators used here reproduce exactly): ECFP4 = Morgan radius 2, ECFP6 = Morgan radius 3, FCFP4 = Morgan
radius 2 on feature invariants, AP = atom pairs up to 10 bonds apart.

Where this module departs from GuacaMol, on purpose: GuacaMol scores any SMILES RDKit parses and gives -1 to the
rest; here a design is scored only when it is a feasible molecule (`check`): it parses and sanitises, is one
fragment and has no wildcard atom, plus a task's optional SA-score and PAINS filters. An infeasible design gets
reward NaN, and the benchmark counts it as the oracle's `floor`.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import Any

import numpy as np
from rdkit import Chem, RDConfig, rdBase
from rdkit.Chem import QED, Descriptors, rdFingerprintGenerator, rdMolDescriptors
from rdkit.Chem.FilterCatalog import FilterCatalog, FilterCatalogParams
from rdkit.DataStructs import TanimotoSimilarity

from domains.base import OracleOutput, UnknownName

Property = Callable[[Chem.Mol], float]
"""A function of a sanitised molecule: a raw property, or a whole objective."""
Modifier = Callable[[float], float]
"""A map of a raw property onto [0, 1]."""

PENALIZED_LOGP_FLOOR = -10.0
"""What an infeasible design counts as under penalised logP, which has no minimum (logP falls without limit as a
molecule grows more polar). Ordinary drug-like molecules (logP >= -5, SA <= 5, no ring over six atoms) score
above it, so an infeasible design never outranks a plausible feasible one, while one infeasible design cannot
swamp a run's mean the way a theoretical minimum would."""

# --- score modifiers (GuacaMol's score_modifier.py, those the MPOs use) ---------------------------------------


@dataclass(frozen=True)
class Gaussian:
    """exp(-((x - mu) / sigma)^2 / 2): a property wanted near mu, penalised smoothly on either side."""

    mu: float
    sigma: float

    def __call__(self, x: float) -> float:
        return math.exp(-0.5 * ((x - self.mu) / self.sigma) ** 2)


@dataclass(frozen=True)
class MinGaussian:
    """1 for x <= mu, the right half of Gaussian(mu, sigma) above: a soft "at most mu" (GuacaMol's
    MinGaussianModifier, named for minimising x)."""

    mu: float
    sigma: float

    def __call__(self, x: float) -> float:
        return Gaussian(self.mu, self.sigma)(max(x, self.mu))


@dataclass(frozen=True)
class MaxGaussian:
    """1 for x >= mu, the left half of Gaussian(mu, sigma) below: a soft "at least mu"."""

    mu: float
    sigma: float

    def __call__(self, x: float) -> float:
        return Gaussian(self.mu, self.sigma)(min(x, self.mu))


@dataclass(frozen=True)
class Clipped:
    """(x - lower_x) / (upper_x - lower_x) clipped to [0, 1]: a similarity that counts in full from upper_x on,
    so an MPO rewards molecules that are similar enough instead of pushing towards the target itself."""

    upper_x: float
    lower_x: float = 0.0

    def __call__(self, x: float) -> float:
        return min(max((x - self.lower_x) / (self.upper_x - self.lower_x), 0.0), 1.0)


def geometric_mean(scores: Sequence[float]) -> float:
    """(prod scores)^(1/n): a single zero term zeroes the whole objective."""
    return math.prod(scores) ** (1.0 / len(scores))


# --- properties -------------------------------------------------------------------------------------------------


def logp(mol: Chem.Mol) -> float:
    """Crippen logP (Wildman & Crippen 1999), GuacaMol's and penalised logP's logP."""
    return Descriptors.MolLogP(mol)


def tpsa(mol: Chem.Mol) -> float:
    """Topological polar surface area (Ertl 2000) over N and O only, RDKit's default and GuacaMol's."""
    return Descriptors.TPSA(mol)


def num_rings(mol: Chem.Mol) -> float:
    return rdMolDescriptors.CalcNumRings(mol)


def num_aromatic_rings(mol: Chem.Mol) -> float:
    return rdMolDescriptors.CalcNumAromaticRings(mol)


def num_atoms(mol: Chem.Mol) -> float:
    """Atoms including hydrogens: a molecular formula counts them."""
    return Chem.AddHs(mol).GetNumAtoms()


@dataclass(frozen=True)
class AtomCount:
    """Atoms of one element; hydrogens are mostly implicit, so they are made explicit before counting."""

    element: str

    def __call__(self, mol: Chem.Mol) -> float:
        with_hs = Chem.AddHs(mol) if self.element == "H" else mol  # held: atoms do not keep their molecule alive
        return sum(atom.GetSymbol() == self.element for atom in with_hs.GetAtoms())


FINGERPRINT_TYPES = ("ECFP4", "ECFP6", "FCFP4", "AP")


@cache
def _fingerprint_generator(fp_type: str) -> Any:
    """Built once per process: a generator is costly to set up and stateless to use."""
    if fp_type == "AP":
        return rdFingerprintGenerator.GetAtomPairGenerator(maxDistance=10)
    radius = {"ECFP4": 2, "ECFP6": 3, "FCFP4": 2}[fp_type]
    invariants = rdFingerprintGenerator.GetMorganFeatureAtomInvGen() if fp_type.startswith("FCFP") else None
    return rdFingerprintGenerator.GetMorganGenerator(radius=radius, atomInvariantsGenerator=invariants)


def fingerprint(mol: Chem.Mol, fp_type: str) -> Any:
    """The unfolded count fingerprint GuacaMol compares: folding or bits would change the Tanimoto values."""
    if fp_type not in FINGERPRINT_TYPES:
        raise ValueError(f"fingerprint type {fp_type!r} is not one of {', '.join(FINGERPRINT_TYPES)}")
    return _fingerprint_generator(fp_type).GetSparseCountFingerprint(mol)


@cache
def _target_fingerprint(smiles: str, fp_type: str) -> Any:
    return fingerprint(Chem.MolFromSmiles(smiles), fp_type)


@dataclass(frozen=True)
class Similarity:
    """Tanimoto similarity to a target molecule; the target's fingerprint is computed once."""

    target: str
    fp_type: str

    def __call__(self, mol: Chem.Mol) -> float:
        return TanimotoSimilarity(fingerprint(mol, self.fp_type), _target_fingerprint(self.target, self.fp_type))


def parse_formula(formula: str) -> list[tuple[str, int]]:
    """[(element, count)] of a Hill-style formula such as C16H15F6N5O (a missing count is 1)."""
    return [(element, int(count) if count else 1) for element, count in re.findall(r"([A-Z][a-z]?)(\d*)", formula)]


@dataclass(frozen=True)
class FormulaIsomer:
    """Closeness to a molecular formula (GuacaMol's IsomerScoringFunction, geometric variant): the geometric mean
    of Gaussian(n_e, 1) on the count of each element e of the formula and Gaussian(n, 2) on the total atom count
    with hydrogens. Elements outside the formula are penalised only through the total."""

    formula: str

    def __call__(self, mol: Chem.Mol) -> float:
        counts = parse_formula(self.formula)
        scores = [Gaussian(n, 1.0)(AtomCount(element)(mol)) for element, n in counts]
        scores.append(Gaussian(sum(n for _, n in counts), 2.0)(num_atoms(mol)))
        return geometric_mean(scores)


# --- the multi-property objectives --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Term:
    """One property of an MPO and how it is scored; without a modifier the raw property (a similarity) is the score."""

    name: str
    measure: Property
    modifier: Modifier | None = None

    def __call__(self, mol: Chem.Mol) -> float:
        x = self.measure(mol)
        return x if self.modifier is None else self.modifier(x)


@dataclass(frozen=True)
class MPO:
    """A GuacaMol multi-property objective: the geometric mean of its terms."""

    terms: tuple[Term, ...]

    def components(self, mol: Chem.Mol) -> dict[str, float]:
        """Each term's score, to see which property holds a molecule back."""
        return {term.name: term(mol) for term in self.terms}

    def __call__(self, mol: Chem.Mol) -> float:
        return geometric_mean([term(mol) for term in self.terms])


TARGETS = {
    "osimertinib": "COc1cc(N(C)CCN(C)C)c(NC(=O)C=C)cc1Nc2nccc(n2)c3cn(C)c4ccccc34",
    "fexofenadine": "CC(C)(C(=O)O)c1ccc(cc1)C(O)CCCN2CCC(CC2)C(O)(c3ccccc3)c4ccccc4",
    "ranolazine": "COc1ccccc1OCC(O)CN2CCN(CC(=O)Nc3c(C)cccc3C)CC2",
    "perindopril": "O=C(OCC)C(NC(C(=O)N1C(C(=O)O)CC2CCCCC12)C)CCC",
    "amlodipine": r"Clc1ccccc1C2C(=C(/N/C(=C2/C(=O)OCC)COCCN)C)\C(=O)OC",
    "sitagliptin": "Fc1cc(c(F)cc1F)CC(N)CC(=O)N3Cc2nnc(n2CC3)C(F)(F)F",
    "zaleplon": "O=C(C)N(CC)C1=CC=CC(C2=CC=NC3=C(C=NN23)C#N)=C1",
}
"""The GuacaMol target SMILES, as published (the similarity terms compare against these exact structures)."""

_SITAGLIPTIN = Chem.MolFromSmiles(TARGETS["sitagliptin"])

MPOS: dict[str, MPO] = {
    # Keep osimertinib's scaffold (FCFP4) but move away from the exact molecule (ECFP6), more polar and less greasy.
    "osimertinib-mpo": MPO((
        Term("FCFP4 similarity", Similarity(TARGETS["osimertinib"], "FCFP4"), Clipped(0.8)),
        Term("ECFP6 similarity", Similarity(TARGETS["osimertinib"], "ECFP6"), MinGaussian(0.85, 0.1)),
        Term("TPSA", tpsa, MaxGaussian(100.0, 10.0)),
        Term("logP", logp, MinGaussian(1.0, 1.0)),
    )),
    # A less greasy fexofenadine.
    "fexofenadine-mpo": MPO((
        Term("AP similarity", Similarity(TARGETS["fexofenadine"], "AP"), Clipped(0.8)),
        Term("TPSA", tpsa, MaxGaussian(90.0, 10.0)),
        Term("logP", logp, MinGaussian(4.0, 1.0)),
    )),
    # The v2 suite's ranolazine_mpo (geometric, with TPSA), not the older arithmetic start_pop_ranolazine.
    "ranolazine-mpo": MPO((
        Term("AP similarity", Similarity(TARGETS["ranolazine"], "AP"), Clipped(0.7)),
        Term("logP", logp, MaxGaussian(7.0, 1.0)),
        Term("TPSA", tpsa, MaxGaussian(95.0, 20.0)),
        Term("fluorine count", AtomCount("F"), Gaussian(1.0, 1.0)),
    )),
    # Perindopril with two aromatic rings (it has none).
    "perindopril-mpo": MPO((
        Term("ECFP4 similarity", Similarity(TARGETS["perindopril"], "ECFP4")),
        Term("aromatic rings", num_aromatic_rings, Gaussian(2.0, 0.5)),
    )),
    # Amlodipine with three rings (it has two).
    "amlodipine-mpo": MPO((
        Term("ECFP4 similarity", Similarity(TARGETS["amlodipine"], "ECFP4")),
        Term("rings", num_rings, Gaussian(3.0, 0.5)),
    )),
    # A molecule unlike sitagliptin with its logP, TPSA and formula.
    "sitagliptin-mpo": MPO((
        Term("ECFP4 similarity", Similarity(TARGETS["sitagliptin"], "ECFP4"), Gaussian(0.0, 0.1)),
        Term("logP", logp, Gaussian(logp(_SITAGLIPTIN), 0.2)),
        Term("TPSA", tpsa, Gaussian(tpsa(_SITAGLIPTIN), 5.0)),
        Term("formula C16H15F6N5O", FormulaIsomer("C16H15F6N5O")),
    )),
    # Zaleplon-like, with another formula than zaleplon's C17H15N5O.
    "zaleplon-mpo": MPO((
        Term("ECFP4 similarity", Similarity(TARGETS["zaleplon"], "ECFP4")),
        Term("formula C19H17N3O2", FormulaIsomer("C19H17N3O2")),
    )),
}


# --- QED and penalised logP ----------------------------------------------------------------------------------------


def qed(mol: Chem.Mol) -> float:
    """Bickerton et al. 2012's quantitative estimate of drug-likeness with its mean weights (RDKit's QED)."""
    return QED.qed(mol)


@cache
def _sascorer() -> ModuleType:
    """RDKit's Contrib SA scorer, loaded from its file: Contrib is not a package, and loading it this way
    leaves sys.path alone. Its fragment table is read on first use."""
    path = os.path.join(RDConfig.RDContribDir, "SA_Score", "sascorer.py")
    spec = importlib.util.spec_from_file_location("sascorer", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"RDKit's SA scorer is missing at {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sa_score(mol: Chem.Mol) -> float:
    """Synthetic accessibility (Ertl & Schuffenhauer 2009), 1 (easy) to 10 (hard)."""
    return float(_sascorer().calculateScore(mol))


def large_rings(mol: Chem.Mol) -> int:
    """Rings of more than six atoms, in RDKit's ring perception (symmetrised SSSR)."""
    return sum(len(ring) > 6 for ring in mol.GetRingInfo().AtomRings())


def penalized_logp(mol: Chem.Mol) -> float:
    """logP - SA - cycle, unnormalised: the scale on which JT-VAE (Jin et al. 2018) and GCPN (You et al. 2018)
    report their results. logP is Crippen's, SA is `sa_score`, and cycle is the number of rings of more than
    six atoms, as the JT-VAE paper's text defines it. Their released code subtracts max(0, largest ring size - 6)
    instead, and some code z-scores each term with ZINC250k statistics; neither is done here. The two cycle
    terms agree unless a molecule has several large rings or one of more than seven atoms."""
    return logp(mol) - sa_score(mol) - large_rings(mol)


OBJECTIVES: dict[str, Property] = {**MPOS, "qed": qed, "penalized-logp": penalized_logp}
"""Objective name -> its score of a sanitised molecule (a `Chem.Mol`, not a SMILES: parsing and feasibility
are the oracle's job). Every one lies in [0, 1] except penalised logP."""


def objective(name: str) -> Property:
    """The objective called `name`; a one-line error suggests the closest name."""
    if name not in OBJECTIVES:
        raise UnknownName("objective", name, list(OBJECTIVES))
    return OBJECTIVES[name]


# --- feasibility ----------------------------------------------------------------------------------------------------


def read(smiles: Any) -> Chem.Mol | str:
    """The sanitised molecule, or a short reason why there is none. RDKit's own log lines are silenced, as a
    generative model's junk would otherwise flood the log."""
    if not isinstance(smiles, str):
        return f"not a string ({type(smiles).__name__})"
    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(smiles)
        return mol if mol is not None else _why_unreadable(smiles)


def _why_unreadable(smiles: str) -> str:
    """Tells a syntax error from a chemically impossible structure (a pentavalent carbon, an aromatic ring that
    cannot be kekulised): the second says the model has learnt the grammar but not the chemistry."""
    raw = Chem.MolFromSmiles(smiles, sanitize=False)
    if raw is None:
        return "does not parse"
    try:
        Chem.SanitizeMol(raw)
    except (ValueError, RuntimeError) as err:  # RDKit's MolSanitizeException is a ValueError
        message = str(err).strip().splitlines()
        return f"does not sanitise: {message[0]}" if message else "does not sanitise"
    return "does not parse"


def structure_problem(mol: Chem.Mol) -> str | None:
    """Why a sanitised molecule is not one designable compound, or None. Salts and mixtures (several fragments)
    would let a model score a property by mixing compounds; a wildcard atom is not an element."""
    if mol.GetNumAtoms() == 0:
        return "empty"
    fragments = len(Chem.GetMolFrags(mol))
    if fragments > 1:
        return f"{fragments} fragments"
    if any(atom.GetAtomicNum() == 0 for atom in mol.GetAtoms()):
        return "wildcard atom"
    return None


@cache
def _pains_catalog() -> FilterCatalog:
    params = FilterCatalogParams()
    params.AddCatalog(FilterCatalogParams.FilterCatalogs.PAINS)
    return FilterCatalog(params)


def filter_problem(mol: Chem.Mol, max_sa: float | None = None, pains: bool = False) -> str | None:
    """Why a molecule fails a task's optional filters, or None: a design a chemist would not make (SA above
    `max_sa`) or would distrust in an assay (a PAINS alert, Baell & Holloway 2010) is not a real success."""
    if max_sa is not None:
        sa = sa_score(mol)
        if sa > max_sa:
            return f"SA {sa:.2f} > {max_sa:g}"
    if pains:
        match = _pains_catalog().GetFirstMatch(mol)
        if match is not None:
            return f"PAINS: {match.GetDescription()}"
    return None


def check(smiles: Any, *, max_sa: float | None = None, pains: bool = False) -> str | None:
    """None when `smiles` is a feasible design, else a short reason: "does not parse", "does not sanitise: ...",
    "empty", "2 fragments", "wildcard atom", "SA 5.12 > 4.5", "PAINS: <alert>" or "not a string (...)"."""
    mol = read(smiles)
    if isinstance(mol, str):
        return mol
    return structure_problem(mol) or filter_problem(mol, max_sa, pains)


def canonical_smiles(smiles: Any) -> str | None:
    """RDKit's canonical isomeric SMILES, or None when `smiles` does not read as a molecule."""
    mol = read(smiles)
    return None if isinstance(mol, str) else Chem.MolToSmiles(mol)


def _canonical_molecule(mol: Chem.Mol) -> Chem.Mol:
    """The molecule re-read from its canonical SMILES. Descriptors sum atom contributions in atom order, so two
    spellings of one molecule can differ in the last bits; scoring the canonical form makes the answer a pure
    function of the key, which is what lets the budgeted oracle cache by key."""
    with rdBase.BlockLogs():
        again = Chem.MolFromSmiles(Chem.MolToSmiles(mol))
    return mol if again is None else again


# --- the oracle -------------------------------------------------------------------------------------------------------


class MoleculeOracle:
    """An objective of `OBJECTIVES` as an `Oracle` over SMILES strings: reward NaN exactly where a design is
    infeasible (`check`, with this oracle's filters). Anything that is not a SMILES of one molecule, including
    non-strings, is infeasible, never an error. `reasons(designs)` says why each design is infeasible (None
    where feasible): `OracleOutput.components` holds floats only, so the reasons live here.

    floor and optimum: 0 and 1 for the MPOs and QED (their scores lie in [0, 1]; 1 is the upper bound of the
    definition, which not every objective reaches: QED's best known molecules score about 0.95);
    `PENALIZED_LOGP_FLOOR` and None for penalised logP, which is unbounded both ways.
    """

    def __init__(self, objective_name: str, *, max_sa: float | None = None, pains: bool = False):
        self.score = objective(objective_name)
        if max_sa is not None and not 1.0 <= max_sa <= 10.0:
            raise ValueError(f"max_sa={max_sa} lies outside the SA score's range 1..10")
        self.objective, self.max_sa, self.pains = objective_name, max_sa, pains
        self.name = objective_name + (f"-sa{max_sa:g}" if max_sa is not None else "") + ("-nopains" if pains else "")
        unbounded = objective_name == "penalized-logp"
        self.floor = PENALIZED_LOGP_FLOOR if unbounded else 0.0
        self.optimum: float | None = None if unbounded else 1.0

    def key(self, design: Any) -> str:
        """Canonical isomeric SMILES, so that two spellings of one molecule are one measurement; the raw string
        (as text) when it does not read as a molecule."""
        canonical = canonical_smiles(design)
        return str(design) if canonical is None else canonical

    def feasible_molecule(self, design: Any) -> Chem.Mol | str:
        """The molecule to score (the canonical form) when the design is feasible, else the reason it is not."""
        mol = read(design)
        if isinstance(mol, str):
            return mol
        mol = _canonical_molecule(mol)
        return structure_problem(mol) or filter_problem(mol, self.max_sa, self.pains) or mol

    def assess(self, design: Any) -> tuple[float, str | None]:
        """(reward, None) for a feasible design, (NaN, reason) otherwise."""
        mol = self.feasible_molecule(design)
        if isinstance(mol, str):
            return math.nan, mol
        with rdBase.BlockLogs():
            value = float(self.score(mol))
        if not math.isfinite(value):  # would break "NaN exactly where infeasible"
            raise RuntimeError(f"{self.name}: non-finite score {value} for feasible design {design!r}")
        return value, None

    def reasons(self, designs: Sequence[Any]) -> list[str | None]:
        """Why each design is infeasible, None where it is feasible."""
        checked = [self.feasible_molecule(design) for design in designs]
        return [mol if isinstance(mol, str) else None for mol in checked]

    def __call__(self, designs: Sequence[Any]) -> OracleOutput:
        rewards = [self.assess(design)[0] for design in designs]
        reward = np.array(rewards, dtype=np.float64).reshape(len(rewards))
        return OracleOutput(reward=reward, feasible=~np.isnan(reward))
