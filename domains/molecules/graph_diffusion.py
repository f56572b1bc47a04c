"""A masked (absorbing-state) discrete diffusion model of molecular graphs.

The state is a dense graph (`domains.molecules.graphs.Graphs`): a type for
each of n slots (an atom, or "*" for none) and a bond type for each of the
n (n - 1) / 2 pairs of slots, held twice in a symmetric (n, n) matrix. These
E = n + n (n - 1) / 2 elements are masked, revealed and scored by the same
sampler as the sequence model's positions (`MaskedPolicy`,
`domains/diffusion/masked_policy.py`): the forward process masks each element
independently with probability t; the reverse process reveals a fixed number of
uniformly chosen masked elements per step (the first-hitting sampler), each
drawn from the denoiser's clean-type distribution, optionally min-p truncated;
training minimises MDLM's continuous-time NELBO. What is the graph model's own
is its two fields (slots, and the pairs of `BondField`) and its denoiser, a
graph transformer without positional input, so the model is
permutation-equivariant in the slots.

Why absorbing and not DiGress's marginal transitions (Vignac et al. 2023),
which the issue names: a marginal-transition step resamples every element, so
a step's log-probability is a sum over all ~380 elements and the importance
ratios of a policy gradient explode (the sequence domain measured that with
DDPO's clip on a summed log-prob); a masked step reveals a few elements, so
its log-probability, its KL to a reference and the gradient through a
straight-through draw touch only those, exactly. It also reuses what the
sequence domain measured to keep samples feasible: few elements revealed per
step (neighbours revealed together are drawn independently, which breaks
valence the way it broke banned transitions) and min-p truncation. The
denoiser reads each slot's current valence (the bond orders already revealed
around it), the structural feature that decides validity; DiGress adds cycle
and spectral features for the same reason.

Written by hand: no maintained library offers a graph diffusion model with
per-step log-probs, KLs and differentiable sampling; torch-geometric provides
the data side (`graphs.py`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from domains.diffusion.checkpoint import Checkpointed
from domains.diffusion.masked import Field
from domains.diffusion.masked_policy import Fields, MaskedPolicy, MaskedSamplerConfig
from domains.molecules import graphs as G

NODE_V, EDGE_V = len(G.NODE_TYPES), len(G.BOND_TYPES)
BOND_ORDER = torch.arange(EDGE_V, dtype=torch.float32)  # bond type k has order k
EXCLUDED = -1e4
"""The logit of a type the valence mask excludes: a probability of 0 in float32, but
finite, so that the KL of two masked models stays 0 * finite where both exclude it."""


@dataclass
class GraphDiffusionConfig(MaskedSamplerConfig):
    """Architecture and sampler of the graph diffusion model (the sampler's settings,
    `gumbel_temperature` and `min_p`, are `MaskedSamplerConfig`'s)."""

    max_atoms: int
    """n, slots per graph: the largest molecule the model can make."""
    num_steps: int = 64
    """T, reverse steps; each reveals about E / T of the E elements."""
    d_node: int = 64
    """Width of the slot features."""
    d_edge: int = 16
    """Width of the pair features (n^2 of them, so kept narrow)."""
    n_layers: int = 4
    n_heads: int = 4
    valence_mask: bool = False
    """Exclude, at every step, the types that would break a valence already decided:
    a bond order above what either end has room for (its type's valence, less the
    bond orders revealed around it; a masked end has room for the largest valence,
    6), and an atom type whose valence is below the bond orders revealed around its
    slot. A step revealing two bonds of one atom at once can still exceed it, and
    nothing joins fragments, so validity stays below 1. Part of the policy, not a
    correction after it: log-probs, KLs and training see the masked logits, and it
    never excludes the true type of a valid molecule's masked element."""

    def __post_init__(self) -> None:
        if self.max_atoms < 2:
            raise ValueError(f"max_atoms must be at least 2, got {self.max_atoms}")
        if self.d_node % self.n_heads:
            raise ValueError(f"d_node={self.d_node} must be divisible by n_heads={self.n_heads}")
        super().__post_init__()


class GraphLayer(nn.Module):
    """Attention over slots biased by the pair features, then a pair update from both slots.

    Pair features are symmetric in (i, j), so they are held packed, one row per
    pair i <= j (`Pairs`): the same function as on all n^2 ordered pairs at
    about half the cost, and the pair updates are most of a step's work."""

    def __init__(self, cfg: GraphDiffusionConfig):
        super().__init__()
        self.heads, d, de = cfg.n_heads, cfg.d_node, cfg.d_edge
        self.norm_node, self.norm_edge, self.norm_ff = nn.LayerNorm(d), nn.LayerNorm(de), nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.edge_bias = nn.Linear(de, cfg.n_heads)
        self.out = nn.Linear(d, d)
        self.ff = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
        self.node_to_edge = nn.Linear(d, de)
        self.edge_ff = nn.Sequential(nn.Linear(de, 2 * de), nn.GELU(), nn.Linear(2 * de, de))

    def forward(self, h: torch.Tensor, e: torch.Tensor, pairs: Pairs) -> tuple[torch.Tensor, torch.Tensor]:
        """h: (N, n, d) slots; e: (N, P, de) packed pairs."""
        n_graphs, n, d = h.shape
        q, k, v = self.qkv(self.norm_node(h)).view(n_graphs, n, 3, self.heads, d // self.heads).unbind(2)
        e_normed = self.norm_edge(e)
        scores = torch.einsum("bihc,bjhc->bhij", q, k) / math.sqrt(d // self.heads)
        scores = scores + pairs.unpack(self.edge_bias(e_normed)).permute(0, 3, 1, 2)
        mixed = torch.einsum("bhij,bjhc->bihc", scores.softmax(-1), v).reshape(n_graphs, n, d)
        h = h + self.out(mixed)
        h = h + self.ff(self.norm_ff(h))
        slots = self.node_to_edge(h)
        e = e + self.edge_ff(e_normed + slots[:, pairs.i] + slots[:, pairs.j])
        return h, e


class Pairs:
    """The pairs i <= j of n slots: pack a symmetric (N, n, n, ...) tensor to
    (N, P, ...) rows and unpack rows back to the symmetric tensor."""

    def __init__(self, n: int):
        self.i, self.j = torch.triu_indices(n, n)
        self.full = torch.zeros(n, n, dtype=torch.long)
        self.full[self.i, self.j] = self.full[self.j, self.i] = torch.arange(len(self.i))

    def pack(self, full: torch.Tensor) -> torch.Tensor:
        return full[:, self.i, self.j]

    def unpack(self, rows: torch.Tensor) -> torch.Tensor:
        return rows[:, self.full]


class GraphDenoiser(nn.Module):
    """(Relaxed) one-hot slots (N, n, NODE_V + 1) and pairs (N, n, n, EDGE_V + 1),
    masks included, to clean-type logits of every slot and pair."""

    def __init__(self, cfg: GraphDiffusionConfig):
        super().__init__()
        self.embed_node = nn.Linear(NODE_V + 1 + 2, cfg.d_node)
        self.embed_edge = nn.Linear(EDGE_V + 1, cfg.d_edge)
        self.layers = nn.ModuleList(GraphLayer(cfg) for _ in range(cfg.n_layers))
        self.node_head = nn.Sequential(nn.LayerNorm(cfg.d_node), nn.Linear(cfg.d_node, NODE_V))
        self.edge_head = nn.Sequential(nn.LayerNorm(cfg.d_edge), nn.Linear(cfg.d_edge, EDGE_V))
        self.pairs = Pairs(cfg.max_atoms)

    def forward(self, nodes: torch.Tensor, edges: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # The valence a slot already has and its revealed bonds: differentiable in relaxed pairs.
        valence = (edges[..., :EDGE_V] * BOND_ORDER).sum((-1, -2))
        bonds = edges[..., 1:EDGE_V].sum((-1, -2))
        h = self.embed_node(torch.cat([nodes, valence[..., None] / 4, bonds[..., None] / 4], -1))
        e = self.embed_edge(self.pairs.pack(edges))
        for layer in self.layers:
            h, e = layer(h, e, self.pairs)
        return self.node_head(h), self.pairs.unpack(self.edge_head(e))


class BondField(Field):
    """The bonds of n slots as a field: a symmetric (N, n, n) matrix of bond types whose elements
    are the pairs i < j. The pair j > i is a copy, and the diagonal (a slot and itself) is no
    bond, never masked. Its network must give both copies of a pair the same logits, as
    `GraphDenoiser`'s packed pairs do."""

    def __init__(self, slots: int):
        super().__init__(EDGE_V, (slots, slots))
        self.counted = torch.triu(torch.ones(slots, slots, dtype=torch.bool), diagonal=1)

    def start(self, n: int) -> torch.Tensor:
        """n matrices masked but on the diagonal."""
        return super().start(n) * (1 - torch.eye(self.shape[0], dtype=torch.long))

    def tie(self, values: torch.Tensor) -> torch.Tensor:
        """The values of the pairs i < j mirrored to j > i; the diagonal zero."""
        upper = values * self.counted.view(*self.shape, *[1] * (values.dim() - 3))
        return upper + upper.transpose(1, 2)

    def pool(self, grad: torch.Tensor) -> torch.Tensor:
        return grad + grad.transpose(1, 2)


class GraphDiffusionModel(MaskedPolicy, Checkpointed):
    """The molecule-domain `DiffusionModel`: the masked sampler (`MaskedPolicy`) around a
    `GraphDenoiser`. A state is a `Graphs`; `DifferentiableSample.x`, and what a guide scores,
    is a `SoftGraphs` of type probabilities."""

    config_cls = GraphDiffusionConfig

    def __init__(self, cfg: GraphDiffusionConfig, metadata: dict[str, Any] | None = None):
        super().__init__(cfg, (Field(NODE_V, (cfg.max_atoms,)), BondField(cfg.max_atoms)), metadata)
        self.denoiser = GraphDenoiser(cfg)

    # ----- the MaskedPolicy hooks ------------------------------------------------
    def _logits(self, z: Fields) -> Fields:
        logits = self.denoiser(*z)
        return valence_masked(z, *logits) if self.cfg.valence_mask else logits

    def _split(self, x: G.Graphs) -> Fields:
        return x.nodes, x.edges

    def _state(self, values: Fields) -> G.Graphs:
        return G.Graphs(*values)

    def _soft(self, probs: Fields) -> G.SoftGraphs:
        return G.SoftGraphs(*probs)

    # ----- designs -----------------------------------------------------------------
    def encode(self, designs: Sequence[str]) -> G.Graphs:
        return G.encode(designs, self.cfg.max_atoms)

    def decode(self, x: G.Graphs) -> list[str]:
        return G.decode(x)


def valence_masked(z: Fields, node_logits: torch.Tensor, edge_logits: torch.Tensor) -> Fields:
    """The logits with the types that break a decided valence excluded (`GraphDiffusionConfig.valence_mask`).
    The masks read the state `z` (one-hots with the mask last) without a gradient: they are where the
    state is, not what the gradient moves."""
    nodes, edges = (t.detach() for t in z)
    valence = (edges[..., :EDGE_V] * BOND_ORDER).sum((-1, -2))  # (N, n): bond orders revealed around a slot
    revealed = nodes[..., NODE_V] < 0.5
    capacity = torch.where(revealed, (nodes[..., :NODE_V] * G.MAX_VALENCE).sum(-1), G.MAX_VALENCE.max())
    room = capacity - valence
    edge_ok = torch.minimum(room[:, :, None], room[:, None, :])[..., None] >= BOND_ORDER
    edge_ok[..., 0] = True  # no bond is always possible
    node_ok = valence[..., None] <= G.MAX_VALENCE
    node_ok = node_ok | ~node_ok.any(-1, keepdim=True)  # a slot past every valence: nothing to choose between
    return node_logits.masked_fill(~node_ok, EXCLUDED), edge_logits.masked_fill(~edge_ok, EXCLUDED)
