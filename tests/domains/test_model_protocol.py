"""The `DiffusionModel` protocol (domains/base.py), checked by behaviour on every model class: the
masked discrete model of the sequence domain, the graph diffusion model of the molecule domain (whose
state is a `Batch`, not a tensor), the digits DDIM model and Stable Diffusion (tiny components from
tests/domains/conftest.py). What methods rely on is tested here once; each backend's
own file keeps only what is its own (its designs, errors, guidance rules, LoRA, checkpoint files)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch.nn import functional as F

from domains.base import DiffusionModel, Trajectory

torch.set_num_threads(1)


@dataclass
class Case:
    """How to build one model class and what to steer it with."""

    make: Callable[[], Any]
    """A fresh model with the same weights at every call (the global RNG left as it was)."""
    relaxed: Callable[[Any, torch.Tensor], torch.Tensor]
    """`SampleOutput.x` in the representation of `DifferentiableSample.x` (what a guide scores)."""
    guide: Callable[[torch.Tensor], torch.Tensor]
    """(N,) rewards of relaxed samples: one that the model can visibly raise."""
    scale: float
    """A guidance scale that steers this (random, tiny) model."""
    n: int = 4
    perturbation: float = 0.05
    """Size of the random change of the trainable parameters that makes a model differ from its copy."""


def _seeded(build: Callable[[], Any], seed: int = 0) -> Any:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return build()


def _mdlm() -> Case:
    from domains.sequences.mdlm import MaskedDiffusionModel, MDLMConfig

    cfg = MDLMConfig(alphabet="ACDE", length=6, num_steps=6, d_model=16, n_layers=1, n_heads=2)
    return Case(make=lambda: _seeded(lambda: MaskedDiffusionModel(cfg)),
                relaxed=lambda model, x: F.one_hot(x, cfg.vocab_size).float(),
                guide=lambda x: x[..., 0].sum(-1),  # how many 'A's
                scale=3.0, n=16)


def _graphs() -> Case:
    from domains.molecules import graphs
    from domains.molecules.graph_diffusion import GraphDiffusionConfig, GraphDiffusionModel

    cfg = GraphDiffusionConfig(max_atoms=5, num_steps=5, d_node=16, d_edge=8, n_layers=1, n_heads=2)
    return Case(make=lambda: _seeded(lambda: GraphDiffusionModel(cfg)),
                relaxed=lambda model, x: graphs.one_hot(x),
                guide=lambda x: x.nodes[..., 1].sum(-1) + x.edges[..., 2].sum((1, 2)),  # carbons and double bonds
                scale=3.0, n=8)


def _brightness(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=(1, 2, 3))


def _digits() -> Case:
    from domains.images.digits_model import DigitDiffusionConfig, DigitDiffusionModel

    cfg = DigitDiffusionConfig(block_out_channels=(8, 16), norm_num_groups=4, num_steps=4)
    return Case(make=lambda: _seeded(lambda: DigitDiffusionModel(cfg)), relaxed=lambda model, x: x,
                guide=_brightness, scale=100.0, n=8)


def _sd(tiny_sd) -> Case:
    return Case(make=tiny_sd.model, relaxed=lambda model, x: x, guide=_brightness, scale=50.0, n=2, perturbation=0.1)


@pytest.fixture(params=["mdlm", "graphs", "digits", "stable-diffusion"])
def case(request) -> Case:
    if request.param == "mdlm":
        return _mdlm()
    if request.param == "graphs":
        return _graphs()
    if request.param == "digits":
        return _digits()
    return _sd(request.getfixturevalue("tiny_sd"))  # skips without the `sd` extra


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def perturb(model, scale: float, seed: int = 1) -> None:
    """Move every trainable parameter by scale * N(0, 1)."""
    g = gen(seed)
    with torch.no_grad():
        for p in model.trainable_parameters():
            p.add_(scale * torch.randn(p.shape, generator=g).to(p.device, p.dtype))


def keys(designs) -> list:
    """What says two designs are the same measurement (ImageDesign.key(), or the design itself)."""
    return [d.key() if hasattr(d, "key") else d for d in designs]


def same_states(a, b) -> bool:
    """Equal states: tensors, or the fields of a structured `Batch` (a graph's nodes and edges)."""
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    return type(a) is type(b) and all(torch.equal(x, y) for x, y in zip(vars(a).values(), vars(b).values()))


def has_grad(params) -> bool:
    return any(p.grad is not None and p.grad.abs().sum() > 0 for p in params)


def decode(model, x: torch.Tensor, condition):
    return model.decode(x) if condition is None else model.decode(x, condition=condition)


# ----- sampling -------------------------------------------------------------------------
def test_is_a_diffusion_model_whose_samples_depend_on_the_generator_only(case):
    model = case.make()
    assert isinstance(model, DiffusionModel) and model.num_steps >= 1
    a = model.sample(case.n, generator=gen(11), keep_trajectory=True)
    b = model.sample(case.n, generator=gen(11), keep_trajectory=True)
    assert len(a.designs) == case.n and len(a.x) == case.n and a.trajectory is not None
    assert same_states(a.x, b.x) and keys(a.designs) == keys(b.designs)
    assert torch.equal(a.trajectory.log_probs, b.trajectory.log_probs)
    assert keys(model.sample(case.n, generator=gen(12)).designs) != keys(a.designs)
    assert model.sample(case.n, generator=gen(11)).trajectory is None


def test_conditions_of_the_designs_are_the_conditions_they_were_sampled_for(case):
    model = case.make()
    out = model.sample(case.n, generator=gen(), keep_trajectory=True)
    drawn = model.conditions(out.designs)
    if drawn is None:  # an unconditional model
        assert out.trajectory.condition is None
        return
    assert drawn.dtype == torch.long and torch.equal(drawn, out.trajectory.condition.cpu())
    wanted = drawn.flip(0)
    assert torch.equal(model.conditions(model.sample(case.n, generator=gen(1), condition=wanted).designs), wanted)


# ----- the policy: log-probs and KL -----------------------------------------------------
def test_recomputed_log_probs_are_the_kept_ones_so_ddpos_first_ratio_is_one(case):
    model = case.make()
    traj = model.sample(case.n, generator=gen(), keep_trajectory=True).trajectory
    T = model.num_steps
    assert traj.num_steps == T and traj.log_probs.shape == (case.n, T) and torch.isfinite(traj.log_probs).all()
    recomputed = model.log_prob(traj)
    torch.testing.assert_close(recomputed.detach(), traj.log_probs, rtol=0, atol=1e-5)
    # DDPO recomputes minibatches of rows at some steps: its first importance ratio must be 1.
    rows, steps = torch.tensor([1, 0]), [1, T - 1]
    condition = None if traj.condition is None else traj.condition[rows]
    batch = Trajectory([s[rows] for s in traj.states], traj.log_probs[rows], condition)
    ratio = torch.exp(model.log_prob(batch, steps) - batch.log_probs[:, steps])
    torch.testing.assert_close(ratio.detach(), torch.ones_like(ratio), rtol=0, atol=1e-5)
    recomputed.sum().backward()
    assert has_grad(model.trainable_parameters())


def test_kl_is_zero_to_an_unchanged_copy_and_positive_and_differentiable_after_a_change(case):
    model = case.make()
    frozen = model.frozen_copy()
    assert frozen.trainable_parameters() == []
    traj = model.sample(case.n, generator=gen(), keep_trajectory=True).trajectory
    kl = model.kl(traj, frozen)
    assert kl.shape == (case.n, model.num_steps)
    torch.testing.assert_close(kl.detach(), torch.zeros_like(kl), rtol=0, atol=1e-6)
    perturb(model, case.perturbation)
    kl = model.kl(traj, frozen)
    assert (kl >= 0).all() and (kl.sum(1) > 0).all()
    kl.sum().backward()
    assert has_grad(model.trainable_parameters())


def test_frozen_copy_keeps_the_weights_it_was_taken_with(case):
    model = case.make()
    traj = model.sample(case.n, generator=gen(), keep_trajectory=True).trajectory
    frozen = model.frozen_copy()
    perturb(model, case.perturbation)
    with torch.no_grad():
        torch.testing.assert_close(frozen.log_prob(traj), traj.log_probs, rtol=0, atol=1e-5)
        assert not torch.allclose(model.log_prob(traj), traj.log_probs, atol=1e-4)


# ----- differentiable sampling ----------------------------------------------------------
def test_sample_with_grad_draws_what_sample_draws_and_reaches_the_trainable_parameters(case):
    model = case.make()
    T = model.num_steps
    out = model.sample_with_grad(case.n, generator=gen(4), last_k=2)
    assert keys(out.designs) == keys(model.sample(case.n, generator=gen(4)).designs)
    assert out.kl.shape == (case.n, T) and (out.kl == 0).all()  # no reference, no KL
    case.guide(out.x).sum().backward()
    assert has_grad(model.trainable_parameters())
    for last_k in (0, T + 1):
        with pytest.raises(ValueError, match="last_k"):
            model.sample_with_grad(2, generator=gen(), last_k=last_k)


def test_sample_with_grad_kl_is_zero_to_an_unchanged_copy_and_differentiable_at_every_step(case):
    model = case.make()
    frozen = model.frozen_copy()
    same = model.sample_with_grad(case.n, generator=gen(), last_k=1, reference=frozen)
    assert same.kl.shape == (case.n, model.num_steps)
    torch.testing.assert_close(same.kl.detach(), torch.zeros_like(same.kl), rtol=0, atol=1e-6)
    perturb(model, case.perturbation)
    other = model.sample_with_grad(case.n, generator=gen(), last_k=1, reference=frozen)
    assert (other.kl.sum(1) > 0).all()
    # The first step is truncated (last_k = 1), yet its KL is differentiated in this model.
    other.kl[:, 0].sum().backward()
    assert has_grad(model.trainable_parameters())


# ----- guidance -------------------------------------------------------------------------
def test_guidance_at_scale_zero_is_sampling_and_a_positive_scale_raises_the_guides_reward(case):
    model = case.make()
    plain = model.sample(case.n, generator=gen(3))
    same = model.sample_guided(case.n, generator=gen(3), guide=case.guide, scale=0.0)
    assert same.trajectory is None and keys(same.designs) == keys(plain.designs)
    steered = model.sample_guided(case.n, generator=gen(3), guide=case.guide, scale=case.scale)
    reward = {name: float(case.guide(case.relaxed(model, out.x)).mean()) for name, out in
              (("plain", plain), ("steered", steered))}
    assert reward["steered"] > reward["plain"], reward
    assert all(p.grad is None for p in model.trainable_parameters())  # guidance trains nothing


# ----- designs, training, checkpoints ---------------------------------------------------
def test_encode_and_decode_round_trip(case):
    model = case.make()
    designs = model.sample(case.n, generator=gen()).designs
    x, condition = model.encode(designs), model.conditions(designs)
    again = decode(model, x, condition)
    assert keys(again) == keys(designs)
    # A state for the same designs: the same tensor, or a graph whose atoms may come in another order.
    assert same_states(model.encode(again), x) or keys(decode(model, model.encode(again), condition)) == keys(designs)


def test_denoising_loss_is_finite_weighted_per_sample_and_differentiable(case):
    model = case.make()
    designs = model.sample(2, generator=gen()).designs
    x0, condition = model.encode(designs), model.conditions(designs)
    loss = model.denoising_loss(x0, generator=gen(0), condition=condition)
    assert loss.shape == () and torch.isfinite(loss)
    loss.backward()
    assert has_grad(model.trainable_parameters())
    with torch.no_grad():
        equal = model.denoising_loss(x0, generator=gen(0), condition=condition, weights=torch.tensor([2.0, 2.0]))
        only_first = model.denoising_loss(x0, generator=gen(0), condition=condition, weights=torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(equal, loss.detach())
    assert not torch.allclose(only_first, loss.detach())


def test_save_and_load_give_the_same_samples(case, tmp_path):
    model = case.make()
    perturb(model, case.perturbation)  # so that load must restore trained weights, not the initial ones
    path = tmp_path / "model.safetensors"
    model.save(path)
    loaded = type(model).load(path)
    a, b = model.sample(case.n, generator=gen(2)), loaded.sample(case.n, generator=gen(2))
    assert same_states(a.x, b.x) and keys(a.designs) == keys(b.designs)
