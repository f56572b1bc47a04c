"""Graph moves on molecules for genetic algorithms: the moves of Jensen's GB-GA.

GB-GA (Jensen, Chem. Sci. 2019) is the genetic baseline of PMO (Gao et al. 2022), where it is among the
strongest molecular optimisers: it edits the molecular graph, not a string, so nearly every move that
sanitises is a molecule a chemist would recognise as a neighbour of its parent. GB-GA writes its moves as
reaction SMARTS and draws from Python's `random` and numpy; here they are direct edits of a kekulised RDKit
molecule (written for this project, not copied), so that every random choice is a draw from the caller's
torch generator and a seeded run breeds the same children.

Every child is checked against what the graph model's vocabulary holds (`domains.molecules.graphs`): it
sanitises, is one fragment of at most `max_atoms` uncharged heavy atoms from C N O F S Cl Br, and
kekulises, so `graphs.encode` takes it whenever it fits the model's slots. Like GB-GA's `ring_OK`, a child is also refused a ring larger than its
parents' largest (and than six), a double bond inside a three- or four-membered ring, or a ring allene.
Two refusals go beyond GB-GA, which leaves them to sanitisation, and sanitisation accepts them: a triple
bond in a ring, and an atom with hydrogens above its lowest valence ([SH] with three bonds, as changing
the N of a dimethylamino group to S makes); drug-like sulfur is hypervalent only as S(=O) without H. Moves drop
stereochemistry (and isotopes): the graph model holds none, and an edit near a stereocentre would make it
meaningless.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import combinations

import torch
from rdkit import Chem

from domains.molecules.graphs import NODE_TYPES

ELEMENTS = NODE_TYPES[1:]
"""The heavy atoms a child may hold: the graph model's vocabulary."""
TRIES = 10
"""Attempts at a valid, different child before the parent is kept (GB-GA also tries ten times)."""

_TABLE = Chem.GetPeriodicTable()
_VALENCES = {e: sorted(_TABLE.GetValenceList(e)) for e in ELEMENTS}
_BOND = {1: Chem.BondType.SINGLE, 2: Chem.BondType.DOUBLE, 3: Chem.BondType.TRIPLE}
_BAD_RINGS = tuple(Chem.MolFromSmarts(s) for s in ("[R]=[R]=[R]", "[r3,r4]=[r3,r4]", "[R]#[R]"))


def _index(n: int, generator: torch.Generator) -> int:
    """A uniform index below n, from the caller's generator."""
    return int(torch.randint(n, (1,), generator=generator))


def _weighted(weights: Sequence[float], generator: torch.Generator) -> int:
    """An index drawn with the given (unnormalised) weights."""
    u = float(torch.rand(1, generator=generator)) * sum(weights)
    for i, w in enumerate(weights):
        u -= w
        if u < 0:
            return i
    return len(weights) - 1


def _valence(atom: Chem.Atom) -> int:
    """Bond orders summed: the molecules here are kekulised, so this is the explicit valence."""
    return round(sum(bond.GetBondTypeAsDouble() for bond in atom.GetBonds()))


@dataclass
class _Parent:
    canonical: str
    """The design as RDKit writes it, stereochemistry kept: what is returned when no move succeeds."""
    flat: str
    """Canonical without stereochemistry, isotopes or atom maps: what a child must differ from to count as a
    change."""
    mol: Chem.Mol
    """Kekulised, as flat, hydrogens implicit everywhere: the molecule the moves edit."""
    ring_limit: int
    """The largest ring a child may have: six, or the parent's largest where that is larger (diazepam's seven)."""


def _parse(design: str) -> _Parent | None:
    """A design the moves can edit, or None for one RDKit does not sanitise (a model's invalid graph)."""
    mol = Chem.MolFromSmiles(design) if isinstance(design, str) else None
    if mol is None or mol.GetNumAtoms() == 0:
        return None
    canonical = Chem.MolToSmiles(mol)
    Chem.RemoveStereochemistry(mol)
    for atom in mol.GetAtoms():  # the graph model holds neither; a stray atom map would confuse molzip
        atom.SetIsotope(0)
        atom.SetAtomMapNum(0)
    flat = Chem.MolToSmiles(mol)
    try:
        Chem.Kekulize(mol, clearAromaticFlags=True)
        # Bracket hydrogens ([nH], [C@H]) are explicit and would not move when an edit changes the atom's
        # bonds; made implicit, sanitisation recounts them after every edit.
        for atom in mol.GetAtoms():
            atom.SetNumExplicitHs(0)
            atom.SetNoImplicit(False)
        mol.UpdatePropertyCache()
    except (ValueError, RuntimeError):
        return None
    rings = [len(r) for r in mol.GetRingInfo().AtomRings()]
    return _Parent(canonical, flat, mol, max([6, *rings]))


# --- mutations: each takes the parent and the generator and returns an edited copy, or None when the
# parent offers no place for the move (the attempt then counts as failed and another move is drawn) ---------


def change_atom(mol: Chem.Mol, generator: torch.Generator) -> Chem.RWMol | None:
    """Another element for a random atom, among those whose largest valence holds its bonds."""
    atom = mol.GetAtomWithIdx(_index(mol.GetNumAtoms(), generator))
    options = [e for e in ELEMENTS if e != atom.GetSymbol() and _VALENCES[e][-1] >= _valence(atom)]
    if not options:
        return None
    child = Chem.RWMol(mol)
    child.GetAtomWithIdx(atom.GetIdx()).SetAtomicNum(_TABLE.GetAtomicNumber(options[_index(len(options), generator)]))
    return child


def append_atom(mol: Chem.Mol, generator: torch.Generator) -> Chem.RWMol | None:
    """A new terminal atom on an atom with enough hydrogens for the bond; GB-GA's odds of single, double
    and triple bonds (0.60, 0.35, 0.05) and its elements for each (any; C N O; C N)."""
    order = 1 + _weighted((0.60, 0.35, 0.05), generator)
    hosts = [a.GetIdx() for a in mol.GetAtoms() if a.GetTotalNumHs() >= order]
    if not hosts:
        return None
    elements = {1: ELEMENTS, 2: ("C", "N", "O"), 3: ("C", "N")}[order]
    host, element = hosts[_index(len(hosts), generator)], elements[_index(len(elements), generator)]
    child = Chem.RWMol(mol)
    child.AddBond(host, child.AddAtom(Chem.Atom(element)), _BOND[order])
    return child


def delete_atom(mol: Chem.Mol, generator: torch.Generator) -> Chem.RWMol | None:
    """A random atom removed; its neighbours, in random order, are joined in a chain of single bonds, so a
    chain atom is cut out, a ring shrinks, and a branch point leaves its branches attached (GB-GA's five
    delete patterns, whose hydrogen conditions sanitisation checks here)."""
    if mol.GetNumAtoms() < 2:
        return None
    idx = _index(mol.GetNumAtoms(), generator)
    neighbours = [a.GetIdx() for a in mol.GetAtomWithIdx(idx).GetNeighbors()]
    neighbours = [j - (j > idx) for j in neighbours]  # RemoveAtom renumbers the atoms after it
    chain = [neighbours[k] for k in torch.randperm(len(neighbours), generator=generator).tolist()]
    child = Chem.RWMol(mol)
    child.RemoveAtom(idx)
    for x, y in zip(chain, chain[1:]):
        if child.GetBondBetweenAtoms(x, y) is None:
            child.AddBond(x, y, Chem.BondType.SINGLE)
    return child


def change_bond_order(mol: Chem.Mol, generator: torch.Generator) -> Chem.RWMol | None:
    """A random bond to another order: lower always, higher when both atoms have the hydrogens to give."""
    if mol.GetNumBonds() == 0:
        return None
    bond = mol.GetBondWithIdx(_index(mol.GetNumBonds(), generator))
    order = round(bond.GetBondTypeAsDouble())
    free = min(bond.GetBeginAtom().GetTotalNumHs(), bond.GetEndAtom().GetTotalNumHs())
    options = [k for k in (1, 2, 3) if k != order and k - order <= free]
    if not options:
        return None
    child = Chem.RWMol(mol)
    child.GetBondWithIdx(bond.GetIdx()).SetBondType(_BOND[options[_index(len(options), generator)]])
    return child


def insert_atom(mol: Chem.Mol, generator: torch.Generator) -> Chem.RWMol | None:
    """A new atom (C, N, O or S at 0.6, 0.2, 0.15, 0.05) put into a random bond, bonded to both ends by
    single bonds: chains lengthen and rings grow."""
    if mol.GetNumBonds() == 0:
        return None
    bond = mol.GetBondWithIdx(_index(mol.GetNumBonds(), generator))
    element = ("C", "N", "O", "S")[_weighted((0.6, 0.2, 0.15, 0.05), generator)]
    i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
    child = Chem.RWMol(mol)
    child.RemoveBond(i, j)
    new = child.AddAtom(Chem.Atom(element))
    child.AddBond(i, new, Chem.BondType.SINGLE)
    child.AddBond(new, j, Chem.BondType.SINGLE)
    return child


def add_ring_bond(mol: Chem.Mol, generator: torch.Generator) -> Chem.RWMol | None:
    """A single bond closing a new three- to six-membered ring along a chain of non-ring atoms whose two
    ends have a hydrogen to give (GB-GA's add_ring, which also keeps to acyclic chains)."""
    distances = Chem.GetDistanceMatrix(mol)
    ends = [a.GetIdx() for a in mol.GetAtoms() if a.GetTotalNumHs() >= 1 and not a.IsInRing()]
    pairs = [(i, j) for i, j in combinations(ends, 2) if 2 <= distances[i][j] <= 5
             and not any(mol.GetAtomWithIdx(k).IsInRing() for k in Chem.GetShortestPath(mol, i, j))]
    if not pairs:
        return None
    i, j = pairs[_index(len(pairs), generator)]
    child = Chem.RWMol(mol)
    child.AddBond(i, j, Chem.BondType.SINGLE)
    return child


def delete_ring_bond(mol: Chem.Mol, generator: torch.Generator) -> Chem.RWMol | None:
    """A random ring bond removed: the ring opens and the molecule stays in one piece."""
    bonds = [b.GetIdx() for b in mol.GetBonds() if b.IsInRing()]
    if not bonds:
        return None
    bond = mol.GetBondWithIdx(bonds[_index(len(bonds), generator)])
    child = Chem.RWMol(mol)
    child.RemoveBond(bond.GetBeginAtomIdx(), bond.GetEndAtomIdx())
    return child


MUTATIONS: dict[str, Callable[[Chem.Mol, torch.Generator], Chem.RWMol | None]] = {
    "change_atom": change_atom,
    "append_atom": append_atom,
    "delete_atom": delete_atom,
    "change_bond_order": change_bond_order,
    "insert_atom": insert_atom,
    "add_ring_bond": add_ring_bond,
    "delete_ring_bond": delete_ring_bond,
}
"""GB-GA's seven moves, drawn uniformly (GB-GA's weights are 0.14 or 0.15 each)."""


# --- crossover: cut both parents, keep a piece of each, join the pieces where they were cut ------------------


def _cut(mol: Chem.Mol, ring: bool, generator: torch.Generator) -> tuple[Chem.Mol, Chem.Mol] | None:
    """The two pieces of a parent cut at a random acyclic single bond (one attachment point, map number 1),
    or at two random single bonds of one ring (attachment points 1 and 2); None where no such cut splits
    the parent in two. Ring cuts take single bonds only, so that the join, a single bond, keeps valences."""
    single = Chem.BondType.SINGLE
    if ring:
        rings = [[i for i in r if mol.GetBondWithIdx(i).GetBondType() == single]
                 for r in mol.GetRingInfo().BondRings()]
        rings = [r for r in rings if len(r) >= 2]
        if not rings:
            return None
        bonds = rings[_index(len(rings), generator)]
        first, second = _index(len(bonds), generator), _index(len(bonds) - 1, generator)
        cut = [bonds[first], bonds[second + (second >= first)]]
    else:
        bonds = [b.GetIdx() for b in mol.GetBonds() if b.GetBondType() == single and not b.IsInRing()]
        if not bonds:
            return None
        cut = [bonds[_index(len(bonds), generator)]]
    labels = [(k, k) for k in range(1, len(cut) + 1)]
    pieces = Chem.GetMolFrags(Chem.FragmentOnBonds(mol, cut, addDummies=True, dummyLabels=labels),
                              asMols=True, sanitizeFrags=False)
    if len(pieces) != 2:  # a ring cut inside a fused system can leave one piece
        return None
    for piece in pieces:
        for atom in piece.GetAtoms():
            if atom.GetAtomicNum() == 0:  # molzip pairs attachment points by atom-map number
                atom.SetAtomMapNum(atom.GetIsotope())
                atom.SetIsotope(0)
    return pieces[0], pieces[1]


def _swap_ends(piece: Chem.Mol) -> Chem.Mol:
    """The piece with attachment points 1 and 2 exchanged: the other way round into the ring."""
    piece = Chem.Mol(piece)
    for atom in piece.GetAtoms():
        if atom.GetAtomicNum() == 0:
            atom.SetAtomMapNum(3 - atom.GetAtomMapNum())
    return piece


class MoleculeOperators:
    """The molecule domain's `Operators` on SMILES designs: GB-GA's graph mutations and cut-and-join
    crossover, with children of at most `max_atoms` heavy atoms (the task sets it above the graph
    model's slots, `tasks.SEARCH_MAX_ATOMS`: a search's children are measured, never encoded)."""

    def __init__(self, max_atoms: int):
        self.max_atoms = max_atoms

    def mutate(self, designs: Sequence[str], rate: float, generator: torch.Generator) -> list[str]:
        """One random GB-GA move for each design with probability min(1, rate * its atoms).

        A molecule has no fixed positions to mutate one by one, so the sequence domain's per-letter rate
        becomes a per-atom rate: the expected number of moves per atom is `rate` (up to the clip at one
        move per molecule), so the genetic algorithm's default 1/32 mutates a 16-atom molecule with
        probability 1/2, as it changes on average half a letter of a 16-long sequence. A mutated molecule
        gets one move, as in GB-GA. A move with no place to act, or whose child is invalid or equal to the
        parent, is redrawn up to `TRIES` times; then the parent is kept. Parsed designs come back
        canonical; one RDKit does not parse comes back as it was."""
        draws = torch.rand(len(designs), generator=generator).tolist()
        children = []
        for design, draw in zip(designs, draws):
            parent = _parse(design)
            if parent is None:
                children.append(design)
            elif draw >= min(1.0, rate * parent.mol.GetNumAtoms()):
                children.append(parent.canonical)
            else:
                children.append(self._mutant(parent, generator))
        return children

    def crossover(self, a: Sequence[str], b: Sequence[str], generator: torch.Generator) -> list[str]:
        """Per pair, a piece of a joined to a piece of b where each was cut: at an acyclic single bond
        (one attachment point) or at two single bonds of a ring (two, so the join closes a new ring), each
        kind with probability 1/2 where both parents allow it, as in GB-GA. A child that is invalid or
        equal to a parent is redrawn up to `TRIES` times; then a is kept. A parent RDKit does not parse
        contributes nothing: the other parent is returned."""
        children = []
        for x, y in zip(a, b):
            pa, pb = _parse(x), _parse(y)
            if pa is None:
                children.append(x if pb is None else pb.canonical)
            elif pb is None:
                children.append(pa.canonical)
            else:
                children.append(self._cross(pa, pb, generator))
        return children

    def _mutant(self, parent: _Parent, generator: torch.Generator) -> str:
        moves = list(MUTATIONS.values())
        for _ in range(TRIES):
            edited = moves[_index(len(moves), generator)](parent.mol, generator)
            child = None if edited is None else self.finish(edited, parent.ring_limit)
            if child is not None and child != parent.flat:
                return child
        return parent.canonical

    def _cross(self, pa: _Parent, pb: _Parent, generator: torch.Generator) -> str:
        kinds = [ring for ring in (False, True) if self._cuttable(pa.mol, ring) and self._cuttable(pb.mol, ring)]
        limit = max(pa.ring_limit, pb.ring_limit)
        for _ in range(TRIES if kinds else 0):
            ring = kinds[_index(len(kinds), generator)]
            cuts = _cut(pa.mol, ring, generator), _cut(pb.mol, ring, generator)
            if cuts[0] is None or cuts[1] is None:
                continue
            left, right = cuts[0][_index(2, generator)], cuts[1][_index(2, generator)]
            if ring and _index(2, generator):
                right = _swap_ends(right)
            try:
                joined = Chem.molzip(left, right)
            except (ValueError, RuntimeError):
                continue
            child = self.finish(joined, limit)
            if child is not None and child not in (pa.flat, pb.flat):
                return child
        return pa.canonical

    @staticmethod
    def _cuttable(mol: Chem.Mol, ring: bool) -> bool:
        if ring:
            return mol.GetRingInfo().NumRings() > 0
        return any(b.GetBondType() == Chem.BondType.SINGLE and not b.IsInRing() for b in mol.GetBonds())

    def finish(self, mol: Chem.Mol, ring_limit: int) -> str | None:
        """The canonical SMILES of an edited molecule, or None where it is not a child the graph model can
        hold. The check runs on the SMILES read back, which is what `graphs.encode` will read."""
        mol = Chem.Mol(mol)
        if Chem.SanitizeMol(mol, catchErrors=True) != Chem.SanitizeFlags.SANITIZE_NONE:
            return None
        child = Chem.MolFromSmiles(Chem.MolToSmiles(mol))
        if child is None or not self.admissible(child, ring_limit):
            return None
        return Chem.MolToSmiles(child)

    def admissible(self, mol: Chem.Mol, ring_limit: int = 6) -> bool:
        """Whether a sanitised molecule is one the graph model holds, with rings GB-GA would accept."""
        if not 0 < mol.GetNumAtoms() <= self.max_atoms or len(Chem.GetMolFrags(mol)) != 1:
            return False
        for atom in mol.GetAtoms():
            if atom.GetSymbol() not in ELEMENTS or atom.GetFormalCharge() or atom.GetNumRadicalElectrons():
                return False
            if atom.GetTotalNumHs() and atom.GetTotalValence() != _VALENCES[atom.GetSymbol()][0]:
                return False
        if max([0, *(len(r) for r in mol.GetRingInfo().AtomRings())]) > ring_limit:
            return False
        kekule = Chem.Mol(mol)
        try:
            Chem.Kekulize(kekule, clearAromaticFlags=True)
        except (ValueError, RuntimeError):
            return False
        return not any(kekule.HasSubstructMatch(pattern) for pattern in _BAD_RINGS)
