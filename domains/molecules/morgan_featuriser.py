"""Hashed Morgan fingerprints (radius 2, 2,048 bits, RDKit's generator) as
reward-model features, with a gradient on relaxed graphs.

A fingerprint bit is a hash of a discrete atom environment: it has no
derivative, and the methods that fine-tune through a relaxed sample
(`DifferentiableSample.x`, straight-through one-hots) need one. Written by
hand because no library differentiates a fingerprint: each set bit is the soft
presence of the environments RDKit hashed into it, the product of the
probabilities that every atom and bond of an environment has the type it has in
the most likely graph, maxed over those environments. On a hard graph
(one-hots) that is RDKit's bit exactly (tested against the generator); its
gradient says how much each revealed element's type supports the bits the value
model reads. A bit no environment of the sample sets has no gradient: these
features tell a model to keep or lose what its samples have, not which absent
environment to make, which the GNN's embedding (`gnn_featuriser.py`) can.

The hazard columns (`featuriser.hazards`: valence excess, isolated atoms, pieces
beyond the first) follow the bits, as in the other molecule featurisers, for the
feasibility model.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from rdkit import Chem
from rdkit.Chem import rdFingerprintGenerator

from domains.molecules import graphs as G
from domains.molecules.featuriser import HAZARDS, hazards

RADIUS, BITS = 2, 2048
SCREEN = 64
"""Bits a value model keeps (`RewardModelConfig.screen`): of 2,048 sparse bits, a molecule sets about 40."""


class MorganFeaturiser:
    """The molecule-domain `Featuriser` of hashed Morgan bits on `graphs.SoftGraphs`."""

    suggested_screen = SCREEN

    def __init__(self, max_atoms: int, radius: int = RADIUS, bits: int = BITS):
        self.max_atoms, self.bits = max_atoms, bits
        self.generator = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=bits)
        self.dim = bits + HAZARDS
        self.hazard_columns = slice(bits, bits + HAZARDS)

    def __call__(self, designs: Sequence[str]) -> torch.Tensor:
        with torch.no_grad():
            return self.relaxed(G.one_hot(G.encode(designs, self.max_atoms)))

    def relaxed(self, x: G.SoftGraphs) -> torch.Tensor:
        hard = x.hard()
        n, slots = hard.nodes.shape
        # Probability of the type each slot and pair has in the hard graph, flat: slots first, then pairs.
        p_nodes = x.nodes.gather(-1, hard.nodes[..., None]).squeeze(-1)
        p_edges = x.edges.gather(-1, hard.edges[..., None]).squeeze(-1)
        chosen = torch.cat([p_nodes.reshape(-1), p_edges.reshape(-1)]).clamp_min(1e-12).log()
        env_bits, elements, owners = [], [], []  # per environment: its flat bit; per element: index, environment
        for g in range(n):
            for bit, members in self._environments(hard.nodes[g], hard.edges[g]):
                env = len(env_bits)
                env_bits.append(g * self.bits + bit)
                for kind, index in members:
                    elements.append(g * slots + index if kind == "slot"
                                    else n * slots + (g * slots + index[0]) * slots + index[1])
                    owners.append(env)
        presence = torch.zeros(len(env_bits)).index_add(0, torch.tensor(owners, dtype=torch.long),
                                                       chosen[torch.tensor(elements, dtype=torch.long)]).exp()
        bits = torch.zeros(n * self.bits).scatter_reduce(0, torch.tensor(env_bits, dtype=torch.long), presence,
                                                         reduce="amax", include_self=True)
        return torch.cat([bits.view(n, self.bits), hazards(x)], 1)

    def _environments(self, nodes: torch.Tensor, edges: torch.Tensor) -> list[tuple[int, list]]:
        """(bit, members) for every environment RDKit hashes in one graph; members are
        ("slot", i) and ("pair", (i, j)). The molecule is sanitised where RDKit can (so that
        aromatic rings hash as the oracle sees them), else read as drawn."""
        mol = G.to_mol(nodes, edges)
        slot_of = [i for i, kind in enumerate(nodes.tolist()) if kind]
        try:
            Chem.SanitizeMol(mol)
        except (ValueError, RuntimeError):  # RDKit's sanitisation errors are ValueErrors
            mol.UpdatePropertyCache(strict=False)
            Chem.FastFindRings(mol)
        info = rdFingerprintGenerator.AdditionalOutput()
        info.AllocateBitInfoMap()
        self.generator.GetFingerprint(mol, additionalOutput=info)
        found = []
        for bit, centres in info.GetBitInfoMap().items():
            for atom, radius in centres:
                members: list = [("slot", slot_of[atom])]
                for b in Chem.FindAtomEnvironmentOfRadiusN(mol, radius, atom) if radius else ():
                    bond = mol.GetBondWithIdx(b)
                    i, j = slot_of[bond.GetBeginAtomIdx()], slot_of[bond.GetEndAtomIdx()]
                    members += [("slot", i), ("slot", j), ("pair", (i, j))]
                found.append((bit, list(dict.fromkeys(members))))
        return found
