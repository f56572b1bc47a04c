"""Molecules as dense graphs: what the graph diffusion model holds and decodes.

A molecule is a graph of at most `max_atoms` heavy atoms: a node type per slot
(an empty slot is the type "*", so the number of atoms is part of what the
model learns and fine-tuning can change) and a bond type per pair of slots
(none, single, double, triple). Bonds are kekulised: an aromatic ring is a
pattern of single and double bonds, which keeps the bond vocabulary small and
every graph a valence question RDKit can answer. Hydrogens are implicit.

A design is a SMILES string. A graph RDKit sanitises is written canonically;
one it does not (a carbon with five bonds) is written as an unsanitised Kekulé
SMILES, so that every graph the model can produce is a design the oracle can
score (as infeasible, with its reason) and `encode` can turn back into the
same graph for the methods that train on designs.

SMILES are parsed by RDKit directly rather than by torch-geometric's
`from_smiles`, which sanitises and so cannot read the model's invalid graphs
back; torch-geometric batches the sparse graphs and makes them dense.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from rdkit import Chem, RDLogger
from torch_geometric.data import Batch as GeometricBatch
from torch_geometric.data import Data
from torch_geometric.utils import to_dense_adj, to_dense_batch

RDLogger.DisableLog("rdApp.*")  # a sampler's invalid graphs are expected, not warnings

NODE_TYPES = ("*", "C", "N", "O", "F", "S", "Cl", "Br")
"""Slot types: "*" is an empty slot; the rest are MOSES's heavy atoms (its
filters keep C, N, O, F, S, Cl, Br and no charged atoms)."""
BOND_TYPES = (None, Chem.BondType.SINGLE, Chem.BondType.DOUBLE, Chem.BondType.TRIPLE)
"""Bond types by index; 0 is no bond, and index k is a bond of order k."""
MAX_VALENCE = torch.tensor([0.0, 4.0, 3.0, 2.0, 1.0, 6.0, 1.0, 1.0])
"""The largest valence of each node type, uncharged, as RDKit sanitises it ("*", an empty slot,
holds no bond)."""
_ATOM_INDEX = {symbol: i for i, symbol in enumerate(NODE_TYPES) if symbol != "*"}
_BOND_INDEX = {bond: i for i, bond in enumerate(BOND_TYPES) if bond is not None}


class MoleculeError(ValueError):
    """A SMILES the graph model cannot hold: unparsable, too large, or with an atom outside its vocabulary."""


@dataclass
class Graphs:
    """A batch of dense molecular graphs (a `domains.base.Batch`): node types
    (N, n) and symmetric bond types (N, n, n) with a zero diagonal, as indices
    into NODE_TYPES and BOND_TYPES."""

    nodes: torch.Tensor
    edges: torch.Tensor

    def __len__(self) -> int:
        return len(self.nodes)

    def __getitem__(self, rows: torch.Tensor) -> Graphs:
        return Graphs(self.nodes[rows], self.edges[rows])

    @classmethod
    def cat(cls, parts: Sequence[Graphs]) -> Graphs:
        return cls(torch.cat([p.nodes for p in parts]), torch.cat([p.edges for p in parts]))

    @property
    def max_atoms(self) -> int:
        return self.nodes.shape[1]


@dataclass
class SoftGraphs:
    """Relaxed graphs: node-type probabilities (N, n, len(NODE_TYPES)) and
    bond-type probabilities (N, n, n, len(BOND_TYPES)), symmetric in the two
    slots. What a differentiable sample carries to the featuriser; one-hot for
    a hard graph (`one_hot`)."""

    nodes: torch.Tensor
    edges: torch.Tensor

    def __len__(self) -> int:
        return len(self.nodes)

    def detach(self) -> SoftGraphs:
        return SoftGraphs(self.nodes.detach(), self.edges.detach())

    def hard(self) -> Graphs:
        """The most likely type of every slot and pair."""
        return Graphs(self.nodes.argmax(-1), self.edges.argmax(-1))


def one_hot(graphs: Graphs) -> SoftGraphs:
    return SoftGraphs(torch.nn.functional.one_hot(graphs.nodes, len(NODE_TYPES)).float(),
                      torch.nn.functional.one_hot(graphs.edges, len(BOND_TYPES)).float())


def _parse(smiles: str) -> Chem.Mol:
    """A Kekulé molecule from a SMILES: sanitised when RDKit can, else read as
    written (the unsanitised SMILES `decode` writes for an invalid graph)."""
    mol = Chem.MolFromSmiles(smiles)
    if mol is not None:
        Chem.Kekulize(mol, clearAromaticFlags=True)
        return mol
    mol = Chem.MolFromSmiles(smiles, sanitize=False)
    if mol is None:
        raise MoleculeError(f"not a SMILES RDKit can read: {smiles!r}")
    return mol


def heavy_atoms(smiles: str) -> int:
    """How many slots a molecule needs."""
    return _parse(smiles).GetNumAtoms()


def _uncharged(mol: Chem.Mol) -> Chem.Mol:
    """Charge-separated bonds (a nitro group's [N+]-[O-], an N-oxide) as the one
    bond order higher between uncharged atoms that RDKit's sanitisation drew them
    from: the graph the model writes, in its vocabulary of uncharged atoms, so
    a sampled nitro group encodes back to what was sampled."""
    if all(atom.GetFormalCharge() == 0 for atom in mol.GetAtoms()):
        return mol
    mol = Chem.RWMol(mol)
    for bond in mol.GetBonds():
        a, b = bond.GetBeginAtom(), bond.GetEndAtom()
        if a.GetFormalCharge() * b.GetFormalCharge() == -1 and bond.GetBondType() in _RAISED:
            bond.SetBondType(_RAISED[bond.GetBondType()])
            a.SetFormalCharge(0)
            b.SetFormalCharge(0)
    return mol


_RAISED = {Chem.BondType.SINGLE: Chem.BondType.DOUBLE, Chem.BondType.DOUBLE: Chem.BondType.TRIPLE}


def _graph(smiles: str, max_atoms: int) -> Data:
    mol = _uncharged(_parse(smiles))
    if any(atom.GetFormalCharge() for atom in mol.GetAtoms()):  # charges RDKit drew on a graph written without
        written = Chem.MolFromSmiles(smiles, sanitize=False)
        if written is not None and not any(atom.GetFormalCharge() for atom in written.GetAtoms()):
            mol = written
    if mol.GetNumAtoms() > max_atoms:
        raise MoleculeError(f"{smiles!r} has {mol.GetNumAtoms()} heavy atoms; the model holds at most {max_atoms}")
    types = []
    for atom in mol.GetAtoms():
        if atom.GetSymbol() not in _ATOM_INDEX or atom.GetFormalCharge() != 0:
            charge = f" with charge {atom.GetFormalCharge():+d}" if atom.GetFormalCharge() else ""
            raise MoleculeError(f"{smiles!r} has the atom {atom.GetSymbol()}{charge}; the model knows only uncharged "
                                f"{', '.join(NODE_TYPES[1:])}")
        types.append(_ATOM_INDEX[atom.GetSymbol()])
    pairs, kinds = [], []
    for bond in mol.GetBonds():
        if bond.GetBondType() not in _BOND_INDEX:
            raise MoleculeError(f"{smiles!r} has a {bond.GetBondType()} bond; the model knows single, double, triple")
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        pairs += [(i, j), (j, i)]
        kinds += [_BOND_INDEX[bond.GetBondType()]] * 2
    edge_index = torch.tensor(pairs, dtype=torch.long).reshape(-1, 2).T  # (2, bonds), also for none
    return Data(x=torch.tensor(types, dtype=torch.long), edge_index=edge_index,
                edge_attr=torch.tensor(kinds, dtype=torch.long), num_nodes=len(types))


def encode(designs: Sequence[str], max_atoms: int) -> Graphs:
    """SMILES to dense graphs of `max_atoms` slots, atoms first, empty slots after."""
    if not designs:
        return Graphs(torch.zeros(0, max_atoms, dtype=torch.long), torch.zeros(0, max_atoms, max_atoms, dtype=torch.long))
    batch = GeometricBatch.from_data_list([_graph(s, max_atoms) for s in designs])
    nodes, _ = to_dense_batch(batch.x, batch.batch, fill_value=0, max_num_nodes=max_atoms, batch_size=len(designs))
    edges = to_dense_adj(batch.edge_index, batch.batch, batch.edge_attr, max_num_nodes=max_atoms,
                         batch_size=len(designs))
    return Graphs(nodes.long(), edges.long())


def to_mol(nodes: torch.Tensor, edges: torch.Tensor) -> Chem.RWMol:
    """One graph (n,) and (n, n) to an unsanitised RDKit molecule; bonds to or
    from an empty slot are dropped (the slot holds no atom to bond)."""
    mol = Chem.RWMol()
    index = {}
    for slot, kind in enumerate(nodes.tolist()):
        if kind:
            index[slot] = mol.AddAtom(Chem.Atom(NODE_TYPES[kind]))
    rows, cols = torch.triu(edges, diagonal=1).nonzero(as_tuple=True)
    for i, j in zip(rows.tolist(), cols.tolist()):
        if i in index and j in index:
            mol.AddBond(index[i], index[j], BOND_TYPES[int(edges[i, j])])
    return mol


def smiles_of(mol: Chem.RWMol) -> str:
    """Canonical SMILES of a molecule RDKit sanitises without drawing charges; else
    the unsanitised Kekulé SMILES of the graph as it is. A graph RDKit sanitises
    only by separating charges (N(=O)=O as [N+](=O)[O-]) is written as sampled, so
    that it encodes back to itself; the oracle's key is still the canonical form."""
    try:
        sane = Chem.Mol(mol)
        Chem.SanitizeMol(sane)
        if not any(atom.GetFormalCharge() for atom in sane.GetAtoms()):
            return Chem.MolToSmiles(sane)
    except (Chem.rdchem.AtomValenceException, Chem.rdchem.KekulizeException, ValueError):
        pass
    mol.UpdatePropertyCache(strict=False)
    return Chem.MolToSmiles(mol, kekuleSmiles=True, canonical=True)


def decode(graphs: Graphs) -> list[str]:
    return [smiles_of(to_mol(n, e)) for n, e in zip(graphs.nodes, graphs.edges)]
