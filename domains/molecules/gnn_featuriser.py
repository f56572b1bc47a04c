"""A learned alternative to the counted environments: a graph neural network's
embedding of a molecule, pretrained to predict RDKit descriptors.

A reward model on `MoleculeFeaturiser` sees only radius-1 environments, rings
and sizes; properties that span a molecule (its polar surface, its logP, how
many bonds rotate) it must add up from them. This featuriser gives it a
64-dimensional embedding from a relational GIN (three `torch_geometric`
`DenseGINConv` layers per bond type, summed) trained on MOSES to predict the
descriptors GuacaMol's objectives are built from: logP, TPSA, rotatable bonds,
H-bond donors and acceptors, rings, aromatic rings, fraction sp3, molecular
weight and QED. The weights are frozen; the reward model fits on top of them.
The environments featuriser's feasibility features (valence excess by atom
type, isolated atoms) follow the embedding, so the feasibility model has what
to blame: the GNN was trained on valid molecules only.

The layers are torch-geometric's dense ones because the fine-tuning methods
differentiate rewards through relaxed samples (`SoftGraphs`: soft atom types
and soft bond types), which a sparse `edge_index` cannot hold; the hard
designs go through the same dense path, so both see one function.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from rdkit import Chem
from rdkit.Chem import QED, Descriptors, rdMolDescriptors
from safetensors.torch import load_file, save_file
from torch import nn
from torch_geometric.nn.dense import DenseGINConv
from tqdm.auto import tqdm

from domains.molecules import graphs as G
from domains.molecules.featuriser import HAZARDS, hazards

DESCRIPTORS = {
    "logp": Descriptors.MolLogP,
    "tpsa": rdMolDescriptors.CalcTPSA,
    "rotatable_bonds": rdMolDescriptors.CalcNumRotatableBonds,
    "hbd": rdMolDescriptors.CalcNumHBD,
    "hba": rdMolDescriptors.CalcNumHBA,
    "rings": rdMolDescriptors.CalcNumRings,
    "aromatic_rings": rdMolDescriptors.CalcNumAromaticRings,
    "fraction_sp3": rdMolDescriptors.CalcFractionCSP3,
    "weight": Descriptors.MolWt,
    "qed": QED.qed,
}
"""What the embedding is trained to predict: the properties GuacaMol's MPOs score."""
WIDTH, LAYERS = 64, 3


def descriptors(smiles: Sequence[str]) -> torch.Tensor:
    """(N, len(DESCRIPTORS)) RDKit descriptors of molecules that parse."""
    rows = []
    for s in smiles:
        mol = Chem.MolFromSmiles(s)
        rows.append([float(f(mol)) for f in DESCRIPTORS.values()])
    return torch.tensor(rows)


class DescriptorGNN(nn.Module):
    """Soft atom one-hots (N, n, A + 1) and bond one-hots (N, n, n, B + 1), the
    empty slot and "no bond" first, to a sum-pooled embedding (N, WIDTH); `head`
    maps it to standardised descriptors for pretraining."""

    def __init__(self) -> None:
        super().__init__()
        atoms, bonds = len(G.NODE_TYPES), len(G.BOND_TYPES) - 1
        self.embed = nn.Linear(atoms, WIDTH)
        self.convs = nn.ModuleList(
            nn.ModuleList(DenseGINConv(nn.Sequential(nn.Linear(WIDTH, WIDTH), nn.ReLU(), nn.Linear(WIDTH, WIDTH)))
                          for _ in range(bonds))
            for _ in range(LAYERS))
        self.norms = nn.ModuleList(nn.LayerNorm(WIDTH) for _ in range(LAYERS))
        self.head = nn.Linear(WIDTH, len(DESCRIPTORS))

    def forward(self, x: G.SoftGraphs) -> torch.Tensor:
        present = 1 - x.nodes[..., 0]  # (N, n): a slot that holds an atom
        keep = present[:, :, None] * present[:, None, :] * (1 - torch.eye(x.nodes.shape[1]))
        h = self.embed(x.nodes) * present[..., None]
        for convs, norm in zip(self.convs, self.norms):
            # One GIN per bond type over its neighbours only; the residual carries the atom itself.
            h = h + torch.relu(norm(sum(conv(h, x.edges[..., b + 1] * keep, add_loop=False)
                                        for b, conv in enumerate(convs))))
            h = h * present[..., None]
        return h.sum(1) / 8  # about 22 atoms: keeps the pooled sum near unit scale


class GNNFeaturiser:
    """The molecule-domain `Featuriser` on a frozen `DescriptorGNN`."""

    suggested_screen = 0  # 72 dense features: the value model keeps them all

    def __init__(self, max_atoms: int, path: str | Path):
        self.max_atoms = max_atoms
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no GNN featuriser weights at {path}; run `seiko-bench pretrain "
                                    f"osimertinib-mpo` to make them")
        self.net = DescriptorGNN()
        self.net.load_state_dict(load_file(path))
        self.net.requires_grad_(False).eval()
        self.dim = WIDTH + HAZARDS
        self.hazard_columns = slice(WIDTH, WIDTH + HAZARDS)

    def __call__(self, designs: Sequence[str]) -> torch.Tensor:
        with torch.no_grad():
            return self.relaxed(G.one_hot(G.encode(designs, self.max_atoms)))

    def relaxed(self, x: G.SoftGraphs) -> torch.Tensor:
        return torch.cat([self.net(x), hazards(x)], 1)


def pretrain_gnn(smiles: list[str], out: str | Path, *, molecules: int = 20_000, steps: int = 3000,
                 batch_size: int = 128, lr: float = 2e-3, seed: int = 0, max_atoms: int = 26) -> dict[str, Any]:
    """Fit `DescriptorGNN` to standardised descriptors of `molecules` SMILES (seeded
    draw, the last tenth held out), save its weights to `out` with a JSON report
    of the held-out R^2 per descriptor, and return the report."""
    out = Path(out)
    picked = [s for s in random.Random(seed).sample(smiles, min(len(smiles), molecules))
              if G.heavy_atoms(s) <= max_atoms]
    split = len(picked) * 9 // 10
    graphs = G.encode(picked, max_atoms)
    targets = descriptors(picked)
    mean, std = targets[:split].mean(0), targets[:split].std(0).clamp(min=1e-6)
    targets = (targets - mean) / std
    torch.manual_seed(seed)
    net = DescriptorGNN()
    optimiser = torch.optim.AdamW(net.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=steps)
    generator = torch.Generator().manual_seed(seed)
    for _ in (bar := tqdm(range(steps), desc="pretrain the GNN featuriser", unit="step")):
        rows = torch.randint(split, (batch_size,), generator=generator)
        loss = (net.head(net(G.one_hot(graphs[rows]))) - targets[rows]).pow(2).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        bar.set_postfix(mse=f"{loss.item():.3f}")
    with torch.no_grad():
        held = torch.arange(split, len(picked))
        residual = (net.head(net(G.one_hot(graphs[held]))) - targets[held]).pow(2).mean(0)
    r2 = {name: round(float(1 - r), 3) for name, r in zip(DESCRIPTORS, residual)}  # targets have unit variance
    report = {"molecules": len(picked), "held_out": len(picked) - split, "steps": steps, "batch_size": batch_size,
              "lr": lr, "seed": seed, "held_out_r2": r2}
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out))
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    return report
