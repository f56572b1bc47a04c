"""Reward-model features of molecular graphs, polynomial in the graph's one-hots
so that the same map applies to relaxed samples with gradients.

- Atom and bond counts and the molecule's size.
- Bonded atom pairs by bond type (C=O, C-N, ...) and two-bond paths around a
  centre atom (O=C-N, C-S(=O), ...): the radius-1 atom environments that
  Morgan fingerprints (ECFP2) hash, counted instead of hashed. GuacaMol's
  objectives are similarities on such fingerprints plus properties (TPSA,
  logP, rotatable bonds) that are sums over these environments.
- Valence excess by atom type (bond orders around an atom above what its
  element allows), isolated atoms and pieces beyond the first: the ways a
  sampled graph fails to be one sane molecule, as linear features the feasibility model can blame
  (`algorithms.reward_models.FeasibilityClassifier`), as bigram counts are for
  sequences.
- Closed walks of length 3 to 8 (traces of powers of the adjacency), which
  count rings by size, up to walks that are not cycles.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from domains.molecules import graphs as G

ATOMS = len(G.NODE_TYPES) - 1  # the real atom types, without the empty slot
BONDS = len(G.BOND_TYPES) - 1  # the real bonds, without "no bond"
MAX_VALENCE = G.MAX_VALENCE[1:]
"""Largest valence RDKit accepts for C N O F S Cl Br, uncharged."""
WALKS = range(3, 9)
SCREEN = 32
"""Features a value model keeps (`RewardModelConfig.screen`)."""


class MoleculeFeaturiser:
    """The molecule-domain `Featuriser` on `graphs.SoftGraphs`."""

    suggested_screen = SCREEN

    def __init__(self, max_atoms: int):
        self.max_atoms = max_atoms
        pairs = ATOMS * (ATOMS + 1) // 2 * BONDS
        arms = ATOMS * BONDS
        start = ATOMS + BONDS + 1 + pairs + ATOMS * arms * (arms + 1) // 2
        self.dim = start + HAZARDS + len(WALKS)
        self.hazard_columns = slice(start, start + HAZARDS)
        self._upper_arms = torch.triu_indices(arms, arms)
        self._upper_atoms = torch.triu_indices(ATOMS, ATOMS)

    def __call__(self, designs: Sequence[str]) -> torch.Tensor:
        return self.relaxed(G.one_hot(G.encode(designs, self.max_atoms)))

    def relaxed(self, x: G.SoftGraphs) -> torch.Tensor:
        atoms, bonds, present = _atoms_and_bonds(x)
        counts = [atoms.sum(1), bonds.sum((1, 2)) / 2, present.sum(1, keepdim=True)]
        pair = torch.einsum("nia,nijb,njc->nacb", atoms, bonds, atoms)  # ordered pairs
        pair = (pair + pair.transpose(1, 2))[:, self._upper_atoms[0], self._upper_atoms[1]] / 2
        pair[:, self._upper_atoms[0] == self._upper_atoms[1]] /= 2  # a C-C bond was counted from both ends
        arm = torch.einsum("nijb,nia->njab", bonds, atoms).flatten(2)  # (N, n, A*B) neighbours of each centre
        two = torch.einsum("nja,njp,njq->napq", atoms, arm, arm)
        # Two arms of the same kind: k of them make k (k - 1) / 2 paths, not k^2.
        same = torch.einsum("nja,njp->nap", atoms, arm)
        two = two - torch.diag_embed((torch.diagonal(two, dim1=2, dim2=3) + same) / 2)
        two = two[:, :, self._upper_arms[0], self._upper_arms[1]]
        adjacency = bonds.sum(-1)
        power, walks = adjacency, []
        for k in range(2, WALKS.stop):
            power = power @ adjacency
            if k in WALKS:
                walks.append(torch.diagonal(power, dim1=1, dim2=2).sum(-1) / (2 * k))
        return torch.cat([*counts, pair.flatten(1), two.flatten(1), _hazards(atoms, bonds, present),
                          torch.stack(walks, 1)], 1)


def _atoms_and_bonds(x: G.SoftGraphs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Atom types (N, n, A), bond types (N, n, n, B) between two present atoms off the
    diagonal, and presence (N, n): a bond to an empty slot is dropped by the decoder, and so here."""
    atoms = x.nodes[..., 1:]  # an empty slot has none
    present = atoms.sum(-1)
    keep = (1 - torch.eye(atoms.shape[1])) * present[:, :, None] * present[:, None, :]
    return atoms, x.edges[..., 1:] * keep[..., None], present


HAZARDS = ATOMS + 2


def hazards(x: G.SoftGraphs) -> torch.Tensor:
    """(N, HAZARDS): valence excess by atom type (bond orders around an atom above what
    its element allows), isolated atoms and pieces beyond the first, the ways a sampled
    graph fails to be one sane molecule, as linear features the feasibility model can blame."""
    return _hazards(*_atoms_and_bonds(x))


def _hazards(atoms: torch.Tensor, bonds: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    valence = (bonds * torch.arange(1.0, BONDS + 1)).sum((-1, -2))  # (N, n) bond orders around each atom
    excess = torch.einsum("nia,nia->na", atoms, torch.relu(valence[..., None] - MAX_VALENCE))
    lonely = (present * torch.prod(1 - bonds.sum(-1), dim=-1)).sum(1, keepdim=True)
    return torch.cat([excess, lonely, _extra_pieces(bonds.sum(-1), present)], 1)


def _extra_pieces(adjacency: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """(N, 1) connected pieces beyond the first, the disconnected samples that sanitise but
    are no one molecule. Reachability is (I + A) squared until it spans the graph, each
    product clamped at 1; an atom's piece has as many atoms as it reaches, so the pieces
    are the sum of 1 / reach. Exact on a hard graph; on bond probabilities, a pair of
    pieces moves towards one as the bonds between them become likelier."""
    reach = (adjacency + torch.diag_embed(present)).clamp(max=1)
    for _ in range(math.ceil(math.log2(max(adjacency.shape[1], 2)))):
        reach = (reach @ reach).clamp(max=1)
    pieces = (present / reach.sum(-1).clamp_min(1)).sum(1, keepdim=True)
    return (pieces - 1).clamp_min(0)
