"""Molecule oracles: each GuacaMol MPO against its published definition computed here by hand, QED, penalised
logP, feasibility reasons and the oracle contract.

The expected values use RDKit descriptor calls and GuacaMol's modifier formulas written out below, never the
module's own helpers, so that a wrong parameter, fingerprint or target in the module shows up as a mismatch.
"""

import importlib
import math
import os
import re
import sys
from collections import Counter

import numpy as np
import pytest
from rdkit import Chem, RDConfig, rdBase
from rdkit.Chem import QED, AllChem, Descriptors, rdFingerprintGenerator, rdMolDescriptors
from rdkit.DataStructs import TanimotoSimilarity

from domains.base import Oracle, UnknownName
from domains.molecules.oracles import MPOS, OBJECTIVES, PENALIZED_LOGP_FLOOR, MoleculeOracle, Similarity, check

ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"
CAFFEINE = "Cn1c(=O)c2c(ncn2C)n(C)c1=O"
STRYCHNINE = "O=C1C[C@H]2OCC=C3CN4CC[C@]56[C@@H]4C[C@@H]3[C@@H]2[C@@H]5N1c1ccccc16"  # SA about 5.7
RHODANINE = "S=C1SC(=Cc2ccccc2)C(=O)N1"  # a 5-benzylidene rhodanine: PAINS ene_rhod_A

# The targets as GuacaMol's standard_benchmarks.py spells them.
OSIMERTINIB = "COc1cc(N(C)CCN(C)C)c(NC(=O)C=C)cc1Nc2nccc(n2)c3cn(C)c4ccccc34"
FEXOFENADINE = "CC(C)(C(=O)O)c1ccc(cc1)C(O)CCCN2CCC(CC2)C(O)(c3ccccc3)c4ccccc4"
RANOLAZINE = "COc1ccccc1OCC(O)CN2CCN(CC(=O)Nc3c(C)cccc3C)CC2"
PERINDOPRIL = "O=C(OCC)C(NC(C(=O)N1C(C(=O)O)CC2CCCCC12)C)CCC"
AMLODIPINE = r"Clc1ccccc1C2C(=C(/N/C(=C2/C(=O)OCC)COCCN)C)\C(=O)OC"
SITAGLIPTIN = "Fc1cc(c(F)cc1F)CC(N)CC(=O)N3Cc2nnc(n2CC3)C(F)(F)F"
ZALEPLON = "O=C(C)N(CC)C1=CC=CC(C2=CC=NC3=C(C=NN23)C#N)=C1"


# --- GuacaMol's formulas, written out ---------------------------------------------------------------------------


def gaussian(x, mu, sigma):  # GaussianModifier
    return math.exp(-0.5 * ((x - mu) / sigma) ** 2)


def at_most(x, mu, sigma):  # MinGaussianModifier: 1 below mu
    return 1.0 if x <= mu else gaussian(x, mu, sigma)


def at_least(x, mu, sigma):  # MaxGaussianModifier: 1 above mu
    return 1.0 if x >= mu else gaussian(x, mu, sigma)


def clipped(x, upper_x):  # ClippedScoreModifier(upper_x), lower_x = 0, scores 0..1
    return min(max(x / upper_x, 0.0), 1.0)


def gmean(*scores):
    return math.prod(scores) ** (1.0 / len(scores))


def sim(mol, target_smiles, kind):
    """Tanimoto on GuacaMol's unfolded count fingerprints."""
    if kind == "AP":
        generator = rdFingerprintGenerator.GetAtomPairGenerator(maxDistance=10)
    elif kind == "FCFP4":
        generator = rdFingerprintGenerator.GetMorganGenerator(
            radius=2, atomInvariantsGenerator=rdFingerprintGenerator.GetMorganFeatureAtomInvGen())
    else:
        generator = rdFingerprintGenerator.GetMorganGenerator(radius={"ECFP4": 2, "ECFP6": 3}[kind])
    target = Chem.MolFromSmiles(target_smiles)
    return TanimotoSimilarity(generator.GetSparseCountFingerprint(mol), generator.GetSparseCountFingerprint(target))


def formula_score(mol, formula, total):
    """IsomerScoringFunction: Gaussian(n, 1) per element of the formula, Gaussian(total, 2) on all atoms with H."""
    with_hs = Chem.AddHs(mol)
    counts = Counter(atom.GetSymbol() for atom in with_hs.GetAtoms())
    return gmean(*[gaussian(counts[element], n, 1.0) for element, n in formula.items()],
                 gaussian(with_hs.GetNumAtoms(), total, 2.0))


def num_fluorines(mol):
    return sum(atom.GetSymbol() == "F" for atom in mol.GetAtoms())


def by_hand(objective, mol):
    logp, tpsa = Descriptors.MolLogP(mol), Descriptors.TPSA(mol)
    if objective == "osimertinib-mpo":
        return gmean(clipped(sim(mol, OSIMERTINIB, "FCFP4"), 0.8), at_most(sim(mol, OSIMERTINIB, "ECFP6"), 0.85, 0.1),
                     at_least(tpsa, 100, 10), at_most(logp, 1, 1))
    if objective == "fexofenadine-mpo":
        return gmean(clipped(sim(mol, FEXOFENADINE, "AP"), 0.8), at_least(tpsa, 90, 10), at_most(logp, 4, 1))
    if objective == "ranolazine-mpo":
        return gmean(clipped(sim(mol, RANOLAZINE, "AP"), 0.7), at_least(logp, 7, 1), at_least(tpsa, 95, 20),
                     gaussian(num_fluorines(mol), 1, 1))
    if objective == "perindopril-mpo":
        return gmean(sim(mol, PERINDOPRIL, "ECFP4"), gaussian(rdMolDescriptors.CalcNumAromaticRings(mol), 2, 0.5))
    if objective == "amlodipine-mpo":
        return gmean(sim(mol, AMLODIPINE, "ECFP4"), gaussian(rdMolDescriptors.CalcNumRings(mol), 3, 0.5))
    if objective == "sitagliptin-mpo":
        target = Chem.MolFromSmiles(SITAGLIPTIN)
        return gmean(gaussian(sim(mol, SITAGLIPTIN, "ECFP4"), 0, 0.1),
                     gaussian(logp, Descriptors.MolLogP(target), 0.2), gaussian(tpsa, Descriptors.TPSA(target), 5),
                     formula_score(mol, {"C": 16, "H": 15, "F": 6, "N": 5, "O": 1}, 43))
    if objective == "zaleplon-mpo":
        return gmean(sim(mol, ZALEPLON, "ECFP4"), formula_score(mol, {"C": 19, "H": 17, "N": 3, "O": 2}, 41))
    raise AssertionError(objective)


def sascorer():
    path = os.path.join(RDConfig.RDContribDir, "SA_Score")
    if path not in sys.path:
        sys.path.append(path)
    return importlib.import_module("sascorer")


TARGET_OF = {"osimertinib-mpo": OSIMERTINIB, "fexofenadine-mpo": FEXOFENADINE, "ranolazine-mpo": RANOLAZINE,
             "perindopril-mpo": PERINDOPRIL, "amlodipine-mpo": AMLODIPINE, "sitagliptin-mpo": SITAGLIPTIN,
             "zaleplon-mpo": ZALEPLON}

# Close analogues (one small change each), so that similarity terms sit between 0 and 1 where a wrong
# fingerprint type or threshold would show: aspirin and caffeine are too far from every target for that.
ANALOGUE_OF = {
    "osimertinib-mpo": "COc1cc(N(C)CCN(C)CC)c(NC(=O)C=C)cc1Nc2nccc(n2)c3cn(C)c4ccccc34",  # ECFP6 0.89 > 0.85
    "fexofenadine-mpo": "CC(C)(C(=O)OC)c1ccc(cc1)C(O)CCCN2CCC(CC2)C(O)(c3ccccc3)c4ccccc4",
    "ranolazine-mpo": "CCOc1ccccc1OCC(O)CN2CCN(CC(=O)Nc3c(C)cccc3C)CC2",
    "perindopril-mpo": "O=C(OC)C(NC(C(=O)N1C(C(=O)O)CC2CCCCC12)C)CCC",
    "amlodipine-mpo": "Clc1ccccc1C2C(=C(NC(=C2C(=O)OCC)COCCN)C)C(=O)OCC",
    "sitagliptin-mpo": "Fc1cc(c(F)cc1F)CC(N)CC(=O)N3Cc2nnc(n2CC3)C",
    "zaleplon-mpo": "O=C(C)N(C)C1=CC=CC(C2=CC=NC3=C(C=NN23)C#N)=C1",
}


# --- the MPOs -------------------------------------------------------------------------------------------------------


def test_the_seven_mpos_are_there():
    assert set(MPOS) == set(TARGET_OF)
    assert set(OBJECTIVES) == set(TARGET_OF) | {"qed", "penalized-logp"}


@pytest.mark.parametrize("objective", sorted(TARGET_OF))
@pytest.mark.parametrize("molecule", ["target", "analogue", ASPIRIN, CAFFEINE])
def test_mpo_matches_its_definition_by_hand(objective, molecule):
    smiles = {"target": TARGET_OF[objective], "analogue": ANALOGUE_OF[objective]}.get(molecule, molecule)
    out = MoleculeOracle(objective)([smiles])
    expected = by_hand(objective, Chem.MolFromSmiles(smiles))
    assert out.feasible.tolist() == [True]
    assert out.reward[0] == pytest.approx(expected, rel=1e-6, abs=1e-9)
    assert 0.0 <= out.reward[0] <= 1.0


@pytest.mark.parametrize("objective", sorted(TARGET_OF))
def test_target_is_fully_similar_to_itself(objective):
    mol = Chem.MolFromSmiles(TARGET_OF[objective])
    similarities = [term.measure(mol) for term in MPOS[objective].terms if "similarity" in term.name]
    assert similarities and all(value == pytest.approx(1.0, rel=1e-12) for value in similarities)


@pytest.mark.parametrize("objective, expected", [
    # perindopril has no aromatic ring: sqrt(1 * exp(-(0 - 2)^2 / (2 * 0.5^2))) = exp(-4)
    ("perindopril-mpo", math.exp(-4)),
    # amlodipine has two rings: sqrt(1 * exp(-(2 - 3)^2 / (2 * 0.5^2))) = exp(-1)
    ("amlodipine-mpo", math.exp(-1)),
    # sitagliptin has its own logP, TPSA and formula, but similarity 1: (exp(-50) * 1 * 1 * 1)^(1/4)
    ("sitagliptin-mpo", math.exp(-12.5)),
    # zaleplon C17H15N5O against C19H17N3O2 (41 atoms, zaleplon 38): C, H, N off by 2, O by 1, total by 3
    ("zaleplon-mpo", math.sqrt(math.exp(-(2 + 2 + 2 + 0.5 + 0.5 * 1.5 ** 2) / 5))),
])
def test_targets_closed_form(objective, expected):
    assert MoleculeOracle(objective)([TARGET_OF[objective]]).reward[0] == pytest.approx(expected, rel=1e-9)


@pytest.mark.skipif(not hasattr(AllChem, "GetMorganFingerprint"), reason="RDKit dropped the legacy fingerprint calls")
@pytest.mark.parametrize("kind, legacy", [
    ("ECFP4", lambda mol: AllChem.GetMorganFingerprint(mol, 2)),
    ("ECFP6", lambda mol: AllChem.GetMorganFingerprint(mol, 3)),
    ("FCFP4", lambda mol: AllChem.GetMorganFingerprint(mol, 2, useFeatures=True)),
    ("AP", lambda mol: AllChem.GetAtomPairFingerprint(mol, maxLength=10)),
])
def test_similarities_match_guacamols_legacy_fingerprint_calls(kind, legacy):
    for target in (OSIMERTINIB, FEXOFENADINE):
        for smiles in (ASPIRIN, CAFFEINE, RANOLAZINE):
            mol, target_mol = Chem.MolFromSmiles(smiles), Chem.MolFromSmiles(target)
            with rdBase.BlockLogs():  # the legacy calls log a deprecation warning each
                expected = TanimotoSimilarity(legacy(mol), legacy(target_mol))
            assert Similarity(target, kind)(mol) == pytest.approx(expected, rel=1e-12)


# --- QED and penalised logP -------------------------------------------------------------------------------------------


def test_qed_of_aspirin_is_rdkits():
    assert MoleculeOracle("qed")([ASPIRIN]).reward[0] == pytest.approx(QED.qed(Chem.MolFromSmiles(ASPIRIN)), rel=1e-12)


@pytest.mark.parametrize("smiles, large_rings", [
    (ASPIRIN, 0),
    ("c1ccc(cc1)C1CCCCCCC1", 1),  # cyclooctylbenzene
    ("C1CCCCCCC1CC1CCCCCCC1", 2),  # two cyclooctyls: the count, not the largest ring size - 6
])
def test_penalized_logp_by_hand(smiles, large_rings):
    mol = Chem.MolFromSmiles(smiles)
    expected = Descriptors.MolLogP(mol) - sascorer().calculateScore(mol) - large_rings
    assert MoleculeOracle("penalized-logp")([smiles]).reward[0] == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_floors_and_optima():
    for name in OBJECTIVES:
        oracle = MoleculeOracle(name)
        assert isinstance(oracle, Oracle)
        if name == "penalized-logp":
            assert (oracle.floor, oracle.optimum) == (PENALIZED_LOGP_FLOOR, None)
        else:
            assert (oracle.floor, oracle.optimum) == (0.0, 1.0)


# --- feasibility -----------------------------------------------------------------------------------------------------


def test_check_reasons():
    assert check(ASPIRIN) is None
    assert check("C1CC") == "does not parse"
    assert check("CCO.CC") == "2 fragments"
    assert check("C(C)(C)(C)(C)C").startswith("does not sanitise")
    assert check("*C") == "wildcard atom"
    assert check("") == "empty"
    assert check(RHODANINE) is None
    assert check(RHODANINE, pains=True) == "PAINS: ene_rhod_A(235)"
    assert check(ASPIRIN, max_sa=4.5, pains=True) is None


def test_sa_filter_reason_carries_the_score():
    sa = sascorer().calculateScore(Chem.MolFromSmiles(STRYCHNINE))
    assert sa > 4.5
    reason = check(STRYCHNINE, max_sa=4.5)
    assert re.fullmatch(r"SA \d+\.\d\d > 4\.5", reason)
    assert reason == f"SA {sa:.2f} > 4.5"
    assert check(STRYCHNINE, max_sa=6.0) is None


def test_filters_make_designs_infeasible_in_the_oracle():
    oracle = MoleculeOracle("qed", max_sa=4.5, pains=True)
    out = oracle([ASPIRIN, RHODANINE, STRYCHNINE])
    assert out.feasible.tolist() == [True, False, False]
    assert oracle.reasons([ASPIRIN, RHODANINE, STRYCHNINE])[0] is None
    assert oracle.name == "qed-sa4.5-nopains"


GARBAGE = ["", "not a smiles", "C1CC(", "((", "\U0001f48a", "\x00", "CCO.CC", "*", None, 42]


def test_garbage_is_infeasible_not_an_error():
    oracle = MoleculeOracle("osimertinib-mpo")
    out = oracle(GARBAGE + [CAFFEINE])
    assert out.reward.dtype == np.float64 and out.feasible.dtype == bool
    assert out.feasible.tolist() == [False] * len(GARBAGE) + [True]
    assert np.isnan(out.reward[:-1]).all() and np.isfinite(out.reward[-1])
    reasons = oracle.reasons(GARBAGE + [CAFFEINE])
    assert all(isinstance(reason, str) and reason for reason in reasons[:-1]) and reasons[-1] is None
    assert oracle([]).reward.shape == (0,)


def test_key_is_the_canonical_smiles():
    oracle = MoleculeOracle("qed")
    assert oracle.key("OCC") == oracle.key("CCO") == "CCO"
    assert oracle.key("C1CC") == "C1CC"
    assert oracle.key(None) == "None"
    assert oracle.key("C[C@H](N)C(=O)O") != oracle.key("C[C@@H](N)C(=O)O")  # isomeric
    a, b = oracle(["OCC", "CCO"]).reward
    assert a == b  # one key, one measurement, to the bit


def test_unknown_objective_suggests_the_closest():
    with pytest.raises(UnknownName, match=r"unknown objective 'osimertinib'; did you mean 'osimertinib-mpo'\?") as err:
        MoleculeOracle("osimertinib")
    assert isinstance(err.value, ValueError) and "\n" not in str(err.value)
