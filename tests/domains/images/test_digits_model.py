"""The digits diffusion model: its sampler, log-probs, KL, differentiable and guided sampling,
pretraining loss, designs and checkpoints. Tiny UNets, so that the file runs in seconds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from domains.base import DiffusionModel, Trajectory
from domains.images.design import ImageDesign
from domains.images.digits_model import DigitDiffusionConfig, DigitDiffusionModel, pretrain_digits

CFG = DigitDiffusionConfig(block_out_channels=(8, 16), norm_num_groups=4, num_steps=4)


def tiny_model(cfg: DigitDiffusionConfig = CFG, seed: int = 0) -> DigitDiffusionModel:
    """A random model whose weights depend only on `seed` (global RNG left as it was)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return DigitDiffusionModel(cfg)


def perturbed_copy(model: DigitDiffusionModel, scale: float = 0.1) -> DigitDiffusionModel:
    ref = model.frozen_copy()
    g = torch.Generator().manual_seed(123)
    with torch.no_grad():
        for p in ref.unet.conv_out.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return ref


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_model_satisfies_the_protocol():
    assert isinstance(tiny_model(), DiffusionModel)


def test_sample_shapes_and_designs():
    model = tiny_model()
    out = model.sample(6, generator=gen())
    assert out.x.shape == (6, 1, 16, 16) and out.x.dtype == torch.float32
    assert out.x.min() >= -1 and out.x.max() <= 1
    assert out.trajectory is None
    assert len(out.designs) == 6
    for d in out.designs:
        assert isinstance(d, ImageDesign)
        assert d.pixels.shape == (16, 16) and d.pixels.dtype == np.uint8
        assert isinstance(d.condition, int) and 0 <= d.condition < 10


def test_kept_trajectory_holds_states_log_probs_and_labels():
    model = tiny_model()
    out = model.sample(6, generator=gen(), keep_trajectory=True)
    traj = out.trajectory
    assert traj.num_steps == CFG.num_steps and len(traj.states) == CFG.num_steps + 1
    assert all(s.shape == (6, 1, 16, 16) for s in traj.states)
    assert traj.log_probs.shape == (6, CFG.num_steps) and torch.isfinite(traj.log_probs).all()
    assert traj.condition.dtype == torch.long
    assert traj.condition.tolist() == [d.condition for d in out.designs]
    assert torch.equal(out.x, traj.states[-1].clamp(-1, 1))


def test_unconditional_calls_draw_every_label():
    labels = tiny_model().sample(100, generator=gen(), keep_trajectory=True).trajectory.condition
    assert set(labels.tolist()) == set(range(10))


def test_condition_fixes_the_labels():
    model = tiny_model()
    labels = torch.tensor([3, 3, 7, 0])
    out = model.sample(4, generator=gen(), condition=labels)
    assert [d.condition for d in out.designs] == [3, 3, 7, 0]


@pytest.mark.parametrize(
    "condition, message",
    [
        (torch.tensor([1, 2]), "3 integer"),
        (torch.tensor([1, 2, 10]), r"\[0, 9\]"),
        (torch.tensor([1.0, 2.0, 3.0]), "integer"),
    ],
)
def test_bad_conditions_are_rejected(condition, message):
    with pytest.raises(ValueError, match=message):
        tiny_model().sample(3, generator=gen(), condition=condition)


def test_same_generator_seed_gives_the_same_samples():
    model = tiny_model()
    a = model.sample(8, generator=gen(11), keep_trajectory=True)
    b = model.sample(8, generator=gen(11), keep_trajectory=True)
    assert torch.equal(a.x, b.x) and torch.equal(a.trajectory.log_probs, b.trajectory.log_probs)
    assert all(np.array_equal(p.pixels, q.pixels) and p.condition == q.condition for p, q in zip(a.designs, b.designs))
    assert not torch.equal(model.sample(8, generator=gen(12)).x, a.x)


def test_log_prob_recomputes_the_samplers_log_probs():
    model = tiny_model()
    traj = model.sample(16, generator=gen(), keep_trajectory=True).trajectory
    recomputed = model.log_prob(traj)
    assert recomputed.shape == traj.log_probs.shape
    torch.testing.assert_close(recomputed.detach(), traj.log_probs, rtol=0, atol=1e-5)
    steps = [0, 3]
    torch.testing.assert_close(model.log_prob(traj, steps).detach(), traj.log_probs[:, steps], rtol=0, atol=1e-5)


def test_first_ddpo_importance_ratio_is_one_on_a_minibatch():
    # DDPO recomputes log-probs on minibatches of rows and a subset of steps; its first
    # importance ratio exp(new - old) must be 1, or PPO's clip range 1e-4 clips from the start.
    model = tiny_model()
    traj = model.sample(16, generator=gen(1), keep_trajectory=True).trajectory
    rows = torch.tensor([5, 0, 9, 12])
    batch = Trajectory([s[rows] for s in traj.states], traj.log_probs[rows], traj.condition[rows])
    ratio = torch.exp(model.log_prob(batch, [1, 2]) - batch.log_probs[:, [1, 2]])
    torch.testing.assert_close(ratio.detach(), torch.ones_like(ratio), rtol=0, atol=1e-5)


def test_log_prob_carries_gradients_to_the_unet():
    model = tiny_model()
    traj = model.sample(4, generator=gen(), keep_trajectory=True).trajectory
    model.log_prob(traj).sum().backward()
    assert model.unet.conv_out.weight.grad.abs().sum() > 0


def test_kl_to_a_frozen_copy_is_zero():
    model = tiny_model()
    traj = model.sample(8, generator=gen(), keep_trajectory=True).trajectory
    kl = model.kl(traj, model.frozen_copy())
    assert kl.shape == (8, CFG.num_steps)
    assert torch.equal(kl.detach(), torch.zeros_like(kl))


def test_kl_to_a_perturbed_copy_is_positive_and_differentiable_in_this_model_only():
    model = tiny_model()
    traj = model.sample(8, generator=gen(), keep_trajectory=True).trajectory
    ref = perturbed_copy(model)
    kl = model.kl(traj, ref)
    assert (kl > 0).all()
    kl.sum().backward()
    assert model.unet.conv_out.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in ref.parameters())


def test_kl_rejects_a_reference_on_another_schedule():
    model = tiny_model()
    traj = model.sample(2, generator=gen(), keep_trajectory=True).trajectory
    other = tiny_model(DigitDiffusionConfig(block_out_channels=(8, 16), norm_num_groups=4, num_steps=5))
    with pytest.raises(ValueError, match="same schedule"):
        model.kl(traj, other)


def test_frozen_copy_is_detached_from_the_original():
    model = tiny_model()
    frozen = model.frozen_copy()
    assert not any(p.requires_grad for p in frozen.parameters())
    assert model.trainable_parameters() and not frozen.trainable_parameters()
    with torch.no_grad():
        model.unet.conv_out.weight.add_(1.0)
    assert not torch.equal(model.unet.conv_out.weight, frozen.unet.conv_out.weight)


class _UNetCalls:
    """Counts the UNet's forward calls, split by whether autograd records them. Hooked on the
    UNet's first layer: checkpointing's recomputation stops as soon as it has rebuilt what the
    backward pass needs, so the UNet's own forward hook does not fire then."""

    def __init__(self, model: DigitDiffusionModel):
        self.with_grad = self.without_grad = 0
        self.handle = model.unet.conv_in.register_forward_hook(self)

    def __call__(self, module, args, output):
        if torch.is_grad_enabled():
            self.with_grad += 1
        else:
            self.without_grad += 1


@pytest.mark.parametrize("last_k", [1, 2, CFG.num_steps])
def test_sample_with_grad_backpropagates_through_the_last_k_checkpointed_steps(last_k):
    model = tiny_model()
    calls = _UNetCalls(model)
    out = model.sample_with_grad(4, generator=gen(), last_k=last_k)
    assert out.x.shape == (4, 1, 16, 16) and out.x.requires_grad
    assert out.x.min() >= -1 and out.x.max() <= 1
    assert (calls.with_grad, calls.without_grad) == (last_k, CFG.num_steps - last_k)
    weights = torch.randn(1, 16, 16, generator=gen(1))
    (out.x * weights).sum().backward()
    # Gradient checkpointing: the backward pass re-runs each of the last K UNet calls.
    assert calls.with_grad == 2 * last_k
    grads = [p.grad for p in model.unet.parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    assert all(g is None or torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("last_k", [1, 3])
def test_states_before_the_last_k_steps_carry_no_gradient(last_k):
    # Truncated back-propagation: the UNet's input at step j depends on the parameters only if an
    # earlier step was differentiable, i.e. for the last last_k - 1 calls.
    model = tiny_model()
    inputs = []
    hook = model.unet.register_forward_hook(lambda m, args, out: inputs.append(args[0]))
    out = model.sample_with_grad(3, generator=gen(2), last_k=last_k)
    hook.remove()
    depends = [x.requires_grad for x in inputs]
    assert depends == [False] * (CFG.num_steps - last_k + 1) + [True] * (last_k - 1)
    grads = torch.autograd.grad(out.x.sum(), model.trainable_parameters(), allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_sample_with_grad_draws_what_sample_draws_with_the_same_generator():
    model = tiny_model()
    a = model.sample(6, generator=gen(4))
    b = model.sample_with_grad(6, generator=gen(4), last_k=2)
    torch.testing.assert_close(b.x.detach(), a.x, rtol=0, atol=1e-6)
    assert [d.condition for d in a.designs] == [d.condition for d in b.designs]


def test_sample_with_grad_kl_is_zeros_without_a_reference():
    out = tiny_model().sample_with_grad(4, generator=gen(), last_k=2)
    assert out.kl.shape == (4, CFG.num_steps) and (out.kl == 0).all()


def test_sample_with_grad_kl_is_zero_to_a_frozen_copy_and_positive_to_a_perturbed_one():
    model = tiny_model()
    same = model.sample_with_grad(4, generator=gen(), last_k=2, reference=model.frozen_copy())
    assert same.kl.shape == (4, CFG.num_steps)
    torch.testing.assert_close(same.kl.detach(), torch.zeros_like(same.kl), rtol=0, atol=1e-6)
    other = model.sample_with_grad(4, generator=gen(), last_k=2, reference=perturbed_copy(model))
    assert (other.kl > 0).all()
    # The KL of every step, truncated ones included, is differentiated in this model.
    other.kl[:, 0].sum().backward()
    assert model.unet.conv_out.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("last_k", [0, CFG.num_steps + 1])
def test_sample_with_grad_rejects_last_k_out_of_range(last_k):
    with pytest.raises(ValueError, match="last_k"):
        tiny_model().sample_with_grad(2, generator=gen(), last_k=last_k)


def brightness(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=(1, 2, 3))


def test_guidance_with_zero_scale_is_plain_sampling():
    model = tiny_model()
    guided = model.sample_guided(6, generator=gen(3), guide=brightness, scale=0.0)
    plain = model.sample(6, generator=gen(3))
    assert guided.trajectory is None
    torch.testing.assert_close(guided.x, plain.x, rtol=0, atol=1e-6)


def test_guidance_raises_the_guides_reward():
    model = tiny_model()
    plain = model.sample_guided(32, generator=gen(3), guide=brightness, scale=0.0)
    guided = model.sample_guided(32, generator=gen(3), guide=brightness, scale=100.0)
    assert float(brightness(guided.x).mean()) > float(brightness(plain.x).mean()) + 0.1
    assert all(p.grad is None for p in model.parameters())  # guidance trains nothing


def test_guidance_rejects_a_guide_of_the_wrong_shape():
    with pytest.raises(ValueError, match="rewards"):
        tiny_model().sample_guided(3, generator=gen(), guide=lambda x: x.sum(), scale=1.0)


def toy_digits(n: int = 32) -> list[ImageDesign]:
    """Bars at a label-dependent row: a pattern a tiny UNet learns in a few steps."""
    designs = []
    for i in range(n):
        pixels = np.zeros((16, 16), dtype=np.uint8)
        label = i % 4
        pixels[3 * label : 3 * label + 3, 2:14] = 255
        designs.append(ImageDesign(pixels, label))
    return designs


def test_denoising_loss_decreases_with_training():
    model = tiny_model()
    designs = toy_digits()
    x0, labels = model.encode(designs), model.conditions(designs)
    with torch.no_grad():
        loss_before = float(model.denoising_loss(x0, generator=gen(0), condition=labels))
    opt = torch.optim.Adam(model.trainable_parameters(), lr=1e-2)
    noise = gen(1)
    for _ in range(15):
        loss = model.denoising_loss(x0, generator=noise, condition=labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        loss_after = float(model.denoising_loss(x0, generator=gen(0), condition=labels))
    assert loss_after < 0.5 * loss_before


def test_denoising_loss_weights_select_images():
    model = tiny_model()
    designs = toy_digits(2)
    x0, labels = model.encode(designs), model.conditions(designs)
    with torch.no_grad():
        only_first = model.denoising_loss(x0, generator=gen(0), weights=torch.tensor([1.0, 0.0]), condition=labels)
        unweighted = model.denoising_loss(x0, generator=gen(0), condition=labels)
        equal = model.denoising_loss(x0, generator=gen(0), weights=torch.tensor([2.0, 2.0]), condition=labels)
    torch.testing.assert_close(equal, unweighted)
    assert not torch.allclose(only_first, unweighted)


def test_denoising_loss_needs_the_labels():
    model = tiny_model()
    with pytest.raises(ValueError, match="condition="):
        model.denoising_loss(model.encode(toy_digits(2)), generator=gen())


def test_designs_round_trip_through_encode_conditions_and_decode():
    model = tiny_model()
    designs = model.sample(5, generator=gen()).designs
    x, labels = model.encode(designs), model.conditions(designs)
    assert x.shape == (5, 1, 16, 16) and x.min() >= -1 and x.max() <= 1
    assert labels.dtype == torch.long and labels.tolist() == [d.condition for d in designs]
    again = model.decode(x, condition=labels)
    assert all(np.array_equal(a.pixels, b.pixels) and a.condition == b.condition for a, b in zip(designs, again))
    assert all(a.key() == b.key() for a, b in zip(designs, again))


def test_decode_without_labels_raises():
    model = tiny_model()
    with pytest.raises(ValueError, match="label"):
        model.decode(torch.zeros(2, 1, 16, 16))


@pytest.mark.parametrize(
    "design, message",
    [
        (ImageDesign(np.zeros((16, 16), np.float32), 1), "uint8"),
        (ImageDesign(np.zeros((28, 28), np.uint8), 1), r"\(16, 16\)"),
        ("7", "ImageDesign"),
    ],
)
def test_encode_rejects_a_bad_design(design, message):
    with pytest.raises((TypeError, ValueError), match=message):
        tiny_model().encode([design])


@pytest.mark.parametrize("label, message", [("seven", "digit label 0..9"), (12, "digit label 0..9")])
def test_conditions_reject_a_bad_label(label, message):
    with pytest.raises(ValueError, match=message):
        tiny_model().conditions([ImageDesign(np.zeros((16, 16), np.uint8), label)])


def test_save_load_roundtrip_gives_identical_samples(tmp_path):
    model = DigitDiffusionModel(CFG, metadata={"task": "tiny"})
    path = tmp_path / "ckpt" / "digits.safetensors"
    model.save(path)
    assert path.exists() and path.with_suffix(".json").exists()
    assert not list(path.parent.glob("*.tmp"))
    loaded = DigitDiffusionModel.load(path)
    assert loaded.cfg == model.cfg and loaded.metadata == {"task": "tiny"}
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert torch.equal(loaded.sample(4, generator=gen(2)).x, model.sample(4, generator=gen(2)).x)


def test_load_of_a_missing_path_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.safetensors"):
        DigitDiffusionModel.load(tmp_path / "nowhere.safetensors")


def test_pretrain_reduces_the_loss_and_saves_a_loadable_checkpoint(tmp_path):
    designs = toy_digits()
    pixels = np.stack([d.pixels for d in designs])
    labels = torch.tensor([d.condition for d in designs])
    out = tmp_path / "digits.safetensors"
    report = pretrain_digits(torch.from_numpy(pixels), labels, steps=20, batch_size=16, lr=1e-2, seed=0, out=out,
                             config=CFG, progress=False)
    assert report["steps"] == 20 and report["num_images"] == 32
    assert report["loss_last"] < 0.5 * report["loss_first"]
    loaded = DigitDiffusionModel.load(out)
    assert loaded.cfg == CFG and loaded.metadata["pretraining"] == report


def test_pretrain_rejects_images_out_of_range():
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        pretrain_digits(torch.full((4, 16, 16), 255.0), torch.zeros(4, dtype=torch.long), steps=1, batch_size=2,
                        lr=1e-3, seed=0, out=None, config=CFG, progress=False)


def test_config_rejects_inconsistent_settings():
    with pytest.raises(ValueError, match="norm_num_groups"):
        DigitDiffusionConfig(block_out_channels=(8, 12), norm_num_groups=8)
    with pytest.raises(ValueError, match="num_steps"):
        DigitDiffusionConfig(num_steps=7)
    with pytest.raises(ValueError, match="eta"):
        DigitDiffusionConfig(eta=0.0)
