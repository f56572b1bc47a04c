"""A masked (absorbing-state) discrete diffusion model of fixed-length sequences.

Sahoo et al. 2024, "Simple and Effective Masked Diffusion Language Models"
(MDLM). Forward process: each token is independently replaced by the mask
token with probability 1 - alpha_t, with the linear schedule alpha_t = 1 - t.
Reverse steps with the SUBS parameterisation (Sec. 3.2): an unmasked token is
carried over; a revealed token is drawn from the denoiser's clean-token
distribution x_theta(z_t), which never predicts the mask.

Which positions a step reveals: in the continuous-time process the positions
are revealed one at a time in a uniformly random order, so a sampler that
reveals exactly floor(L (j+1) / T) - floor(L j / T) uniformly chosen masked
positions at step j samples the same process (with T = L, one per step: the
first-hitting sampler of Zheng et al. 2024, "Masked Diffusion Models are
Secretly Time-Agnostic Masked Models"). MDLM's own T-step sampler reveals each
masked position independently with probability 1 / (T - j), so neighbours are
often revealed together and drawn independently: on the protein task 54% of
the banned transitions in samples sat between neighbours revealed in one step.

Min-p truncation (Nguyen et al. 2024, "Turning Up the Heat: Min-p Sampling"):
a step never draws a token the denoiser gives less than `min_p` times its top
token's probability. The denoiser spreads a little mass over tokens its
training data never shows after their neighbours; over 31 neighbour pairs that
mass made 34% of the protein model's samples infeasible. Log-probs and KLs are
those of the untruncated denoiser, as RL for language models computes them
under top-p sampling: a truncated token's log-prob is -inf, which a policy
gradient cannot take.

Training minimises the continuous-time NELBO (Eq. 10): for the linear schedule,
E_t [ 1/t * sum over masked positions of -log x_theta(z_t)[x_l] ].

Written by hand: diffusers has no discrete absorbing-state scheduler, and the
MDLM reference code is a Lightning research repo, not a library.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from domains.base import DifferentiableSample, SampleOutput, Trajectory
from domains.diffusion.checkpoint import Checkpointed
from domains.diffusion.masked import categorical_kl, draw_one_hot, gumbel_noise, reveal_set_log_prob, truncate_min_p
from domains.sequences import alphabet as alpha


@dataclass
class MDLMConfig:
    """Architecture and sampler of the masked diffusion model."""

    alphabet: str
    """The letters of the sequences; token i is alphabet[i], the mask is token len(alphabet)."""
    length: int
    """L, the fixed sequence length."""
    num_steps: int = 32
    """T, reverse steps when sampling; T = L reveals one position per step."""
    d_model: int = 64
    """Width of the transformer denoiser."""
    n_layers: int = 3
    """Transformer layers."""
    n_heads: int = 4
    """Attention heads."""
    gumbel_temperature: float = 1.0
    """Temperature of the Gumbel-softmax relaxation used by `sample_with_grad`."""
    min_p: float = 0.0
    """Min-p truncation of every draw (0: exact samples of the denoiser)."""

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")
        if self.num_steps < 1 or self.length < 1:
            raise ValueError("num_steps and length must be positive")
        if self.gumbel_temperature <= 0:
            raise ValueError("gumbel_temperature must be > 0")
        if not 0 <= self.min_p < 1:
            raise ValueError(f"min_p must lie in [0, 1), got {self.min_p}")

    @property
    def vocab_size(self) -> int:
        return len(self.alphabet)


class Denoiser(nn.Module):
    """A bidirectional transformer from (relaxed) one-hot z_t to clean-token logits.

    The input is one-hot over vocab + mask, embedded by a linear map, so that
    hard tokens and Gumbel-softmax relaxations go through the same path. No time
    input: for the absorbing process the mask pattern carries it (MDLM Sec. 3.2).
    """

    def __init__(self, cfg: MDLMConfig):
        super().__init__()
        self.embed = nn.Linear(cfg.vocab_size + 1, cfg.d_model, bias=False)
        self.position = nn.Parameter(0.02 * torch.randn(cfg.length, cfg.d_model))
        layer = nn.TransformerEncoderLayer(
            cfg.d_model, cfg.n_heads, 4 * cfg.d_model, dropout=0.0, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, cfg.n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.encoder(self.embed(z) + self.position)
        return self.head(self.norm(h))


@dataclass
class _Step:
    """One reverse step's quantities, shared by sampling, log-probs and KL."""

    logits: torch.Tensor  # (N, L, V) clean-token logits
    masked: torch.Tensor  # (N, L) bool, masked before the step
    reveal: int  # positions this step reveals
    p_unmask: float  # the chance that a given masked position is among them


class MaskedDiffusionModel(Checkpointed):
    """The sequence-domain `DiffusionModel`: an MDLM sampler around a `Denoiser`."""

    config_cls = MDLMConfig

    def __init__(self, cfg: MDLMConfig, metadata: dict[str, Any] | None = None):
        super().__init__()
        self.cfg = cfg
        self.denoiser = Denoiser(cfg)
        self.metadata: dict[str, Any] = dict(metadata or {})

    @property
    def num_steps(self) -> int:
        return self.cfg.num_steps

    @property
    def mask_id(self) -> int:
        return self.cfg.vocab_size

    # ----- the reverse process -------------------------------------------------
    def _one_hot(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.one_hot(tokens, self.cfg.vocab_size + 1).float()

    def _revealed_before(self, j: int) -> int:
        return self.cfg.length * j // self.cfg.num_steps

    def _step(self, z: torch.Tensor, j: int) -> _Step:
        """z: (N, L, V+1) (relaxed) one-hot state before step j."""
        masked_count = self.cfg.length - self._revealed_before(j)
        reveal = self._revealed_before(j + 1) - self._revealed_before(j)
        return _Step(self.denoiser(z), z[..., self.mask_id] > 0.5, reveal, reveal / max(masked_count, 1))

    @staticmethod
    def _step_log_prob(step: _Step, x_next: torch.Tensor, mask_id: int) -> torch.Tensor:
        """(N,) log p(x_next | x): the revealed tokens' log-probs plus the log-chance of
        the revealed set, -log C(m, k); -inf if the step revealed another number of positions."""
        revealed = step.masked & (x_next != mask_id)
        token_lp = torch.log_softmax(step.logits, -1).gather(-1, x_next.clamp(max=mask_id - 1)[..., None])[..., 0]
        lp = torch.where(revealed, token_lp, torch.zeros_like(token_lp)).sum(-1)
        lp = lp + reveal_set_log_prob(step.masked.sum(-1), step.reveal)
        return torch.where(revealed.sum(-1) == step.reveal, lp, torch.full_like(lp, -torch.inf))

    def _draw_logits(self, step: _Step) -> torch.Tensor:
        """The logits tokens are drawn from: min-p truncated."""
        return truncate_min_p(step.logits, self.cfg.min_p)

    @staticmethod
    def _step_kl(step: _Step, ref_logits: torch.Tensor) -> torch.Tensor:
        """(N,) KL between the two models' step distributions. Both choose the revealed
        positions alike, so only the tokens differ: KL = p_unmask * sum over masked
        positions of KL(x_theta || x_ref)."""
        kl = categorical_kl(step.logits, ref_logits)
        return step.p_unmask * torch.where(step.masked, kl, torch.zeros_like(kl)).sum(-1)

    def _unmask(self, step: _Step, generator: torch.Generator) -> torch.Tensor:
        """(N, L) bool: the `step.reveal` masked positions this step reveals, chosen uniformly."""
        score = torch.rand(step.masked.shape, generator=generator).masked_fill(~step.masked, -1.0)
        chosen = torch.zeros_like(step.masked)
        chosen.scatter_(1, score.topk(step.reveal, dim=1).indices, True)
        return chosen & step.masked

    def _start(self, n: int) -> torch.Tensor:
        return torch.full((n, self.cfg.length), self.mask_id, dtype=torch.long)

    @torch.no_grad()
    def sample(
        self, n: int, *, generator: torch.Generator, keep_trajectory: bool = False, condition: torch.Tensor | None = None
    ) -> SampleOutput:
        x = self._start(n)
        states, log_probs = [x], []
        for j in range(self.cfg.num_steps):
            step = self._step(self._one_hot(x), j)
            token = (self._draw_logits(step) + gumbel_noise(step.logits.shape, generator)).argmax(-1)  # Gumbel-max
            x_next = torch.where(self._unmask(step, generator), token, x)
            if keep_trajectory:
                log_probs.append(self._step_log_prob(step, x_next, self.mask_id))
                states.append(x_next)
            x = x_next
        trajectory = Trajectory(states, torch.stack(log_probs, 1)) if keep_trajectory else None
        return SampleOutput(x, self.decode(x), trajectory)

    def log_prob(self, trajectory: Trajectory, steps: Sequence[int] | None = None) -> torch.Tensor:
        steps = range(trajectory.num_steps) if steps is None else steps
        out = []
        for j in steps:
            step = self._step(self._one_hot(trajectory.states[j]), j)
            out.append(self._step_log_prob(step, trajectory.states[j + 1], self.mask_id))
        return torch.stack(out, 1)

    def kl(self, trajectory: Trajectory, reference: MaskedDiffusionModel) -> torch.Tensor:
        out = []
        for j in range(trajectory.num_steps):
            z = self._one_hot(trajectory.states[j])
            step = self._step(z, j)
            with torch.no_grad():
                ref_logits = reference.denoiser(z)
            out.append(self._step_kl(step, ref_logits))
        return torch.stack(out, 1)

    def sample_with_grad(
        self,
        n: int,
        *,
        generator: torch.Generator,
        last_k: int,
        reference: MaskedDiffusionModel | None = None,
        condition: torch.Tensor | None = None,
    ) -> DifferentiableSample:
        """Reverse process whose last `last_k` steps reveal tokens by straight-through
        Gumbel-softmax (hard one-hot forward, relaxed gradient backward), so the
        returned one-hot carries gradients to the denoiser through those steps.
        Earlier steps are sampled without a gradient path (truncated back-prop,
        as DRaFT-K / AlignProp); their per-step KL is still differentiated at the
        (detached) states they visit."""
        T, V = self.cfg.num_steps, self.cfg.vocab_size
        if not 1 <= last_k <= T:
            raise ValueError(f"last_k must be in [1, {T}], got {last_k}")
        z = self._one_hot(self._start(n))
        kls = []
        for j in range(T):
            differentiable = j >= T - last_k
            with torch.set_grad_enabled(differentiable or reference is not None):
                step = self._step(z, j)
            if reference is not None:
                with torch.no_grad():
                    ref_logits = reference.denoiser(z)
                kls.append(self._step_kl(step, ref_logits))
            noisy = self._draw_logits(step) + gumbel_noise(step.logits.shape, generator)
            token = F.pad(draw_one_hot(noisy, self.cfg.gumbel_temperature, differentiable), (0, 1))
            z = torch.where(self._unmask(step, generator)[..., None], token, z)
        x = z[..., :V]
        kl = torch.stack(kls, 1) if kls else torch.zeros(n, T)
        return DifferentiableSample(x, self.decode(x.detach().argmax(-1)), kl)

    def sample_guided(
        self,
        n: int,
        *,
        generator: torch.Generator,
        guide: Callable[[torch.Tensor], torch.Tensor],
        scale: float,
        condition: torch.Tensor | None = None,
    ) -> SampleOutput:
        """Reward guidance for a discrete model by a first-order Taylor expansion
        (as in Nisonoff et al. 2024, "Unlocking Guidance for Discrete State-Space
        Diffusion and Flow Models", and LaMBO-2's guided denoising): at each step
        the guide sees the soft one-hot of the predicted clean sequence x0_hat
        (the denoiser's clean-token probabilities at masked positions, the known
        token elsewhere); the token a step reveals at position l is drawn from
        p_theta(v) * exp(scale * d guide / d x0_hat[l, v]) instead of p_theta(v).
        The guide is differentiated, the denoiser is not: one reward-model
        backward per step. With scale 0 this is exactly `sample`."""
        V = self.cfg.vocab_size
        x = self._start(n)
        with torch.no_grad():
            for j in range(self.cfg.num_steps):
                step = self._step(self._one_hot(x), j)
                logits = self._draw_logits(step)
                if scale != 0:
                    known = F.one_hot(x.clamp(max=V - 1), V).float()
                    x0_hat = torch.where(step.masked[..., None], torch.softmax(logits, -1), known).requires_grad_()
                    with torch.enable_grad():
                        (grad,) = torch.autograd.grad(guide(x0_hat).sum(), x0_hat)
                    logits = logits + scale * grad
                token = (logits + gumbel_noise(logits.shape, generator)).argmax(-1)
                x = torch.where(self._unmask(step, generator), token, x)
        return SampleOutput(x, self.decode(x))

    def denoising_loss(
        self,
        x0: torch.Tensor,
        *,
        generator: torch.Generator,
        weights: torch.Tensor | None = None,
        condition: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """MDLM's NELBO (Eq. 10, linear schedule) per sequence, averaged with `weights`.
        Times are stratified over the batch (low-discrepancy sampler, MDLM Sec. 3.5).
        The model is unconditional: `condition` must be None."""
        if condition is not None:
            raise ValueError("the masked diffusion model is unconditional; denoising_loss takes no condition")
        n = x0.shape[0]
        t = (torch.rand(1, generator=generator) + torch.arange(n) / n) % 1.0
        t = t.clamp(min=1e-3)[:, None]
        masked = torch.rand(x0.shape, generator=generator) < t
        logits = self.denoiser(self._one_hot(torch.where(masked, self.mask_id, x0)))
        nll = F.cross_entropy(logits.transpose(1, 2), x0, reduction="none")
        per_sequence = (nll * masked).sum(-1) / t[:, 0] / self.cfg.length
        if weights is None:
            return per_sequence.mean()
        return (weights * per_sequence).sum() / weights.sum()

    # ----- bookkeeping -----------------------------------------------------------
    def conditions(self, designs: Sequence[str]) -> None:
        return None

    def encode(self, designs: Sequence[str]) -> torch.Tensor:
        return alpha.encode(designs, self.cfg.alphabet, self.cfg.length)

    def decode(self, x: torch.Tensor) -> list[str]:
        return alpha.decode(x, self.cfg.alphabet)
