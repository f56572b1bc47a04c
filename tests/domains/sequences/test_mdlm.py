"""The masked diffusion model: its sampler, log-probs, KL, differentiable sampling,
pretraining loss and checkpoints."""

from __future__ import annotations

import itertools

import pytest
import torch

from domains.base import Trajectory
from domains.sequences.mdlm import MaskedDiffusionModel, MDLMConfig

CFG = MDLMConfig(alphabet="ACDE", length=6, num_steps=6, d_model=16, n_layers=1, n_heads=2)


def tiny_model(cfg: MDLMConfig = CFG, seed: int = 0) -> MaskedDiffusionModel:
    """A random model whose weights depend only on `seed` (global RNG left as it was)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return MaskedDiffusionModel(cfg)


def perturbed_copy(model: MaskedDiffusionModel, scale: float = 0.5) -> MaskedDiffusionModel:
    ref = model.frozen_copy()
    gen = torch.Generator().manual_seed(123)
    with torch.no_grad():
        for p in ref.denoiser.head.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen))
    return ref


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_sample_shapes_and_decoding():
    model = tiny_model()
    out = model.sample(5, generator=gen())
    assert out.x.shape == (5, CFG.length) and out.x.dtype == torch.long
    assert len(out.designs) == 5
    assert all(len(d) == CFG.length and set(d) <= set(CFG.alphabet) for d in out.designs)
    assert model.decode(out.x) == out.designs
    assert torch.equal(model.encode(out.designs), out.x)
    assert out.trajectory is None


def test_last_step_unmasks_everything():
    model = tiny_model()
    traj = model.sample(64, generator=gen(), keep_trajectory=True).trajectory
    assert traj.num_steps == CFG.num_steps == traj.log_probs.shape[1]
    assert (traj.states[0] == model.mask_id).all()
    assert (traj.states[-1] != model.mask_id).all()
    assert (traj.states[-2] == model.mask_id).any()  # the last step had work to do
    # Once revealed, a token is carried over unchanged.
    for before, after in zip(traj.states[:-1], traj.states[1:]):
        revealed = before != model.mask_id
        assert torch.equal(after[revealed], before[revealed])


def test_step_log_probs_are_non_positive():
    traj = tiny_model().sample(64, generator=gen(), keep_trajectory=True).trajectory
    assert traj.log_probs.shape == (64, CFG.num_steps)
    assert torch.isfinite(traj.log_probs).all()
    assert (traj.log_probs <= 0).all()


def test_log_prob_carries_gradients_to_the_denoiser():
    model = tiny_model()
    traj = model.sample(8, generator=gen(), keep_trajectory=True).trajectory
    model.log_prob(traj).sum().backward()
    assert model.denoiser.head.weight.grad.abs().sum() > 0


TINY = MDLMConfig(alphabet="AC", length=2, num_steps=2, d_model=8, n_layers=1, n_heads=2)


def _all_trajectories(model: MaskedDiffusionModel) -> Trajectory:
    """Every reverse trajectory of the tiny model (length 2, 2 letters, 2 steps)."""
    m, letters = model.mask_id, range(TINY.vocab_size)
    rows = []
    for x1 in itertools.product([m, *letters], repeat=2):
        fills = [letters if t == m else [t] for t in x1]  # carried tokens stay
        for x2 in itertools.product(*fills):
            rows.append((x1, x2))
    x0 = torch.full((len(rows), 2), m)
    return Trajectory([x0, torch.tensor([r[0] for r in rows]), torch.tensor([r[1] for r in rows])],
                      torch.zeros(len(rows), 2))


def test_trajectory_probabilities_sum_to_one():
    model = tiny_model(TINY, seed=3)
    traj = _all_trajectories(model)
    with torch.no_grad():
        total = model.log_prob(traj).sum(1).exp().sum()
    assert float(total) == pytest.approx(1.0, abs=1e-5)


def test_sampler_draws_from_the_distribution_its_log_probs_define():
    model = tiny_model(TINY, seed=3)
    traj = _all_trajectories(model)
    with torch.no_grad():
        p = model.log_prob(traj).sum(1).exp()
    exact = {}
    for design, prob in zip(model.decode(traj.states[-1]), p.tolist()):
        exact[design] = exact.get(design, 0.0) + prob
    n = 4000
    designs = model.sample(n, generator=gen(7)).designs
    for design, prob in exact.items():
        assert designs.count(design) / n == pytest.approx(prob, abs=0.03)


def test_kl_to_a_perturbed_copy_is_positive_only_at_steps_that_reveal():
    # 8 steps for 6 positions: two steps reveal nothing, so the models cannot differ there.
    model = tiny_model(MDLMConfig(alphabet="ACDE", length=6, num_steps=8, d_model=16, n_layers=1, n_heads=2))
    traj = model.sample(64, generator=gen(), keep_trajectory=True).trajectory
    kl = model.kl(traj, perturbed_copy(model))
    reveals = torch.stack([(a != b).any(1) for a, b in zip(traj.states[:-1], traj.states[1:])], 1)  # (N, T)
    assert (~reveals).any() and reveals.any()
    assert (kl[reveals] > 0).all()
    assert (kl[~reveals] == 0).all()


def test_each_step_reveals_its_share_of_positions():
    # 6 positions in 6 steps: one per step (the first-hitting sampler); 6 in 4: 1, 2, 1, 2.
    for steps, counts in [(6, [1] * 6), (4, [1, 2, 1, 2])]:
        model = tiny_model(MDLMConfig(alphabet="ACDE", length=6, num_steps=steps, d_model=16, n_layers=1, n_heads=2))
        traj = model.sample(32, generator=gen(), keep_trajectory=True).trajectory
        for j, count in enumerate(counts):
            assert ((traj.states[j] == model.mask_id).sum(1) - (traj.states[j + 1] == model.mask_id).sum(1)
                    == count).all()


def test_min_p_never_draws_a_token_far_below_the_top_one():
    # A model whose head prefers token 0 by far at every position: with min-p 0.1
    # no other token may appear; without truncation they do.
    for min_p, others in [(0.0, True), (0.1, False)]:
        model = tiny_model(MDLMConfig(alphabet="ACDE", length=6, num_steps=6, d_model=16, n_layers=1, n_heads=2,
                                      min_p=min_p))
        with torch.no_grad():
            model.denoiser.head.weight.zero_()
            model.denoiser.head.bias.copy_(torch.tensor([3.0, 0.0, 0.0, 0.0]))  # others at e^-3 = 0.05 of the top
        x = model.sample(200, generator=gen()).x
        assert bool((x != 0).any()) == others


@pytest.mark.parametrize("last_k", [1, 3, CFG.num_steps])
def test_sample_with_grad_returns_one_hots_whose_gradient_reaches_the_denoiser(last_k):
    model = tiny_model()
    out = model.sample_with_grad(8, generator=gen(), last_k=last_k)
    assert out.x.shape == (8, CFG.length, CFG.vocab_size)
    # Forward values are one-hots (straight-through: hard forward, soft backward).
    assert torch.allclose(out.x.detach(), torch.nn.functional.one_hot(out.x.detach().argmax(-1), CFG.vocab_size).float(),
                          atol=1e-6)
    assert model.decode(out.x.detach().argmax(-1)) == out.designs
    weights = torch.randn(CFG.length, CFG.vocab_size, generator=gen(1))
    (out.x * weights).sum().backward()
    grads = [p.grad for p in model.denoiser.parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    assert all(g is None or torch.isfinite(g).all() for g in grads)


def test_sample_with_grad_kl_is_zeros_without_a_reference():
    out = tiny_model().sample_with_grad(8, generator=gen(), last_k=2)
    assert out.kl.shape == (8, CFG.num_steps)
    assert (out.kl == 0).all()


def test_sample_with_grad_kl_is_zero_to_a_frozen_copy_and_positive_to_a_perturbed_one():
    model = tiny_model()
    same = model.sample_with_grad(8, generator=gen(), last_k=2, reference=model.frozen_copy())
    assert same.kl.shape == (8, CFG.num_steps)
    assert torch.allclose(same.kl, torch.zeros_like(same.kl), atol=1e-6)
    other = model.sample_with_grad(8, generator=gen(), last_k=2, reference=perturbed_copy(model))
    assert (other.kl.sum(1) > 0).all()
    # The KL of every step, truncated ones included, is differentiated.
    other.kl[:, 0].sum().backward()
    assert model.denoiser.head.weight.grad.abs().sum() > 0


def test_tokens_revealed_before_the_last_k_steps_carry_no_gradient():
    # Truncated back-propagation: with last_k=1 only the tokens revealed at the
    # final step depend on the parameters. Which those are is read off the kept
    # trajectory of `sample` with the same generator (same draws, see above).
    model, n = tiny_model(), 6
    traj = model.sample(n, generator=gen(5), keep_trajectory=True).trajectory
    revealed_last = traj.states[-2] == model.mask_id  # (N, L)
    assert revealed_last.any() and (~revealed_last).any()
    out = model.sample_with_grad(n, generator=gen(5), last_k=1)
    params = model.trainable_parameters()
    weights = torch.randn(CFG.vocab_size, generator=gen(1))
    for i in range(n):
        for pos in range(CFG.length):
            grads = torch.autograd.grad((out.x[i, pos] * weights).sum(), params, retain_graph=True, allow_unused=True)
            has_grad = any(g is not None and g.abs().sum() > 0 for g in grads)
            assert has_grad == bool(revealed_last[i, pos]), (i, pos)


@pytest.mark.parametrize("last_k", [0, CFG.num_steps + 1])
def test_sample_with_grad_rejects_last_k_out_of_range(last_k):
    with pytest.raises(ValueError, match="last_k"):
        tiny_model().sample_with_grad(2, generator=gen(), last_k=last_k)


def test_load_of_a_missing_path_names_the_path(tmp_path):
    path = tmp_path / "nowhere.safetensors"
    with pytest.raises(FileNotFoundError, match="nowhere.safetensors"):
        MaskedDiffusionModel.load(path)


def test_denoising_loss_decreases_with_training():
    model = tiny_model()
    data = model.encode(["AACCDD", "ACACAC", "EEEEEE", "ADADAD"] * 8)
    with torch.no_grad():
        loss_before = float(model.denoising_loss(data, generator=gen(0)))
    opt = torch.optim.Adam(model.trainable_parameters(), lr=1e-2)
    noise = gen(1)
    for _ in range(30):
        loss = model.denoising_loss(data, generator=noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        loss_after = float(model.denoising_loss(data, generator=gen(0)))
    assert loss_after < 0.7 * loss_before


def test_denoising_loss_weights_select_sequences():
    model = tiny_model()
    data = model.encode(["AACCDD", "EEEEEE"])
    with torch.no_grad():
        only_first = model.denoising_loss(data, generator=gen(0), weights=torch.tensor([1.0, 0.0]))
        unweighted = model.denoising_loss(data, generator=gen(0))
        equal = model.denoising_loss(data, generator=gen(0), weights=torch.tensor([2.0, 2.0]))
    assert torch.allclose(equal, unweighted)
    assert not torch.allclose(only_first, unweighted)


@pytest.mark.parametrize(
    "designs, message",
    [(["AACCDB"], "letter 'B'"), (["AACCD"], "length 5"), (["AACCDDE"], "length 7"), ([42], "int")],
)
def test_encode_rejects_a_bad_design(designs, message):
    with pytest.raises(ValueError, match=message):
        tiny_model().encode(designs)


def test_config_rejects_inconsistent_settings():
    with pytest.raises(ValueError, match="n_heads"):
        MDLMConfig(alphabet="AC", length=4, d_model=10, n_heads=4)
    with pytest.raises(ValueError, match="gumbel_temperature"):
        MDLMConfig(alphabet="AC", length=4, gumbel_temperature=0.0)


def test_guided_token_distribution_is_the_exponentially_tilted_one():
    """One position: the denoiser always sees the all-mask state, so the revealed
    token of a linear guide w . x0_hat is drawn from softmax(logits + scale * w)."""
    cfg = MDLMConfig(alphabet="ACDE", length=1, num_steps=3, d_model=16, n_layers=1, n_heads=2)
    model = tiny_model(cfg, seed=1)
    w = torch.tensor([1.0, 0.0, -0.5, 0.3])
    scale = 2.0
    with torch.no_grad():
        logits = model.denoiser(*model._one_hot(model._start(1)))[0, 0]
    expected = torch.softmax(logits + scale * w, -1)
    n = 4000
    designs = model.sample_guided(n, generator=gen(2), guide=lambda x: (x * w).sum((1, 2)), scale=scale).designs
    for letter, prob in zip(cfg.alphabet, expected.tolist()):
        assert designs.count(letter) / n == pytest.approx(prob, abs=0.025)
    assert abs(designs.count("A") / n - float(torch.softmax(logits, -1)[0])) > 0.1  # and the tilt is visible


def test_guide_sees_known_tokens_as_one_hots_and_leaves_the_weights_alone():
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seen = []

    def guide(x0_hat):
        seen.append(x0_hat.detach())
        return x0_hat[..., 0].sum(-1)

    model.sample_guided(8, generator=gen(0), guide=guide, scale=1.0)
    assert len(seen) == CFG.num_steps
    for x in seen:
        assert torch.allclose(x.sum(-1), torch.ones(8, CFG.length), atol=1e-5)  # distributions over letters
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_unconditional_model_refuses_a_condition():
    model = tiny_model()
    with pytest.raises(ValueError, match="unconditional"):
        model.denoising_loss(model.encode(["ACDEAC"]), generator=gen(0), condition=torch.zeros(1))
    assert model.conditions(["ACDEAC"]) is None
