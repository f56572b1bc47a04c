"""`DDIMPolicy` on its own, with a toy unconditional model (a linear eps_theta on (2, 3) states, no
diffusers network): the paths the two image backends, both conditional, do not take, and the
guarantees the sampler gives every backend by construction."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler
from torch import nn

from domains.base import Trajectory
from domains.diffusion.ddim_policy import DDIMPolicy


class Toy(DDIMPolicy, nn.Module):
    """An unconditional DDIM model whose eps_theta(x, t) is one linear map of x."""

    def __init__(self, num_steps: int = 5, beta_schedule: str = "linear"):
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(0)
            self.net = nn.Linear(6, 6)
        self.scheduler = DDIMScheduler(num_train_timesteps=1000, beta_schedule=beta_schedule, clip_sample=False,
                                       set_alpha_to_one=False, timestep_spacing="trailing")
        self.scheduler.set_timesteps(num_steps)
        self.timesteps = [int(t) for t in self.scheduler.timesteps]

    eta = 1.0
    state_shape = (2, 3)
    device = torch.device("cpu")

    def _eps(self, x, j, condition, checkpointed=False):
        return self._predict_noise(x, None, condition)

    def _predict_noise(self, x_t, t, condition):
        return self.net(x_t.flatten(1)).view_as(x_t)

    def _to_x(self, state, *, differentiable=False):
        return state

    def _designs(self, x, condition):
        return [tuple(row) for row in x.detach().flatten(1).tolist()]

    def trainable_parameters(self):
        return list(self.parameters())


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_an_unconditional_model_samples_scores_and_trains_without_conditions():
    model = Toy()
    assert model.num_steps == 5
    out = model.sample(4, generator=gen(), keep_trajectory=True)
    assert out.x.shape == (4, 2, 3) and out.trajectory.condition is None
    torch.testing.assert_close(model.log_prob(out.trajectory).detach(), out.trajectory.log_probs, rtol=0, atol=1e-5)
    assert model.decode(out.x) == out.designs
    loss = model.denoising_loss(out.x, generator=gen(1))
    loss.backward()
    assert torch.isfinite(loss) and model.net.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="unconditional"):
        model.sample(2, generator=gen(), condition=torch.zeros(2, dtype=torch.long))


def test_every_sampler_draws_the_same_samples_from_the_same_generator():
    model = Toy()
    plain = model.sample(4, generator=gen(3)).x
    assert torch.equal(model.sample_with_grad(4, generator=gen(3), last_k=2).x.detach(), plain)
    assert torch.equal(model.sample_guided(4, generator=gen(3), guide=lambda x: x.sum((1, 2)), scale=0.0).x, plain)


def test_a_kl_reference_must_take_the_same_steps():
    model = Toy()
    traj = model.sample(2, generator=gen(), keep_trajectory=True).trajectory
    for other in (Toy(num_steps=4), Toy(beta_schedule="scaled_linear")):
        with pytest.raises(ValueError, match="same schedule"):
            model.kl(traj, other)
    with pytest.raises(ValueError, match="4 steps, this model samples 5"):
        model.log_prob(Trajectory(traj.states[:5], traj.log_probs[:, :4]))
