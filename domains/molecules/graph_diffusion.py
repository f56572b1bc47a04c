"""A masked (absorbing-state) discrete diffusion model of molecular graphs.

The state is a dense graph (`domains.molecules.graphs.Graphs`): a type for
each of n slots (an atom, or "*" for none) and a bond type for each of the
n (n - 1) / 2 pairs of slots. These E = n + n (n - 1) / 2 elements are masked
and revealed exactly as the sequence model's positions are
(`domains.sequences.mdlm`): the forward process masks each element
independently with probability t; the reverse process reveals a fixed number of
uniformly chosen masked elements per step (the first-hitting sampler), each
drawn from the denoiser's clean-type distribution, optionally min-p truncated;
training minimises MDLM's continuous-time NELBO. The denoiser is a graph
transformer without positional input, so the model is permutation-equivariant
in the slots.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from domains.base import DifferentiableSample, SampleOutput, Trajectory
from domains.diffusion.checkpoint import Checkpointed
from domains.diffusion.masked import categorical_kl, draw_one_hot, gumbel_noise, reveal_set_log_prob, truncate_min_p
from domains.molecules import graphs as G

NODE_V, EDGE_V = len(G.NODE_TYPES), len(G.BOND_TYPES)
NODE_MASK, EDGE_MASK = NODE_V, EDGE_V  # the mask is one past each vocabulary
BOND_ORDER = torch.arange(EDGE_V, dtype=torch.float32)  # bond type k has order k


@dataclass
class GraphDiffusionConfig:
    """Architecture and sampler of the graph diffusion model."""

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
    gumbel_temperature: float = 1.0
    """Temperature of the Gumbel-softmax relaxation used by `sample_with_grad`."""
    min_p: float = 0.0
    """Min-p truncation of every draw (0: exact samples of the denoiser)."""

    def __post_init__(self) -> None:
        if self.d_node % self.n_heads:
            raise ValueError(f"d_node={self.d_node} must be divisible by n_heads={self.n_heads}")
        if self.num_steps < 1 or self.max_atoms < 2:
            raise ValueError("num_steps must be positive and max_atoms at least 2")
        if self.gumbel_temperature <= 0:
            raise ValueError("gumbel_temperature must be > 0")
        if not 0 <= self.min_p < 1:
            raise ValueError(f"min_p must lie in [0, 1), got {self.min_p}")

    @property
    def num_elements(self) -> int:
        return self.max_atoms + self.max_atoms * (self.max_atoms - 1) // 2


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


@dataclass
class _Step:
    """One reverse step's quantities, shared by sampling, log-probs and KL."""

    node_logits: torch.Tensor  # (N, n, NODE_V)
    edge_logits: torch.Tensor  # (N, n, n, EDGE_V), symmetric
    node_masked: torch.Tensor  # (N, n) bool, masked before the step
    edge_masked: torch.Tensor  # (N, n, n) bool, symmetric, False on the diagonal
    reveal: int  # elements this step reveals
    p_unmask: float  # the chance that a given masked element is among them


def _upper(n: int) -> torch.Tensor:
    return torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1)


def _symmetric(upper_values: torch.Tensor) -> torch.Tensor:
    """(N, n, n, ...) values of the pairs i < j mirrored to j > i; the diagonal zero."""
    mask = _upper(upper_values.shape[1]).view(1, *upper_values.shape[1:3], *([1] * (upper_values.dim() - 3)))
    upper = upper_values * mask
    return upper + upper.transpose(1, 2)


class GraphDiffusionModel(Checkpointed):
    """The molecule-domain `DiffusionModel`: a masked sampler around a `GraphDenoiser`."""

    config_cls = GraphDiffusionConfig

    def __init__(self, cfg: GraphDiffusionConfig, metadata: dict[str, Any] | None = None):
        super().__init__()
        self.cfg = cfg
        self.denoiser = GraphDenoiser(cfg)
        self.metadata: dict[str, Any] = dict(metadata or {})

    @property
    def num_steps(self) -> int:
        return self.cfg.num_steps

    # ----- the reverse process -------------------------------------------------
    @staticmethod
    def _one_hot(x: G.Graphs) -> tuple[torch.Tensor, torch.Tensor]:
        return F.one_hot(x.nodes, NODE_V + 1).float(), F.one_hot(x.edges, EDGE_V + 1).float()

    def _revealed_before(self, j: int) -> int:
        return self.cfg.num_elements * j // self.cfg.num_steps

    def _step(self, nodes: torch.Tensor, edges: torch.Tensor, j: int) -> _Step:
        """nodes, edges: (relaxed) one-hots before step j."""
        masked_count = self.cfg.num_elements - self._revealed_before(j)
        reveal = self._revealed_before(j + 1) - self._revealed_before(j)
        node_logits, edge_logits = self.denoiser(nodes, edges)
        edge_masked = (edges[..., EDGE_MASK] > 0.5) & _upper(self.cfg.max_atoms)
        return _Step(node_logits, edge_logits, nodes[..., NODE_MASK] > 0.5, edge_masked | edge_masked.transpose(1, 2),
                     reveal, reveal / max(masked_count, 1))

    def _masked_count(self, step: _Step) -> torch.Tensor:
        return step.node_masked.sum(-1) + (step.edge_masked & _upper(self.cfg.max_atoms)).sum((-1, -2))

    def _step_log_prob(self, step: _Step, x_next: G.Graphs) -> torch.Tensor:
        """(N,) log p(x_next | x): the revealed types' log-probs plus the log-chance of
        the revealed set, -log C(m, k); -inf if the step revealed another number of elements."""
        upper = _upper(self.cfg.max_atoms)
        node_new = step.node_masked & (x_next.nodes != NODE_MASK)
        edge_new = step.edge_masked & (x_next.edges != EDGE_MASK) & upper
        node_lp = torch.log_softmax(step.node_logits, -1).gather(-1, x_next.nodes.clamp(max=NODE_V - 1)[..., None])
        edge_lp = torch.log_softmax(step.edge_logits, -1).gather(-1, x_next.edges.clamp(max=EDGE_V - 1)[..., None])
        lp = (node_lp[..., 0] * node_new).sum(-1) + (edge_lp[..., 0] * edge_new).sum((-1, -2))
        lp = lp + reveal_set_log_prob(self._masked_count(step), step.reveal)
        revealed = node_new.sum(-1) + edge_new.sum((-1, -2))
        return torch.where(revealed == step.reveal, lp, torch.full_like(lp, -torch.inf))

    def _truncated(self, logits: torch.Tensor) -> torch.Tensor:
        return truncate_min_p(logits, self.cfg.min_p)

    @staticmethod
    def _step_kl(step: _Step, ref_node_logits: torch.Tensor, ref_edge_logits: torch.Tensor) -> torch.Tensor:
        """(N,) KL between two models' step distributions: both choose the revealed
        elements alike, so KL = p_unmask * sum over masked elements of KL(types)."""
        upper = _upper(step.edge_masked.shape[1])
        nodes = (categorical_kl(step.node_logits, ref_node_logits) * step.node_masked).sum(-1)
        edges = (categorical_kl(step.edge_logits, ref_edge_logits) * (step.edge_masked & upper)).sum((-1, -2))
        return step.p_unmask * (nodes + edges)

    def _unmask(self, step: _Step, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, n) and symmetric (N, n, n) bools: the `step.reveal` masked elements this step reveals."""
        n_graphs, n = step.node_masked.shape
        upper = _upper(n)
        masked = torch.cat([step.node_masked, step.edge_masked[:, upper]], 1)  # (N, E)
        score = torch.rand(masked.shape, generator=generator).masked_fill(~masked, -1.0)
        chosen = torch.zeros_like(masked)
        chosen.scatter_(1, score.topk(step.reveal, dim=1).indices, True)
        chosen &= masked
        edges = torch.zeros(n_graphs, n, n, dtype=torch.bool)
        edges[:, upper] = chosen[:, n:]
        return chosen[:, :n], edges | edges.transpose(1, 2)

    def _noise(self, step: _Step, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Gumbel noise for every slot and, mirrored, for every pair (one draw per pair)."""
        return (gumbel_noise(step.node_logits.shape, generator),
                _symmetric(gumbel_noise(step.edge_logits.shape, generator)))

    def _start(self, n: int) -> G.Graphs:
        m = self.cfg.max_atoms
        return G.Graphs(torch.full((n, m), NODE_MASK, dtype=torch.long), torch.full((n, m, m), EDGE_MASK) *
                        (1 - torch.eye(m, dtype=torch.long)))

    @torch.no_grad()
    def sample(
        self, n: int, *, generator: torch.Generator, keep_trajectory: bool = False, condition: torch.Tensor | None = None
    ) -> SampleOutput:
        x = self._start(n)
        states, log_probs = [x], []
        for j in range(self.cfg.num_steps):
            step = self._step(*self._one_hot(x), j)
            node_noise, edge_noise = self._noise(step, generator)
            node_new, edge_new = self._unmask(step, generator)
            x_next = G.Graphs(torch.where(node_new, (self._truncated(step.node_logits) + node_noise).argmax(-1), x.nodes),
                              torch.where(edge_new, (self._truncated(step.edge_logits) + edge_noise).argmax(-1), x.edges))
            if keep_trajectory:
                log_probs.append(self._step_log_prob(step, x_next))
                states.append(x_next)
            x = x_next
        trajectory = Trajectory(states, torch.stack(log_probs, 1)) if keep_trajectory else None
        return SampleOutput(x, self.decode(x), trajectory)

    def log_prob(self, trajectory: Trajectory, steps: Sequence[int] | None = None) -> torch.Tensor:
        steps = range(trajectory.num_steps) if steps is None else steps
        return torch.stack([self._step_log_prob(self._step(*self._one_hot(trajectory.states[j]), j),
                                                trajectory.states[j + 1]) for j in steps], 1)

    def kl(self, trajectory: Trajectory, reference: GraphDiffusionModel) -> torch.Tensor:
        out = []
        for j in range(trajectory.num_steps):
            z = self._one_hot(trajectory.states[j])
            step = self._step(*z, j)
            with torch.no_grad():
                ref = reference.denoiser(*z)
            out.append(self._step_kl(step, *ref))
        return torch.stack(out, 1)

    def sample_with_grad(
        self,
        n: int,
        *,
        generator: torch.Generator,
        last_k: int,
        reference: GraphDiffusionModel | None = None,
        condition: torch.Tensor | None = None,
    ) -> DifferentiableSample:
        """Reverse process whose last `last_k` steps reveal types by straight-through
        Gumbel-softmax (hard one-hot forward, relaxed gradient backward), so the
        returned `SoftGraphs` carries gradients to the denoiser through those steps;
        earlier steps are sampled without a gradient path, their KL still
        differentiated at the states they visit."""
        T = self.cfg.num_steps
        if not 1 <= last_k <= T:
            raise ValueError(f"last_k must be in [1, {T}], got {last_k}")
        nodes, edges = self._one_hot(self._start(n))
        kls = []
        for j in range(T):
            differentiable = j >= T - last_k
            with torch.set_grad_enabled(differentiable or reference is not None):
                step = self._step(nodes, edges, j)
            if reference is not None:
                with torch.no_grad():
                    ref = reference.denoiser(nodes, edges)
                kls.append(self._step_kl(step, *ref))
            node_noise, edge_noise = self._noise(step, generator)
            node_new, edge_new = self._unmask(step, generator)
            temperature = self.cfg.gumbel_temperature
            node_type = draw_one_hot(self._truncated(step.node_logits) + node_noise, temperature, differentiable)
            edge_type = draw_one_hot(self._truncated(step.edge_logits) + edge_noise, temperature, differentiable)
            nodes = torch.where(node_new[..., None], F.pad(node_type, (0, 1)), nodes)
            edges = torch.where(edge_new[..., None], F.pad(edge_type, (0, 1)), edges)
        x = G.SoftGraphs(nodes[..., :NODE_V], edges[..., :EDGE_V])
        kl = torch.stack(kls, 1) if kls else torch.zeros(n, T)
        return DifferentiableSample(x, self.decode(x.detach().hard()), kl)

    def sample_guided(
        self,
        n: int,
        *,
        generator: torch.Generator,
        guide: Callable[[G.SoftGraphs], torch.Tensor],
        scale: float,
        condition: torch.Tensor | None = None,
    ) -> SampleOutput:
        """Reward guidance by a first-order Taylor tilt, as the sequence model's: the
        guide sees the predicted clean graph (the denoiser's type probabilities where
        masked, the known type elsewhere); an element is revealed from
        p_theta(v) * exp(scale * d guide / d x0_hat[v]), a pair's gradient summed over
        both of its entries. With scale 0 this is exactly `sample`."""
        x = self._start(n)
        with torch.no_grad():
            for j in range(self.cfg.num_steps):
                step = self._step(*self._one_hot(x), j)
                node_logits, edge_logits = self._truncated(step.node_logits), self._truncated(step.edge_logits)
                if scale != 0:
                    known_nodes = F.one_hot(x.nodes.clamp(max=NODE_V - 1), NODE_V).float()
                    known_edges = F.one_hot(x.edges.clamp(max=EDGE_V - 1), EDGE_V).float()
                    hat = G.SoftGraphs(
                        torch.where(step.node_masked[..., None], node_logits.softmax(-1), known_nodes).requires_grad_(),
                        torch.where(step.edge_masked[..., None], edge_logits.softmax(-1), known_edges).requires_grad_())
                    with torch.enable_grad():
                        node_grad, edge_grad = torch.autograd.grad(guide(hat).sum(), [hat.nodes, hat.edges],
                                                                   allow_unused=True, materialize_grads=True)
                    node_logits = node_logits + scale * node_grad
                    edge_logits = edge_logits + scale * (edge_grad + edge_grad.transpose(1, 2))
                node_noise, edge_noise = self._noise(step, generator)
                node_new, edge_new = self._unmask(step, generator)
                x = G.Graphs(torch.where(node_new, (node_logits + node_noise).argmax(-1), x.nodes),
                             torch.where(edge_new, (edge_logits + edge_noise).argmax(-1), x.edges))
        return SampleOutput(x, self.decode(x))

    def denoising_loss(
        self,
        x0: G.Graphs,
        *,
        generator: torch.Generator,
        weights: torch.Tensor | None = None,
        condition: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """MDLM's NELBO (linear schedule) per graph over its E elements, averaged with
        `weights`; times stratified over the batch. Unconditional: no `condition`."""
        if condition is not None:
            raise ValueError("the graph diffusion model is unconditional; denoising_loss takes no condition")
        n_graphs, m = x0.nodes.shape
        t = ((torch.rand(1, generator=generator) + torch.arange(n_graphs) / n_graphs) % 1.0).clamp(min=1e-3)
        node_masked = torch.rand(x0.nodes.shape, generator=generator) < t[:, None]
        edge_masked = _symmetric(torch.rand(x0.edges.shape, generator=generator) < t[:, None, None])
        noisy = G.Graphs(torch.where(node_masked, NODE_MASK, x0.nodes),
                         torch.where(edge_masked, EDGE_MASK, x0.edges))
        node_logits, edge_logits = self.denoiser(*self._one_hot(noisy))
        node_nll = F.cross_entropy(node_logits.transpose(1, 2), x0.nodes, reduction="none")
        edge_nll = F.cross_entropy(edge_logits.permute(0, 3, 1, 2), x0.edges, reduction="none")
        total = (node_nll * node_masked).sum(-1) + (edge_nll * (edge_masked & _upper(m))).sum((-1, -2))
        per_graph = total / t / self.cfg.num_elements
        if weights is None:
            return per_graph.mean()
        return (weights * per_graph).sum() / weights.sum()

    # ----- bookkeeping -----------------------------------------------------------
    def conditions(self, designs: Sequence[str]) -> None:
        return None

    def encode(self, designs: Sequence[str]) -> G.Graphs:
        return G.encode(designs, self.cfg.max_atoms)

    def decode(self, x: G.Graphs) -> list[str]:
        return G.decode(x)
