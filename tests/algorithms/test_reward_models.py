"""Learned reward models and their optimism: UCB on a Gram matrix that grows with
data, Thompson draws that are real posterior draws, bootstrap optimism as stated;
feasibility modelled apart from value; a motif CNN that sees a motif anywhere."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from algorithms.optimism import OptimismConfig, UCBBonus, objective
from algorithms.reward_models import FeasibilityClassifier, RewardEnsemble, RewardModelConfig
from domains.sequences.featuriser import SequenceFeaturiser

D = 6
W = torch.tensor([1.5, -2.0, 0.5, 1.0, 0.0, -1.0])


def linear(x: torch.Tensor) -> torch.Tensor:
    return x @ W + 0.5


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.rand(128, D, generator=torch.Generator().manual_seed(0))
    return x, linear(x)


def fit(model: RewardEnsemble, x: torch.Tensor, y: torch.Tensor, seed: int = 1) -> dict[str, float]:
    """Fit on designs that are all feasible: the value alone is under test."""
    return model.fit(x, y.numpy(), np.ones(len(x), bool), 0.0, torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def ensemble(data) -> RewardEnsemble:
    x, y = data
    model = RewardEnsemble(D, RewardModelConfig(hidden=16, ensemble_size=8, steps=200, batch_size=64, lr=1e-2))
    fit(model, x, y)
    return model


@pytest.fixture(scope="module")
def test_points() -> torch.Tensor:
    return torch.rand(32, D, generator=torch.Generator().manual_seed(2))


def test_ensemble_fits_a_linear_function(data, test_points):
    x, y = data
    model = RewardEnsemble(D, RewardModelConfig(hidden=16, ensemble_size=4, steps=200, batch_size=64, lr=1e-2))
    train_mse = fit(model, x, y)["reward_model_mse"]
    assert train_mse < 0.05 * float(y.var())
    with torch.no_grad():
        test_mse = float(((model.members(test_points).mean(0) - linear(test_points)) ** 2).mean())
    assert test_mse < 0.1 * float(y.var())


def test_predictions_are_in_reward_units(data):
    # Targets far from zero mean and unit scale come back on their own scale.
    x, y = data
    model = RewardEnsemble(D, RewardModelConfig(hidden=16, ensemble_size=2, steps=200, batch_size=64, lr=1e-2))
    fit(model, x, 100.0 + 10.0 * y)
    with torch.no_grad():
        pred = model.members(x).mean(0)
    assert abs(float(pred.mean()) - float((100.0 + 10.0 * y).mean())) < 2.0


def test_unfitted_model_refuses_to_predict():
    with pytest.raises(RuntimeError, match="not been fitted"):
        RewardEnsemble(D, RewardModelConfig()).members(torch.zeros(1, D))


def test_ucb_bonus_shrinks_when_queries_near_x_are_added(ensemble, data):
    # The property the released SEIKO code (normalised torch.cov) breaks: the same
    # fitted network, two training sets, one with extra queries at and around x.
    x_train, _ = data
    x = torch.tensor([[2.0, 2.0, -2.0, 0.0, 1.0, -1.0]])
    near = x + 0.01 * torch.randn(20, D, generator=torch.Generator().manual_seed(3))
    before = UCBBonus(ensemble, x_train, c=1.0, lam=1e-3, clip=1e9)
    after = UCBBonus(ensemble, torch.cat([x_train, x.expand(5, D), near]), c=1.0, lam=1e-3, clip=1e9)
    b0, b1 = float(before(x)), float(after(x))
    assert b0 > 0
    assert b1 < 0.7 * b0


def test_ucb_bonus_never_grows_when_data_is_added(ensemble, data, test_points):
    x_train, _ = data
    extra = torch.randn(40, D, generator=torch.Generator().manual_seed(4))
    before = UCBBonus(ensemble, x_train, c=1.0, lam=1e-3, clip=1e9)
    after = UCBBonus(ensemble, torch.cat([x_train, extra]), c=1.0, lam=1e-3, clip=1e9)
    assert (after(test_points) <= before(test_points) + 1e-6).all()


def test_ucb_bonus_is_larger_far_from_data_than_at_data(ensemble, data):
    x_train, _ = data
    bonus = UCBBonus(ensemble, x_train, c=1.0, lam=1e-3, clip=1e9)
    far = 6.0 * torch.randn(16, D, generator=torch.Generator().manual_seed(5))
    assert float(bonus(far).median()) > 3.0 * float(bonus(x_train).mean())


def test_ucb_bonus_is_clipped(ensemble, data):
    x_train, _ = data
    far = 6.0 * torch.randn(16, D, generator=torch.Generator().manual_seed(5))
    unclipped = UCBBonus(ensemble, x_train, c=1.0, lam=1e-3, clip=1e9)(far)
    clip = float(unclipped.median()) / ensemble.y_std  # the clip is in standard deviations of the rewards
    clipped = UCBBonus(ensemble, x_train, c=1.0, lam=1e-3, clip=clip)(far)
    ceiling = clip * ensemble.y_std
    assert abs(ensemble.y_std - 1) > 0.1  # so that a clip in reward units would fail the checks below
    assert (clipped <= ceiling + 1e-5).all()
    assert torch.allclose(clipped, unclipped.clamp(max=ceiling))
    assert torch.isclose(clipped, torch.tensor(ceiling)).any() and (clipped < ceiling - 1e-5).any()


def test_ucb_objective_is_mean_plus_bonus_on_the_training_designs(ensemble, data, test_points):
    x_train, _ = data
    cfg = OptimismConfig(bonus_scale=0.5, bonus_lambda=1e-2, bonus_clip=10.0)
    ucb = objective(ensemble, "ucb", cfg, torch.Generator().manual_seed(0))
    bonus = UCBBonus(ensemble, x_train, c=0.5, lam=1e-2, clip=10.0)
    with torch.no_grad():
        expected = ensemble.expected(ensemble.members(test_points).mean(0) + bonus(test_points), test_points)
        assert torch.allclose(ucb(test_points), expected, atol=1e-5)


def _thompson_draws(ensemble, n: int) -> list:
    return [objective(ensemble, "ts", OptimismConfig(), torch.Generator().manual_seed(s)) for s in range(n)]


def test_thompson_draw_is_one_ensemble_member(ensemble, test_points):
    with torch.no_grad():
        members = ensemble.members(test_points)
        for draw in _thompson_draws(ensemble, 5):
            value = draw(test_points)
            assert any(torch.equal(value, ensemble.expected(member, test_points)) for member in members)


def test_two_thompson_draws_differ_measurably(ensemble, test_points):
    # SEIKO-TS's released version adds ~1e-8 SGLD noise: Greedy in disguise.
    with torch.no_grad():
        members = ensemble.expected(ensemble.members(test_points), test_points)
        spread = float(members.std(0).mean())
        values = [draw(test_points) for draw in _thompson_draws(ensemble, 20)]
        distinct = {tuple(v.tolist()) for v in values}
        assert len(distinct) >= 2
        a, b = (torch.tensor(v) for v in list(distinct)[:2])
        assert float((a - b).abs().mean()) > 0.25 * spread
        assert spread > 1e-2  # a real spread, not numerical noise
        for v in values:
            assert float((v - members.mean(0)).abs().mean()) > 0.1 * spread


def test_thompson_draws_spread_like_the_ensemble(ensemble, test_points):
    points = test_points[:6]
    with torch.no_grad():
        draws = torch.stack([draw(points) for draw in _thompson_draws(ensemble, 400)])
        members = ensemble.expected(ensemble.members(points), points)
    # Each draw is a uniformly chosen member: over many draws the spread at a
    # point is the ensemble's (population) standard deviation there.
    assert torch.allclose(draws.std(0), members.std(0, unbiased=False), rtol=0.15)
    assert torch.allclose(draws.mean(0), members.mean(0), atol=0.15 * float(members.std(0).max()))


def test_bootstrap_optimism_is_mean_plus_k_std(ensemble, test_points):
    cfg = OptimismConfig(bootstrap_rule="mean_std", std_weight=2.0)
    with torch.no_grad():
        members = ensemble.members(test_points)
        value = objective(ensemble, "bootstrap", cfg, torch.Generator())(test_points)
    assert torch.allclose(value, ensemble.expected(members.mean(0) + 2.0 * members.std(0), test_points), atol=1e-5)
    assert (value > ensemble.expected(members.mean(0), test_points)).all()


def test_bootstrap_max_rule_is_the_max_over_members(ensemble, test_points):
    with torch.no_grad():
        value = objective(ensemble, "bootstrap", OptimismConfig(bootstrap_rule="max"), torch.Generator())(test_points)
        assert torch.equal(value, ensemble.expected(ensemble.members(test_points).max(0).values, test_points))


def test_no_optimism_is_the_ensemble_mean(ensemble, test_points):
    with torch.no_grad():
        value = objective(ensemble, "none", OptimismConfig(), torch.Generator())(test_points)
        assert torch.allclose(value, ensemble.expected(ensemble.members(test_points).mean(0), test_points))


def test_unknown_optimism_is_rejected(ensemble):
    with pytest.raises(ValueError, match="unknown optimism 'thompson'"):
        objective(ensemble, "thompson", OptimismConfig(), torch.Generator())


@pytest.mark.parametrize(
    "optimism, cfg",
    [("none", OptimismConfig()), ("ucb", OptimismConfig(bonus_scale=1.0, bonus_clip=1e9)),
     ("bootstrap", OptimismConfig()), ("bootstrap", OptimismConfig(bootstrap_rule="max")), ("ts", OptimismConfig())],
    ids=["none", "ucb", "bootstrap-mean-std", "bootstrap-max", "ts"],
)
def test_objective_is_differentiable_in_x(ensemble, test_points, optimism, cfg):
    x = test_points.clone().requires_grad_(True)
    value = objective(ensemble, optimism, cfg, torch.Generator().manual_seed(0))(x)
    assert value.shape == (len(x),)
    value.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0
    # The ensemble's own weights stay frozen after fitting.
    assert not any(p.requires_grad for p in ensemble.net.parameters())


@pytest.mark.parametrize("field", ["hidden", "ensemble_size", "steps", "batch_size", "min_feasible"])
def test_reward_model_config_rejects_non_positive_sizes(field):
    with pytest.raises(ValueError, match=field):
        RewardModelConfig(**{field: 0})


# ----- feasibility apart from value -----------------------------------------------
def banned_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Count features of which 0 and 1 are banned: a design is feasible iff it has neither."""
    g = torch.Generator().manual_seed(seed)
    x = torch.poisson(torch.full((n, 12), 0.4), generator=g)
    return x, (x[:, :2].sum(1) == 0)


def test_feasibility_model_blames_the_banned_features():
    x, feasible = banned_data(400, 0)
    model = FeasibilityClassifier()
    assert model.fit(x, feasible) > 0.95
    x_test, feasible_test = banned_data(400, 1)
    p = model.prob(x_test)
    assert float(p[feasible_test].mean()) > 0.9 and float(p[~feasible_test].mean()) < 0.1
    assert model.hazard[:2].min() > 10 * model.hazard[2:].max()


def test_a_feature_no_feasible_design_has_shown_keeps_the_prior_hazard():
    # Features 10 and 11 never occur; feature 2 occurs only beside a banned one.
    x, feasible = banned_data(400, 0)
    x[:, 10:] = 0
    x[:, 2] = x[:, 2] * (~feasible)
    plain, pessimist = FeasibilityClassifier(), FeasibilityClassifier(unseen_hazard=1.0)
    plain.fit(x, feasible), pessimist.fit(x, feasible)
    assert plain.hazard[10:].max() < 0.01 and pessimist.hazard[10:].min() >= 1.0
    assert pessimist.hazard[2] >= 1.0 and torch.allclose(pessimist.hazard[3:10], plain.hazard[3:10], atol=1e-3)
    unseen = torch.zeros(1, 12)
    unseen[0, 11] = 1.0
    assert float(plain.prob(unseen)) > 0.99 and float(pessimist.prob(unseen)) < 0.37


def test_the_feasibility_model_reads_only_the_hazard_columns_a_featuriser_names():
    # Column 0 tracks the banned ones perfectly but is not a hazard column: it gets no blame.
    x, feasible = banned_data(400, 0)
    x[:, 0] = (~feasible).float() * 5
    model = FeasibilityClassifier(columns=slice(1, 12))
    model.fit(x, feasible)
    assert model.hazard.shape == (11,) and int(model.hazard.argmax()) == 0  # column 1, the other banned one
    shifted = x.clone()
    shifted[:, 0] = 100.0
    assert torch.equal(model.prob(shifted), model.prob(x))


def test_sequence_features_name_the_bigram_counts_as_hazards():
    from domains.sequences.featuriser import SequenceFeaturiser

    featuriser = SequenceFeaturiser("ABC", 5)
    x = featuriser(["ABCCA"])[0, featuriser.hazard_columns].reshape(3, 3)
    assert x[0, 1] == x[1, 2] == x[2, 2] == x[2, 0] == 1 and x.sum() == 4


def test_ucb_bonus_survives_a_gram_matrix_that_lambda_cannot_keep_positive_definite(ensemble, data):
    # Huge, rank-one last-layer features (molecule features made such a Gram matrix):
    # lambda = 1e-3 lies below the rounding error of entries near 1e16.
    x_train, _ = data
    phi = torch.full((len(x_train), ensemble.cfg.hidden), 1e8)
    ensemble.phi = lambda x, member=0: phi[: len(x)]
    bonus = UCBBonus(ensemble, x_train, c=1.0, lam=1e-3, clip=1e9)
    assert torch.isfinite(bonus(x_train[:4])).all()


def test_feasibility_model_takes_signed_features_as_two_parts():
    # Infeasible when feature 0 is strongly negative: its negative part takes the blame.
    x = torch.randn(400, 5, generator=torch.Generator().manual_seed(0))
    feasible = x[:, 0] > -1.0
    model = FeasibilityClassifier()
    assert model.fit(x, feasible) > 0.9
    assert model.hazard.shape == (10,) and int(model.hazard.argmax()) == 5  # the negative part of feature 0


def test_value_is_fitted_on_feasible_designs_and_weighted_by_feasibility():
    x, feasible = banned_data(400, 0)
    value = 2.0 + x[:, 2]
    reward = torch.where(feasible, value, torch.full_like(value, float("nan")))
    model = RewardEnsemble(12, RewardModelConfig(hidden=16, ensemble_size=1, bootstrap=False, lr=1e-2))
    stats = model.fit(x, reward.numpy(), feasible.numpy(), -1.0, torch.Generator().manual_seed(0))
    assert stats["feasibility_accuracy"] > 0.95 and stats["reward_model_mse"] < 0.05
    x_test, feasible_test = banned_data(200, 1)
    with torch.no_grad():
        v = model.members(x_test).mean(0)
        # The NaN rewards of infeasible designs never reached it: it fits the feasible ones.
        assert torch.allclose(v[feasible_test], 2.0 + x_test[feasible_test, 2], atol=0.3)
        expected = torch.as_tensor(model.predict(x_test))
        assert torch.allclose(expected, model.feasibility.prob(x_test) * v - (1 - model.feasibility.prob(x_test)))
        assert float(expected[~feasible_test].mean()) < -0.5 < 2.0 < float(expected[feasible_test].mean())


def test_too_few_feasible_designs_is_a_clear_error():
    x, feasible = banned_data(40, 0)
    model = RewardEnsemble(12, RewardModelConfig(min_feasible=50))
    with pytest.raises(ValueError, match=r"at least 50 feasible designs .* holds \d+ of 40"):
        model.fit(x, np.zeros(40), feasible.numpy(), 0.0, torch.Generator())


# ----- a motif anywhere --------------------------------------------------------------
ALPHABET, LENGTH, MOTIF, SPACING = "ABCDEF", 24, "ABC", (0, 2, 5)


def motif_designs(n: int, starts: range, seed: int) -> tuple[list[str], np.ndarray]:
    """Uniformly random strings; half hold the spaced motif A.B..C at a start drawn from `starts`.
    The letters alone say nothing: only their spacing tells the two halves apart."""
    g = torch.Generator().manual_seed(seed)
    designs, labels = [], []
    for i in range(n):
        letters = [ALPHABET[int(j)] for j in torch.randint(len(ALPHABET), (LENGTH,), generator=g)]
        if i % 2:
            start = starts[int(torch.randint(len(starts), (1,), generator=g))]
            for letter, offset in zip(MOTIF, SPACING):
                letters[start + offset] = letter
        designs.append("".join(letters))
        labels.append(i % 2)
    return designs, np.asarray(labels, float)


@pytest.mark.parametrize("max_gap, works", [(8, True), (0, False)])
def test_value_model_finds_a_motif_where_it_never_saw_it(max_gap, works):
    # Trained with the motif only in the first half of the sequence, tested with
    # it only in the second: gapped-pair features see it anywhere, one-hots and
    # bigrams alone (max_gap 0) cannot know it there.
    featuriser = SequenceFeaturiser(ALPHABET, LENGTH, max_gap=max_gap)
    train, y = motif_designs(512, range(0, 8), 0)
    test, y_test = motif_designs(200, range(12, LENGTH - 5), 1)
    model = RewardEnsemble(featuriser.dim, RewardModelConfig(ensemble_size=1, bootstrap=False),
                           featuriser.suggested_screen)
    model.fit(featuriser(train), y, np.ones(len(y), bool), 0.0, torch.Generator().manual_seed(0))
    v = model.predict_value(featuriser(test))
    auc = float((v[y_test == 1][:, None] > v[y_test == 0][None, :]).mean())
    assert (auc > 0.9) == works, auc


def test_screening_keeps_the_informative_features_of_each_bootstrap_member():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(300, 40, generator=g)
    y = x[:, 3] - 2 * x[:, 17]
    model = RewardEnsemble(40, RewardModelConfig(ensemble_size=3, screen=2, steps=300, lr=1e-2))
    model.fit(x, y.numpy(), np.ones(300, bool), 0.0, g)
    assert all(set(row.tolist()) == {3, 17} for row in model.net.keep)
    with torch.no_grad():
        assert float(((model.members(x).mean(0) - y) ** 2).mean()) < 0.05 * float(y.var())


def test_fine_tuning_pushes_off_only_the_banned_features_a_design_has_and_guidance_off_all():
    x, feasible = banned_data(400, 0)
    reward = torch.where(feasible, 2.0 + x[:, 2], torch.full((400,), float("nan")))
    model = RewardEnsemble(12, RewardModelConfig(hidden=16, ensemble_size=1, bootstrap=False))
    model.fit(x, reward.numpy(), feasible.numpy(), -1.0, torch.Generator().manual_seed(0))
    x_test = banned_data(50, 1)[0].requires_grad_()
    climb = objective(model, "none", OptimismConfig(), torch.Generator())(x_test)
    guide = objective(model, "none", OptimismConfig(), torch.Generator(), feasibility_gradient=True)(x_test)
    value, p = model.members(x_test).mean(0), model.feasibility.prob(x_test)
    assert torch.allclose(climb, guide) and torch.allclose(climb, p * value - (1 - p))  # the same worth
    (climb_grad,) = torch.autograd.grad(climb.sum(), x_test)
    (guide_grad,) = torch.autograd.grad(guide.sum(), x_test)
    (value_grad,) = torch.autograd.grad(value, x_test, grad_outputs=p.detach(), retain_graph=True)
    present, banned = x_test.detach() != 0, torch.zeros(12, dtype=torch.bool)
    banned[:2] = True
    feasibility_push = climb_grad - value_grad
    assert torch.allclose(feasibility_push[~present], torch.zeros(()))  # nothing through absent features
    assert (present & banned).sum() > 5 and (feasibility_push[present & banned] < 0).all()  # a present ban is pushed off
    assert torch.allclose(climb_grad[present], guide_grad[present])
    assert (guide_grad - climb_grad)[~present & banned].abs().min() > 0  # guidance also steers away from absent bans
