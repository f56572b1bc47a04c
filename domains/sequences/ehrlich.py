"""Ehrlich functions: closed-form test functions for biophysical sequence design.

Stanton et al. 2024, "Closed-Form Test Functions for Biophysical Sequence
Optimization Algorithms" (arXiv:2407.00236; holo-bench). Written from the
paper's definition, not ported. In the paper's notation:

- a discrete Markov process (DMP) over v states with transition matrix A, some
  of whose entries are zero (banned transitions), defines the feasible set F:
  x is feasible iff no x_l -> x_{l+1} is banned;
- c motifs a^(i) of length k with spacings s^(i) (s_1 = 0, increasing, s_k < L // c);
- h_q(x, a, s) = max_l floor(q * sum_j 1[x_{l + s_j} = a_j] / k) / q, the
  quantised fraction of motif i present at its spacing anywhere in x
  (windows that run past the end of x are not counted);
- f(x) = prod_i h_q(x, a^(i), s^(i)) for x in F, undefined (NaN here) otherwise.

The maximum f = 1 is reached by a known feasible sequence (`optimal_solution`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from domains.base import OracleOutput
from domains.sequences import alphabet as alpha

_MAX_DRAWS = 100  # redraws of the transition graph, and of the motifs, before giving up


@dataclass(frozen=True)
class EhrlichConfig:
    """One Ehrlich function; the defaults are a small CPU-sized protein-like task."""

    num_states: int = 20
    """v, the alphabet size (the 20 amino acids first, then lowercase letters and digits)."""
    dim: int = 32
    """L, the sequence length."""
    num_motifs: int = 2
    """c, the number of motifs that must all be present."""
    motif_length: int = 4
    """k, the elements per motif."""
    quantization: int | None = None
    """q, the levels of motif presence (1 <= q <= k); None means q = k (no quantisation)."""
    banned_per_state: int | None = None
    """Banned outgoing transitions of each state (never the self-transition); None means v // 4."""
    seed: int = 0
    """Seed of the function's private generator: the same seed gives the same function."""

    def __post_init__(self) -> None:
        v, L, c, k = self.num_states, self.dim, self.num_motifs, self.motif_length
        try:
            alpha.alphabet_of_size(v)
        except ValueError as err:
            raise ValueError(f"num_states: {err}") from None
        if c < 1 or k < 1:
            raise ValueError(f"num_motifs={c} and motif_length={k} must both be at least 1")
        if c * k > L:
            raise ValueError(
                f"num_motifs * motif_length = {c * k} exceeds dim={L}: raise dim or use fewer/shorter motifs"
            )
        if c * k > v:
            raise ValueError(
                f"num_motifs * motif_length = {c * k} exceeds num_states={v}: motif elements are distinct, "
                "so raise num_states or use fewer/shorter motifs"
            )
        if not 1 <= self.q <= k:
            raise ValueError(f"quantization={self.quantization} must lie in 1..motif_length={k} (or be None for {k})")
        if not 0 <= self.num_banned <= v - 2:
            raise ValueError(
                f"banned_per_state={self.banned_per_state} must lie in 0..num_states-2={v - 2} "
                "so that every state can still move to another state"
            )

    @property
    def q(self) -> int:
        return self.motif_length if self.quantization is None else self.quantization

    @property
    def num_banned(self) -> int:
        return self.num_states // 4 if self.banned_per_state is None else self.banned_per_state


class Ehrlich:
    """An Ehrlich function as an `Oracle`: reward f(x) in [0, 1], NaN where infeasible."""

    floor = 0.0
    optimum = 1.0

    def __init__(self, config: EhrlichConfig):
        self.config = config
        v, L, c, k = config.num_states, config.dim, config.num_motifs, config.motif_length
        self.name = f"ehrlich-v{v}-l{L}-c{c}-k{k}-q{config.q}-b{config.num_banned}-s{config.seed}"
        self.alphabet = alpha.alphabet_of_size(v)
        generator = torch.Generator().manual_seed(config.seed)
        self.transition_matrix = _sample_transition_matrix(v, config.num_banned, generator)
        self.initial_dist = _stationary_dist(self.transition_matrix)
        allowed = (self.transition_matrix > 0).tolist()
        for _ in range(_MAX_DRAWS):
            # Distinct motif elements, and spacings drawn uniformly among increasing
            # offsets that fit one block of length L // c.
            self.motifs = torch.randperm(v, generator=generator)[: c * k].reshape(c, k)
            offsets = [torch.randperm(L // c - 1, generator=generator)[: k - 1].sort().values + 1 for _ in range(c)]
            self.spacings = torch.stack([torch.cat([torch.zeros(1, dtype=torch.long), o]) for o in offsets])
            optimum = _place_motifs(self.motifs, self.spacings, L, allowed)
            if optimum is not None:
                break
        else:
            raise RuntimeError(
                f"{self.name}: no feasible placement of the motifs in {_MAX_DRAWS} draws; "
                "lower banned_per_state or raise dim"
            )
        self._optimum = torch.tensor([optimum])
        values, feasible = self.evaluate_tokens(self._optimum)
        assert feasible.item() and values.item() == 1.0, f"{self.name}: constructed optimum scores {values.item()}"

    def encode(self, designs: Sequence[str]) -> torch.Tensor:
        """(N, L) long token ids; a one-line ValueError names the first bad design."""
        return alpha.encode(designs, self.alphabet, self.config.dim)

    def decode(self, tokens: torch.Tensor) -> list[str]:
        return alpha.decode(tokens, self.alphabet)

    def key(self, design: str) -> str:
        return design

    def is_feasible(self, tokens: torch.Tensor) -> torch.Tensor:
        """(N,) bool: no banned transition between neighbours. The first letter is never
        constrained, since the initial (stationary) distribution is positive everywhere."""
        return (self.transition_matrix[tokens[:, :-1], tokens[:, 1:]] > 0).all(dim=1)

    def reasons(self, designs: Sequence[str]) -> list[str | None]:
        """Why each design is infeasible (its first banned transition), None where feasible."""
        tokens = self.encode(designs)
        banned = self.transition_matrix[tokens[:, :-1], tokens[:, 1:]] == 0
        out: list[str | None] = []
        for design, row in zip(designs, banned):
            hits = row.nonzero().flatten().tolist()
            out.append(None if not hits else f"banned transition {design[hits[0]:hits[0] + 2]} at {hits[0] + 1}"
                       + (f" (+{len(hits) - 1} more)" if len(hits) > 1 else ""))
        return out

    def motif_presence(self, tokens: torch.Tensor) -> torch.Tensor:
        """(N, c) float64 h_q: the best count of matched motif elements over all windows
        l = 0 .. L - 1 - s_k, quantised down to the grid of q levels as floor(count * q / k) / q
        in integer arithmetic (exact; with q == k it is count / k)."""
        k, q = self.config.motif_length, self.config.q
        presence = []
        for motif, spacing in zip(self.motifs, self.spacings):
            starts = torch.arange(self.config.dim - spacing[-1].item())
            windows = tokens[:, starts[:, None] + spacing[None, :]]  # (N, windows, k)
            count = (windows == motif).sum(dim=-1).amax(dim=-1)
            presence.append(torch.div(count * q, k, rounding_mode="floor").double() / q)
        return torch.stack(presence, dim=1)

    def evaluate_tokens(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(values, feasible): f's product of motif presences (N,) float64, computed for
        every sequence, and the (N,) feasibility mask; callers decide what infeasible means."""
        return self.motif_presence(tokens).prod(dim=1), self.is_feasible(tokens)

    def __call__(self, designs: Sequence[str]) -> OracleOutput:
        values, feasible = self.evaluate_tokens(self.encode(designs))
        reward = torch.where(feasible, values, torch.nan)
        return OracleOutput(reward=reward.numpy(), feasible=feasible.numpy())

    def sample_markov(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """(n, L) long draws of the DMP: x_1 ~ initial_dist, x_{l+1} ~ A[x_l]. All feasible."""
        x = [torch.multinomial(self.initial_dist, n, replacement=True, generator=generator)]
        for _ in range(self.config.dim - 1):
            x.append(torch.multinomial(self.transition_matrix[x[-1]], 1, generator=generator).squeeze(1))
        return torch.stack(x, dim=1)

    def optimal_solution(self) -> str:
        """A feasible design with f = 1 (checked when the function was built)."""
        return self.decode(self._optimum)[0]


class MotifPresence:
    """One motif's quantised presence h_q(x) in [0, 1] under an Ehrlich function's
    feasibility (NaN where infeasible): a component of a multi-reward task. The
    Ehrlich function is the product of these; their weighted sum rewards
    partial progress on each motif separately."""

    floor = 0.0
    optimum = 1.0

    def __init__(self, ehrlich: Ehrlich, motif: int):
        if not 0 <= motif < ehrlich.config.num_motifs:
            raise ValueError(f"motif must be in [0, {ehrlich.config.num_motifs}), got {motif}")
        self.ehrlich, self.motif = ehrlich, motif
        self.name = f"{ehrlich.name}-motif{motif}"

    def key(self, design: str) -> str:
        return self.ehrlich.key(design)

    def reasons(self, designs: Sequence[str]) -> list[str | None]:
        return self.ehrlich.reasons(designs)

    def __call__(self, designs: Sequence[str]) -> OracleOutput:
        tokens = self.ehrlich.encode(designs)
        feasible = self.ehrlich.is_feasible(tokens)
        reward = torch.where(feasible, self.ehrlich.motif_presence(tokens)[:, self.motif], torch.nan)
        return OracleOutput(reward=reward.numpy(), feasible=feasible.numpy())


def _sample_transition_matrix(v: int, num_banned: int, generator: torch.Generator) -> torch.Tensor:
    """(v, v) row-stochastic A with `num_banned` zeros per row off the diagonal, redrawn
    until the allowed-transition graph is strongly connected, so that the DMP is ergodic
    (self-transitions make it aperiodic) and every motif can be reached from every state."""
    for _ in range(_MAX_DRAWS):
        scores = torch.rand(v, v, generator=generator).fill_diagonal_(2.0)  # the diagonal is never banned
        allowed = torch.ones(v, v, dtype=torch.bool).scatter_(1, scores.argsort(dim=1)[:, :num_banned], False)
        reach = allowed
        for _ in range(v.bit_length()):  # squaring doubles the path length covered
            reach = (reach.double() @ reach.double()) > 0
        if reach.all():
            logits = torch.randn(v, v, generator=generator, dtype=torch.float64)
            return logits.masked_fill(~allowed, -torch.inf).softmax(dim=1)
    raise RuntimeError(f"no strongly connected transition graph in {_MAX_DRAWS} draws; lower banned_per_state")


def _stationary_dist(transition_matrix: torch.Tensor) -> torch.Tensor:
    """(v,) pi with pi A = pi, sum pi = 1: starting there makes the DMP stationary, so
    every position of a sample has the same marginal."""
    v = transition_matrix.shape[0]
    system = transition_matrix.T - torch.eye(v, dtype=transition_matrix.dtype)
    system[-1] = 1.0  # replace one redundant balance equation by the normalisation
    rhs = torch.zeros(v, dtype=transition_matrix.dtype)
    rhs[-1] = 1.0
    return torch.linalg.solve(system, rhs).clamp_min(0.0)


def _place_motifs(motifs: torch.Tensor, spacings: torch.Tensor, L: int, allowed: list[list[bool]]) -> list[int] | None:
    """The optimum: motif i at offsets spacings[i] of block i (length L // c), each gap
    filled by a shortest allowed path padded with self-transitions, the tail by repeats.
    None if some gap is shorter than the shortest path across it."""
    block = L // len(motifs)
    anchors = [(i * block + s, a) for i in range(len(motifs)) for s, a in zip(spacings[i].tolist(), motifs[i].tolist())]
    x = [anchors[0][1]]  # spacings start at 0, so the first anchor is position 0
    for position, state in anchors[1:]:
        path = _shortest_path(allowed, x[-1], state)
        gap = position - (len(x) - 1)
        if len(path) - 1 > gap:
            return None
        x += [x[-1]] * (gap - (len(path) - 1)) + path[1:]
    return x + [x[-1]] * (L - len(x))


def _shortest_path(allowed: list[list[bool]], start: int, goal: int) -> list[int]:
    """States start .. goal along a shortest path of allowed transitions (breadth-first);
    the graph is strongly connected, so one exists."""
    parent = {start: start}
    queue = deque([start])
    while goal not in parent:
        state = queue.popleft()
        for nxt, ok in enumerate(allowed[state]):
            if ok and nxt not in parent:
                parent[nxt] = state
                queue.append(nxt)
    path = [goal]
    while path[-1] != start:
        path.append(parent[path[-1]])
    return path[::-1]
