"""GB-GA's graph moves on molecules: children are molecules the graph model holds, differ from their parents,
and come from the caller's generator alone.

Validity is checked here with RDKit calls written out, not with the module's own `admissible`, so that a
check the module forgets shows up."""

from __future__ import annotations

import pytest
import torch
from rdkit import Chem

from domains.molecules.graphs import NODE_TYPES, encode
from domains.molecules.operators import MUTATIONS, MoleculeOperators, _parse

MAX_ATOMS = 27
OPS = MoleculeOperators(MAX_ATOMS)

# Drugs within MOSES's filters: uncharged C N O F S Cl Br, at most 27 heavy atoms, rings of five to seven.
DRUGS = [
    "CC(=O)Oc1ccccc1C(=O)O",  # aspirin
    "Cn1c(=O)c2c(ncn2C)n(C)c1=O",  # caffeine
    "CC(C)Cc1ccc(C(C)C(=O)O)cc1",  # ibuprofen
    "CC(=O)Nc1ccc(O)cc1",  # paracetamol
    "CN1CCC[C@H]1c1cccnc1",  # nicotine
    "CN1C(=O)CN=C(c2ccccc2)c2cc(Cl)ccc21",  # diazepam
    "CNCCC(Oc1ccc(C(F)(F)F)cc1)c1ccccc1",  # fluoxetine
    "Cc1ccc(-c2cc(C(F)(F)F)nn2-c2ccc(S(N)(=O)=O)cc2)cc1",  # celecoxib
    "CN(C)C(=N)NC(=N)N",  # metformin
    "CCN(CC)CC(=O)Nc1c(C)cccc1C",  # lidocaine
    "COc1ccc2cc([C@H](C)C(=O)O)ccc2c1",  # naproxen
    "CC(C)(C)NCC(O)c1ccc(O)c(CO)c1",  # salbutamol
    "CC(C)NCC(O)COc1ccc(CC(N)=O)cc1",  # atenolol
    "CC(C)NCC(O)COc1cccc2ccccc12",  # propranolol
    "Cc1cc(NS(=O)(=O)c2ccc(N)cc2)no1",  # sulfamethoxazole
    "CN(C)CCCN1c2ccccc2Sc2ccc(Cl)cc21",  # chlorpromazine
    "O=C(CCCN1CCC(O)(c2ccc(Cl)cc2)CC1)c1ccc(F)cc1",  # haloperidol
    "NC(=O)N1c2ccccc2C=Cc2ccccc21",  # carbamazepine
    "O=C1NC(=O)C(c2ccccc2)(c2ccccc2)N1",  # phenytoin
    "Cn1c(=O)c2[nH]cnc2n(C)c1=O",  # theophylline
    "CCOC(=O)c1ccc(N)cc1",  # benzocaine
    "O=C(O)c1cn(C2CC2)c2cc(N3CCNCC3)c(F)cc2c1=O",  # ciprofloxacin
    "O=C1CN=C(c2ccccn2)c2cc(Br)ccc2N1",  # bromazepam
]
DESIGNS = (DRUGS * 3)[:50]
PARTNERS = DESIGNS[7:] + DESIGNS[:7]  # every pair two different drugs
UNPARSABLE = ["not a smiles", "C1CC", "C(C)(C)(C)(C)C", ""]  # gibberish, open ring, five-valent carbon, empty


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def canonical(smiles: str, stereo: bool = True) -> str:
    mol = Chem.MolFromSmiles(smiles)
    if not stereo:
        Chem.RemoveStereochemistry(mol)
    return Chem.MolToSmiles(mol)


def assert_holdable(children: list[str]) -> None:
    """Every child is a canonical, sanitised, single-fragment molecule of allowed uncharged atoms within
    MAX_ATOMS, and the graph model encodes the lot."""
    for child in children:
        mol = Chem.MolFromSmiles(child)
        assert mol is not None, child
        assert Chem.MolToSmiles(mol) == child
        assert 0 < mol.GetNumAtoms() <= MAX_ATOMS, child
        assert len(Chem.GetMolFrags(mol)) == 1, child
        assert all(a.GetSymbol() in NODE_TYPES[1:] and a.GetFormalCharge() == 0 for a in mol.GetAtoms()), child
    graphs = encode(children, MAX_ATOMS)
    assert graphs.nodes.shape == (len(children), MAX_ATOMS)


def test_the_drugs_are_holdable():
    assert_holdable([canonical(s) for s in DRUGS])


def test_same_generator_seed_gives_the_same_children():
    assert OPS.mutate(DESIGNS, 0.1, gen(1)) == OPS.mutate(DESIGNS, 0.1, gen(1))
    assert OPS.crossover(DESIGNS, PARTNERS, gen(1)) == OPS.crossover(DESIGNS, PARTNERS, gen(1))
    assert OPS.mutate(DESIGNS, 1.0, gen(1)) != OPS.mutate(DESIGNS, 1.0, gen(2))


def test_mutation_at_rate_zero_returns_the_designs_canonicalised():
    assert OPS.mutate(DESIGNS, 0.0, gen()) == [canonical(s) for s in DESIGNS]


def test_mutation_at_rate_one_gives_valid_children_that_mostly_differ():
    children = OPS.mutate(DESIGNS, 1.0, gen())
    assert_holdable(children)
    changed = sum(c != canonical(p, stereo=False) for c, p in zip(children, DESIGNS))
    assert changed >= 0.8 * len(DESIGNS)


def test_mutation_probability_is_the_rate_per_atom():
    aspirin = canonical(DRUGS[0])  # 13 heavy atoms: rate 1/26 mutates half the copies
    children = OPS.mutate([aspirin] * 200, 1 / 26, gen())
    assert 0.35 < sum(c != aspirin for c in children) / 200 < 0.65


def test_every_move_gives_valid_children_on_drugs():
    g = gen()
    for name, move in MUTATIONS.items():
        valid = []
        for smiles in DRUGS:
            parent = _parse(smiles)
            edited = move(parent.mol, g)
            child = None if edited is None else OPS.finish(edited, parent.ring_limit)
            if child is not None and child != parent.flat:
                valid.append(child)
        assert len(valid) >= 5, name  # each move acts on a fair share of drugs on one draw each
        assert_holdable(valid)


def test_crossover_gives_valid_children_that_mostly_differ_from_both_parents():
    children = OPS.crossover(DESIGNS, PARTNERS, gen())
    assert_holdable(children)
    new = sum(c not in (canonical(a, False), canonical(b, False)) for c, a, b in zip(children, DESIGNS, PARTNERS))
    assert new >= 0.5 * len(DESIGNS)


def test_crossover_of_a_molecule_with_itself_or_an_atom_keeps_the_parent():
    assert OPS.crossover(["C"], ["C"], gen()) == ["C"]  # nothing to cut
    assert OPS.crossover(["c1ccccc1"], ["CCO"], gen()) == ["c1ccccc1"]  # no cut the two share


def test_children_stay_within_max_atoms():
    small = MoleculeOperators(14)
    parents = [s for s in DRUGS if Chem.MolFromSmiles(s).GetNumAtoms() <= 14]
    for children in (small.mutate(parents * 4, 1.0, gen()), small.crossover(parents * 4, parents[::-1] * 4, gen())):
        assert all(Chem.MolFromSmiles(c).GetNumAtoms() <= 14 for c in children)


def test_children_carry_no_stereo_isotope_or_atom_map():
    children = OPS.mutate(["[13CH3:5][C@H](N)C(=O)O"] * 20, 1.0, gen())
    children += OPS.crossover(["[13CH3:5][C@H](N)C(=O)O"] * 20, ["C/C=C/CO"] * 20, gen())
    assert not any(set(c) & set("@/\\:") or "13" in c for c in children), children


@pytest.mark.parametrize("bad", UNPARSABLE)
def test_unparsable_designs_do_not_crash(bad):
    aspirin = canonical(DRUGS[0])
    assert OPS.mutate([bad, DRUGS[0]], 0.0, gen()) == [bad, aspirin]
    assert OPS.mutate([bad], 1.0, gen()) == [bad]
    assert OPS.crossover([bad, DRUGS[0], bad], [DRUGS[0], bad, bad], gen()) == [aspirin, aspirin, bad]
