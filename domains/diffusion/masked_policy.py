"""One masked-diffusion sampler for every discrete model: `sample`, `log_prob`, `kl`,
`sample_with_grad`, `sample_guided` and `denoising_loss` of the `DiffusionModel` protocol
(`domains/base.py`), written once over a few hooks that each model supplies.

Why one class: the five ways the methods use a sampler (plain draws with the trajectory kept, the
recomputed per-step log-probs of policy gradients, the per-step KL to an anchor, truncated
back-propagation through straight-through draws, reward-guided draws) and the pretraining loss
are the same for a sequence of tokens and for a molecular graph. What differs is the network and
what a state is: its categorical fields (`masked.Field`: one for a sequence, atoms and bonds for a
graph, whose bond matrix holds each pair twice) and the object they make (a tensor, a `Graphs`).
Written once, the guarantees the methods rely on hold for both by construction: equal generators
give equal draws across `sample`, `sample_with_grad` and `sample_guided` (every random number is
drawn in the same order in all three), a kept trajectory's log-probs are what `log_prob`
recomputes, and the KL is that of the very steps the sampler takes.

The process (Sahoo et al. 2024, "Simple and Effective Masked Diffusion Language Models", MDLM).
Forward: each element is independently replaced by the mask with probability 1 - alpha_t, with
the linear schedule alpha_t = 1 - t. Reverse, with the SUBS parameterisation (Sec. 3.2): an
unmasked element is carried over; a revealed element is drawn from the network's clean-type
distribution x_theta(z_t), which never predicts the mask. In continuous time the elements are
revealed one at a time in a uniformly random order, so a sampler that reveals exactly k_j
uniformly chosen masked elements at step j samples the same process (with T = E, one per step:
the first-hitting sampler of Zheng et al. 2024, "Masked Diffusion Models are Secretly
Time-Agnostic Masked Models"); MDLM's own sampler reveals each masked element with probability
1 / (T - j), so neighbours are often revealed together and drawn independently. Draws are
min-p truncated (Nguyen et al. 2024, "Turning Up the Heat: Min-p Sampling"); log-probs and KLs
are those of the untruncated network, as RL for language models computes them under top-p
sampling: a truncated type's log-prob is -inf, which a policy gradient cannot take. Training
minimises the continuous-time NELBO (Eq. 10): for the linear schedule,
E_t [1/t * sum over masked elements of -log x_theta(z_t)[x_0]].

Written by hand: diffusers has no discrete absorbing-state scheduler, and the MDLM reference code
is a Lightning research repo, not a library.

Notation and the names below:
    x, x_next     a state (`State`), a type per element, the mask one past each field's types;
                  states[j] of a kept trajectory is the state before step j
    fields        `fields`, with `_split(x)` the state's (N, *field.shape) type indices and
                  `_state(values)` the state they make
    z             `_one_hot(x)`: each field's one-hot over its types and the mask, what the
                  network reads (relaxed, straight-through, in `sample_with_grad`)
    x_theta       `_logits(z)`: the network's clean-type logits of each field, (N, *shape, V)
    E, T          `num_elements` (each element once) and `num_steps`
    m_j, k_j      the masked elements before step j, E - floor(E j / T), and those step j reveals,
                  floor(E (j + 1) / T) - floor(E j / T)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn import functional as F

from domains.base import DifferentiableSample, SampleOutput, State, Trajectory
from domains.diffusion.masked import (
    Field,
    categorical_kl,
    draw_one_hot,
    gumbel_noise,
    reveal_set_log_prob,
    truncate_min_p,
)

Fields = tuple[torch.Tensor, ...]
"""One tensor per field of a state, in the order of `MaskedPolicy.fields`."""


@dataclass(kw_only=True)
class MaskedSamplerConfig:
    """The sampler settings of a masked model's config, checked here. A model's config adds its
    size, its network and `num_steps` (T, whose default is the model's), and checks those; these
    are keyword-only so that a config's own fields keep their positions."""

    gumbel_temperature: float = 1.0
    """Temperature of the Gumbel-softmax relaxation used by `sample_with_grad`."""
    min_p: float = 0.0
    """Min-p truncation of every draw (0: exact samples of the network)."""

    def __post_init__(self) -> None:
        if self.num_steps < 1:
            raise ValueError(f"num_steps must be positive, got {self.num_steps}")
        if self.gumbel_temperature <= 0:
            raise ValueError("gumbel_temperature must be > 0")
        if not 0 <= self.min_p < 1:
            raise ValueError(f"min_p must lie in [0, 1), got {self.min_p}")


@dataclass
class _Step:
    """One reverse step's quantities, shared by sampling, log-probs and KL."""

    logits: Fields  # x_theta, (N, *shape, V) clean-type logits per field
    masked: Fields  # (N, *shape) bool per field, masked before the step
    reveal: int  # k_j, the elements this step reveals
    p_unmask: float  # k_j / m_j, the chance that a given masked element is among them


class MaskedPolicy(ABC):
    """A `DiffusionModel` whose reverse process is MDLM's absorbing-state process, sampled by
    revealing k_j uniformly chosen masked elements per step: every step has a tractable
    probability, the revealed types' probabilities times the chance of the revealed set,
    1 / C(m_j, k_j), so the sampler is a policy with per-step log-probs and KLs.

    A subclass supplies, and keeps only, what is its own:

    - its config (a `MaskedSamplerConfig` with `num_steps`) and its `masked.Field`s, passed to
      `__init__`, and its network;
    - `_logits(z)`: x_theta of every field, from the network;
    - `_split(x)` and `_state(values)`: a state as its fields' type indices and back, and
      `_soft(probs)`: the relaxed representation of per-field type probabilities (what
      `DifferentiableSample.x` holds and what a guide scores);
    - `encode`, `decode`, and `trainable_parameters`, `frozen_copy`, `save` (and a `load`).

    The models are unconditional: a condition is ignored by the samplers and refused by
    `denoising_loss`.
    """

    def __init__(self, cfg: Any, fields: tuple[Field, ...], metadata: dict[str, Any] | None = None):
        super().__init__()
        self.cfg = cfg
        """The model's config: a `MaskedSamplerConfig` with `num_steps`."""
        self.fields = fields
        """The state's categorical fields, in the order of `_split`."""
        self.metadata: dict[str, Any] = dict(metadata or {})
        """What a checkpoint carries besides the weights (the pretraining report)."""

    # ----- hooks ---------------------------------------------------------------------
    @abstractmethod
    def _logits(self, z: Fields) -> Fields:
        """x_theta(z): clean-type logits (N, *shape, V) of every field, from (relaxed) one-hots
        (N, *shape, V + 1); equal at the copies of an element (a tied field's), so that its copies,
        drawn with the same noise, get the same type."""

    @abstractmethod
    def _split(self, x: State) -> Fields:
        """The type indices (N, *shape) of each field of states x."""

    @abstractmethod
    def _state(self, values: Fields) -> State:
        """The states whose fields hold these type indices (the inverse of `_split`)."""

    @abstractmethod
    def _soft(self, probs: Fields) -> Any:
        """The relaxed representation of per-field type probabilities (N, *shape, V)."""

    @abstractmethod
    def decode(self, x: State) -> list[Any]:
        """Designs from states."""

    # ----- the process -----------------------------------------------------------------
    @property
    def num_steps(self) -> int:
        """T, the reverse steps of one sample."""
        return self.cfg.num_steps

    @property
    def num_elements(self) -> int:
        """E, the elements a state is made of, each counted once."""
        return sum(f.num_elements for f in self.fields)

    def _start(self, n: int) -> State:
        """x_1: n fully masked states."""
        return self._state(tuple(f.start(n) for f in self.fields))

    def _one_hot(self, x: State) -> Fields:
        """z: the one-hot of each field over its types and the mask."""
        return tuple(F.one_hot(values, f.vocab + 1).float() for f, values in zip(self.fields, self._split(x)))

    def _step(self, z: Fields, j: int, num_steps: int | None = None) -> _Step:
        """x_theta and the masks of step j of `num_steps` (the model's T unless given) from z, the
        (relaxed) one-hots of the state before it."""
        E, T = self.num_elements, num_steps or self.num_steps
        masked_count = E - E * j // T
        reveal = E * (j + 1) // T - E * j // T
        masked = tuple(f.masked(zf) for f, zf in zip(self.fields, z))
        return _Step(self._logits(z), masked, reveal, reveal / max(masked_count, 1))

    def _truncated(self, step: _Step) -> Fields:
        """The logits types are drawn from: min-p truncated."""
        return tuple(truncate_min_p(logits, self.cfg.min_p) for logits in step.logits)

    def _noise(self, step: _Step, generator: torch.Generator) -> Fields:
        # Gumbel noise for every element, tied across its copies. Drawn before the revealed set,
        # field by field, in every sampler: equal generators give equal samples in all three.
        return tuple(f.tie(gumbel_noise(logits.shape, generator)) for f, logits in zip(self.fields, step.logits))

    def _unmask(self, step: _Step, generator: torch.Generator) -> Fields:
        """(N, *shape) bools per field: the k_j masked elements this step reveals, chosen uniformly
        among the masked elements of all fields at once."""
        masked = torch.cat([f.elements(m) for f, m in zip(self.fields, step.masked)], 1)  # (N, E)
        score = torch.rand(masked.shape, generator=generator).masked_fill(~masked, -1.0)
        chosen = torch.zeros_like(masked)
        chosen.scatter_(1, score.topk(step.reveal, dim=1).indices, True)
        chosen &= masked
        parts = chosen.split([f.num_elements for f in self.fields], 1)
        return tuple(f.entries(part) for f, part in zip(self.fields, parts))

    def _reveal(self, x: State, step: _Step, logits: Fields, generator: torch.Generator) -> State:
        """The state after step j: the chosen elements drawn from `logits` by Gumbel-max."""
        noise, chosen = self._noise(step, generator), self._unmask(step, generator)
        return self._state(tuple(torch.where(new, (lf + g).argmax(-1), values)
                                 for new, lf, g, values in zip(chosen, logits, noise, self._split(x))))

    def _step_log_prob(self, step: _Step, x_next: State) -> torch.Tensor:
        """(N,) log p(x_next | x): the revealed types' log-probs plus the log-chance of the revealed
        set, -log C(m_j, k_j); -inf if the step revealed another number of elements."""
        lp, revealed, masked_count = 0, 0, 0
        for f, logits, masked, values in zip(self.fields, step.logits, step.masked, self._split(x_next)):
            new = masked & (values != f.mask_id)
            type_lp = torch.log_softmax(logits, -1).gather(-1, values.clamp(max=f.mask_id - 1)[..., None])[..., 0]
            lp = lp + f.total(type_lp, new)
            revealed = revealed + f.count(new)
            masked_count = masked_count + f.count(masked)
        lp = lp + reveal_set_log_prob(masked_count, step.reveal)
        return torch.where(revealed == step.reveal, lp, torch.full_like(lp, -torch.inf))

    def _step_kl(self, step: _Step, ref_logits: Fields) -> torch.Tensor:
        """(N,) KL between two models' step distributions. Both choose the revealed elements
        alike, so only the types differ: KL = k_j / m_j * sum over masked elements of
        KL(x_theta || x_ref)."""
        kl = sum(f.total(categorical_kl(logits, ref), masked)
                 for f, logits, ref, masked in zip(self.fields, step.logits, ref_logits, step.masked))
        return step.p_unmask * kl

    # ----- the protocol ---------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self, n: int, *, generator: torch.Generator, keep_trajectory: bool = False, condition: Any = None
    ) -> SampleOutput:
        """n samples; the kept trajectory holds the states x_1..x_0 and the per-step log-probs (N, T)."""
        x = self._start(n)
        states, log_probs = [x], []
        for j in range(self.num_steps):
            step = self._step(self._one_hot(x), j)
            x_next = self._reveal(x, step, self._truncated(step), generator)
            if keep_trajectory:
                log_probs.append(self._step_log_prob(step, x_next))
                states.append(x_next)
            x = x_next
        trajectory = Trajectory(states, torch.stack(log_probs, 1)) if keep_trajectory else None
        return SampleOutput(x, self.decode(x), trajectory)

    def log_prob(self, trajectory: Trajectory, steps: Sequence[int] | None = None) -> torch.Tensor:
        """(N, len(steps)) log p(states[j+1] | states[j]) of the untruncated network, with gradients."""
        steps = range(trajectory.num_steps) if steps is None else steps
        return torch.stack([self._step_log_prob(self._step(self._one_hot(trajectory.states[j]), j),
                                                trajectory.states[j + 1]) for j in steps], 1)

    def kl(self, trajectory: Trajectory, reference: MaskedPolicy) -> torch.Tensor:
        """(N, T) KL(this step || reference step) at the kept states, differentiable in this
        model's parameters."""
        out = []
        for j in range(trajectory.num_steps):
            z = self._one_hot(trajectory.states[j])
            step = self._step(z, j)
            with torch.no_grad():
                ref_logits = reference._logits(z)
            out.append(self._step_kl(step, ref_logits))
        return torch.stack(out, 1)

    def sample_with_grad(
        self,
        n: int,
        *,
        generator: torch.Generator,
        last_k: int,
        reference: MaskedPolicy | None = None,
        condition: Any = None,
        kl_steps: Collection[int] | None = None,
        num_steps: int | None = None,
    ) -> DifferentiableSample:
        """Reverse process whose last `last_k` steps reveal types by straight-through
        Gumbel-softmax (hard one-hot forward, relaxed gradient backward), so the returned
        relaxed sample (`_soft`) carries gradients to the network through those steps. Earlier
        steps are sampled without a gradient path (truncated back-prop, as DRaFT-K and
        AlignProp); their per-step KL is still differentiated at the (detached) states they
        visit. With the same generator it draws what `sample` draws.

        Two cuts of a fine-tuning step's passes: `kl_steps`, the steps whose KL is computed (the
        others' columns are zero and their network calls skip the anchor, and the gradient where
        they are not among the last `last_k`); and `num_steps`, a coarser reverse process than the
        model's T (the network is the same at every T, MDLM being time-agnostic: a step of a
        T/2-step process reveals two elements where the model's reveals one)."""
        T = num_steps or self.num_steps
        if not 1 <= last_k <= T:
            raise ValueError(f"last_k must be in [1, {T}], got {last_k}")
        if kl_steps is not None and not set(kl_steps) <= set(range(T)):
            raise ValueError(f"kl_steps must lie in [0, {T}), got {sorted(kl_steps)}")
        z = self._one_hot(self._start(n))
        kls = []
        for j in range(T):
            differentiable = j >= T - last_k
            with_kl = reference is not None and (kl_steps is None or j in kl_steps)
            with torch.set_grad_enabled(differentiable or with_kl):
                step = self._step(z, j, T)
            if with_kl:
                with torch.no_grad():
                    ref_logits = reference._logits(z)
            kls.append(self._step_kl(step, ref_logits) if with_kl else torch.zeros(n))
            noise, chosen = self._noise(step, generator), self._unmask(step, generator)
            drawn = (draw_one_hot(lf + g, self.cfg.gumbel_temperature, differentiable)
                     for lf, g in zip(self._truncated(step), noise))
            z = tuple(torch.where(new[..., None], F.pad(d, (0, 1)), zf) for new, d, zf in zip(chosen, drawn, z))
        probs = tuple(zf[..., :f.vocab] for f, zf in zip(self.fields, z))
        hard = self._state(tuple(p.detach().argmax(-1) for p in probs))
        return DifferentiableSample(self._soft(probs), self.decode(hard), torch.stack(kls, 1))

    def sample_guided(
        self,
        n: int,
        *,
        generator: torch.Generator,
        guide: Callable[[Any], torch.Tensor],
        scale: float,
        condition: Any = None,
    ) -> SampleOutput:
        """Reward guidance for a discrete model by a first-order Taylor expansion (as in Nisonoff
        et al. 2024, "Unlocking Guidance for Discrete State-Space Diffusion and Flow Models", and
        LaMBO-2's guided denoising): at each step the guide sees the relaxed predicted clean state
        x0_hat (`_soft` of the network's type probabilities where masked, the known type's one-hot
        elsewhere); an element a step reveals is drawn from p_theta(v) * exp(scale * d guide /
        d x0_hat[v]) instead of p_theta(v), an element's gradient summed over its copies
        (`Field.pool`). The guide is differentiated, the network is not: one reward-model
        backward per step. With scale 0 this is exactly `sample`."""
        x = self._start(n)
        with torch.no_grad():
            for j in range(self.num_steps):
                step = self._step(self._one_hot(x), j)
                logits = self._truncated(step)
                if scale != 0:
                    gradient = self._guide_gradient(x, step, logits, guide)
                    logits = tuple(lf + scale * g for lf, g in zip(logits, gradient))
                x = self._reveal(x, step, logits, generator)
        return SampleOutput(x, self.decode(x))

    def _guide_gradient(self, x: State, step: _Step, logits: Fields, guide: Callable[[Any], torch.Tensor]) -> Fields:
        """d sum_i guide(x0_hat)_i / d x0_hat per field, pooled over each element's copies; zeros
        for a field the guide does not read."""
        x0_hat = []
        for f, masked, lf, values in zip(self.fields, step.masked, logits, self._split(x)):
            known = F.one_hot(values.clamp(max=f.vocab - 1), f.vocab).float()
            x0_hat.append(torch.where(masked[..., None], lf.softmax(-1), known).requires_grad_())
        with torch.enable_grad():
            grads = torch.autograd.grad(guide(self._soft(x0_hat)).sum(), x0_hat, allow_unused=True,
                                        materialize_grads=True)
        return tuple(f.pool(g) for f, g in zip(self.fields, grads))

    def denoising_loss(
        self,
        x0: State,
        *,
        generator: torch.Generator,
        weights: torch.Tensor | None = None,
        condition: Any = None,
    ) -> torch.Tensor:
        """MDLM's NELBO (Eq. 10, linear schedule) per state over its E elements, averaged with
        `weights`. Times are stratified over the batch (low-discrepancy sampler, MDLM Sec. 3.5)."""
        if condition is not None:
            raise ValueError(f"{type(self).__name__} is unconditional; denoising_loss takes no condition")
        clean = self._split(x0)
        n = len(clean[0])
        t = ((torch.rand(1, generator=generator) + torch.arange(n) / n) % 1.0).clamp(min=1e-3)
        masked = []
        for f, values in zip(self.fields, clean):  # each element with probability t, its copies with it
            t_each = t.view(n, *[1] * (values.dim() - 1))
            masked.append(f.tie(torch.rand(values.shape, generator=generator) < t_each))
        noisy = tuple(torch.where(m, f.mask_id, values) for f, m, values in zip(self.fields, masked, clean))
        logits = self._logits(self._one_hot(self._state(noisy)))
        nll = sum(f.total(F.cross_entropy(lf.movedim(-1, 1), values, reduction="none"), m)
                  for f, lf, values, m in zip(self.fields, logits, clean, masked))
        per_sample = nll / t / self.num_elements
        if weights is None:
            return per_sample.mean()
        return (weights * per_sample).sum() / weights.sum()

    def conditions(self, designs: Sequence[Any]) -> None:
        return None
