"""The digits diffusion model's own behaviour: its designs and labels, the clamp between states and
images, gradient checkpointing and truncation of differentiable sampling, its errors, pretraining and
checkpoint files. Tiny UNets, so that the file runs in seconds. What every model must do (sampling,
log-probs, KL, differentiable and guided sampling, save/load, encode/decode) is tested once for all
models in tests/domains/test_model_protocol.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from domains.images.design import ImageDesign
from domains.images.digits_model import (
    DigitDiffusionConfig,
    DigitDiffusionModel,
    pretrain_digits,
)

CFG = DigitDiffusionConfig(block_out_channels=(8, 16), norm_num_groups=4, num_steps=4)


def tiny_model(cfg: DigitDiffusionConfig = CFG, seed: int = 0) -> DigitDiffusionModel:
    """A random model whose weights depend only on `seed` (global RNG left as it was)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return DigitDiffusionModel(cfg)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


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


def test_kl_rejects_a_reference_on_another_schedule():
    model = tiny_model()
    traj = model.sample(2, generator=gen(), keep_trajectory=True).trajectory
    other = tiny_model(DigitDiffusionConfig(block_out_channels=(8, 16), norm_num_groups=4, num_steps=5))
    with pytest.raises(ValueError, match="same schedule"):
        model.kl(traj, other)


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


def test_denoising_loss_needs_the_labels():
    model = tiny_model()
    with pytest.raises(ValueError, match="condition="):
        model.denoising_loss(model.encode(toy_digits(2)), generator=gen())


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


def test_save_writes_weights_and_config_atomically_and_load_restores_them(tmp_path):
    model = DigitDiffusionModel(CFG, metadata={"task": "tiny"})
    path = tmp_path / "ckpt" / "digits.safetensors"
    model.save(path)
    assert path.exists() and path.with_suffix(".json").exists()
    assert not list(path.parent.glob("*.tmp"))
    loaded = DigitDiffusionModel.load(path)
    assert loaded.cfg == model.cfg and loaded.metadata == {"task": "tiny"}
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


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
