"""Ehrlich functions: the known optimum, feasibility, the quantisation grid, the oracle contract."""

import numpy as np
import pytest
import torch

from domains.base import Oracle
from domains.sequences.ehrlich import Ehrlich, EhrlichConfig

CONFIGS = [
    EhrlichConfig(),
    EhrlichConfig(num_states=32, num_motifs=4),
    EhrlichConfig(num_states=20, dim=256, num_motifs=4, motif_length=4),
    EhrlichConfig(num_states=4, dim=8, num_motifs=1, motif_length=3, quantization=1),
    EhrlichConfig(num_states=56, dim=64, num_motifs=3, motif_length=8, quantization=3),
    EhrlichConfig(num_states=2, dim=3, num_motifs=1, motif_length=2),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: Ehrlich(c).name)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_optimum_scores_one_and_is_feasible(config, seed):
    f = Ehrlich(EhrlichConfig(**{**config.__dict__, "seed": seed}))
    out = f([f.optimal_solution()])
    assert out.feasible.tolist() == [True]
    assert out.reward.tolist() == [f.optimum] == [1.0]


@pytest.mark.parametrize("config", CONFIGS[:3], ids=lambda c: Ehrlich(c).name)
def test_structure_matches_the_definition(config):
    f = Ehrlich(config)
    v, c, k = config.num_states, config.num_motifs, config.motif_length
    A = f.transition_matrix
    assert torch.allclose(A.sum(dim=1), torch.ones(v, dtype=A.dtype))
    assert (A.diagonal() > 0).all()
    assert ((A == 0).sum(dim=1) == config.num_banned).all()
    assert torch.allclose(f.initial_dist @ A, f.initial_dist)  # stationary
    assert f.motifs.shape == f.spacings.shape == (c, k)
    assert f.motifs.unique().numel() == c * k
    assert (f.spacings[:, 0] == 0).all() and (f.spacings.diff(dim=1) > 0).all()
    assert (f.spacings[:, -1] < config.dim // c).all()
    assert isinstance(f, Oracle)


def test_markov_samples_are_feasible():
    f = Ehrlich(EhrlichConfig())
    x = f.sample_markov(1000, torch.Generator().manual_seed(0))
    assert x.shape == (1000, 32)
    assert f.is_feasible(x).all()


def test_uniform_random_long_sequences_are_infeasible():
    f = Ehrlich(EhrlichConfig(num_states=20, dim=256, num_motifs=4, motif_length=4))
    x = torch.randint(0, 20, (200, 256), generator=torch.Generator().manual_seed(0))
    assert not f.is_feasible(x).any()


@pytest.mark.parametrize("q", [1, 2, 3, 4])
def test_values_lie_on_the_quantisation_grid(q):
    f = Ehrlich(EhrlichConfig(quantization=q))
    g = torch.Generator().manual_seed(0)
    uniform = torch.randint(0, 20, (500, 32), generator=g)
    x = torch.cat([f.sample_markov(500, g), uniform, f.encode([f.optimal_solution()])])
    presence = f.motif_presence(x)
    values, _ = f.evaluate_tokens(x)
    scaled = presence * q
    assert torch.allclose(scaled, scaled.round()) and ((presence >= 0) & (presence <= 1)).all()
    assert torch.equal(values, presence.prod(dim=1))
    assert len(set(values.tolist())) > min(q, 2)  # the test sees values between 0 and 1


def test_one_motif_full_and_other_half_present_scores_half():
    f = Ehrlich(EhrlichConfig())
    x = f.encode([f.optimal_solution()])[0]
    block = f.config.dim // f.config.num_motifs
    allowed = f.transition_matrix > 0
    # Knock out two elements of motif 1 with letters that keep the design feasible.
    for position in (block + f.spacings[1, 1].item(), block + f.spacings[1, 2].item()):
        x[position] = next(
            y for y in range(f.config.num_states)
            if y not in f.motifs[1].tolist() and allowed[x[position - 1], y] and allowed[y, x[position + 1]]
        )
    assert f.motif_presence(x[None]).tolist() == [[1.0, 0.5]]
    out = f(f.decode(x[None]))
    assert out.feasible.tolist() == [True] and out.reward.tolist() == [0.5]


def test_same_seed_same_function_and_global_rng_untouched():
    state = torch.get_rng_state()
    a, b, other = Ehrlich(EhrlichConfig(seed=3)), Ehrlich(EhrlichConfig(seed=3)), Ehrlich(EhrlichConfig(seed=4))
    assert torch.equal(torch.get_rng_state(), state)
    for name in ("transition_matrix", "initial_dist", "motifs", "spacings"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert a.optimal_solution() == b.optimal_solution() and a.name == b.name
    assert not torch.equal(a.transition_matrix, other.transition_matrix)
    assert not torch.equal(a.motifs, other.motifs) or not torch.equal(a.spacings, other.spacings)
    assert a.name != other.name


@pytest.mark.parametrize(
    "designs, message",
    [(["A" * 32, "A" * 31], "design 1 has length 31, expected 32"), (["A" * 31 + "Z"], "'Z'")],
)
def test_encode_rejects_bad_designs_naming_the_problem(designs, message):
    f = Ehrlich(EhrlichConfig())
    with pytest.raises(ValueError, match=message):
        f.encode(designs)


def test_encode_decode_round_trip_and_key_is_the_string():
    f = Ehrlich(EhrlichConfig())
    designs = f.decode(f.sample_markov(10, torch.Generator().manual_seed(0)))
    assert f.decode(f.encode(designs)) == designs
    assert f.key(designs[0]) == designs[0]


def test_call_returns_nan_exactly_where_infeasible():
    f = Ehrlich(EhrlichConfig())
    g = torch.Generator().manual_seed(0)
    x = torch.cat([f.sample_markov(50, g), torch.randint(0, 20, (50, 32), generator=g)])
    out = f(f.decode(x))
    assert out.reward.dtype == np.float64 and out.feasible.dtype == np.bool_
    assert out.feasible.any() and not out.feasible.all()
    np.testing.assert_array_equal(np.isnan(out.reward), ~out.feasible)
    values, feasible = f.evaluate_tokens(x)
    np.testing.assert_array_equal(out.reward[feasible.numpy()], values[feasible].numpy())


def test_unplaceable_motifs_raise_a_clear_error():
    # Out-degree 11 of 56 states: motif neighbours one step apart are rarely linked.
    config = EhrlichConfig(num_states=56, dim=64, num_motifs=3, motif_length=8, banned_per_state=45)
    with pytest.raises(RuntimeError, match="no feasible placement of the motifs.*lower banned_per_state"):
        Ehrlich(config)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"quantization": 5}, "quantization"),
        ({"quantization": 0}, "quantization"),
        ({"dim": 7, "num_motifs": 2, "motif_length": 4}, "dim"),
        ({"num_states": 6}, "num_states"),
        ({"num_states": 100}, "num_states"),
        ({"banned_per_state": 19}, "banned_per_state"),
    ],
)
def test_config_rejects_inconsistent_settings_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        EhrlichConfig(**kwargs)


def test_reasons_name_the_first_banned_transition():
    oracle = Ehrlich(EhrlichConfig(num_states=4, dim=6, num_motifs=1, motif_length=2, seed=0))
    banned = (oracle.transition_matrix == 0).nonzero()[0].tolist()
    a, b = oracle.alphabet[banned[0]], oracle.alphabet[banned[1]]
    design = a * 2 + a + b + b * 2  # one banned transition, between positions 3 and 4
    assert oracle.reasons([design, oracle.optimal_solution()]) == [f"banned transition {a}{b} at 3", None]
