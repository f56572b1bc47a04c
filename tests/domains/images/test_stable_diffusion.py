"""The Stable Diffusion backend on tiny random components built from configs and saved as a pipeline
folder (the `tiny_sd` fixture of tests/domains/conftest.py), so that the real offline loading path
runs: what is Stable Diffusion's own (loading, classifier-free guidance, LoRA-only training, the frozen
copy's LoRA snapshot, gradient checkpointing, prompts, LoRA checkpoints), the rewards, the featuriser,
and one SEIKO round through the loop. What every model must do (sampling, log-probs, KL, differentiable
and guided sampling, save/load, encode/decode) is tested once for all models in
tests/domains/test_model_protocol.py."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest
import torch
from PIL import Image

from domains.base import DiffusionModel, Featuriser, Oracle
from domains.images.design import ImageDesign
from domains.images.sd_rewards import (
    AestheticMLP,
    AestheticOracle,
    ClipFeaturiser,
    ClipPreprocess,
    SDJpegCompressibility,
    SDJpegIncompressibility,
)
from domains.images.sd_task import build_task
from domains.images.stable_diffusion import (
    LORA_TARGETS,
    SIMPLE_ANIMALS,
    StableDiffusionConfig,
    StableDiffusionModel,
)

torch.set_num_threads(1)

PROMPTS = ["cat", "dog", "fox"]  # as the `tiny_sd` fixture (tests/domains/conftest.py) builds them
RESOLUTION = 32  # latents 16x16 with the tiny VAE's factor 2


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def lora_weights(model: StableDiffusionModel) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.unet.named_parameters() if "lora_" in n}


def perturb_lora(model: StableDiffusionModel, scale: float = 0.1, seed: int = 1) -> None:
    g = gen(seed)
    with torch.no_grad():
        for p in model.trainable_parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))


# ----- loading ----------------------------------------------------------------------------
def test_loads_a_local_pipeline_folder_with_a_ddim_schedule_whose_last_step_is_random(tiny_sd):
    from diffusers import DDIMScheduler

    model = tiny_sd.model()
    assert isinstance(model, DiffusionModel)
    assert isinstance(model.scheduler, DDIMScheduler)
    assert model.scheduler.config.timestep_spacing == "trailing" and not model.scheduler.config.set_alpha_to_one
    assert model.timesteps == [999, 749, 499, 249]
    out = model.sample(3, generator=gen())
    assert out.x.shape == (3, 3, RESOLUTION, RESOLUTION) and out.x.min() >= -1 and out.x.max() <= 1
    for d in out.designs:
        assert isinstance(d, ImageDesign) and d.pixels.shape == (RESOLUTION, RESOLUTION, 3)
        assert d.pixels.dtype == np.uint8 and d.condition in PROMPTS
    assert torch.equal(model.encode(out.designs), out.x.add(1).mul(127.5).round().div(127.5).sub(1))


def test_default_prompts_are_ddpos_45_simple_animals():
    cfg = StableDiffusionConfig()
    assert len(cfg.prompts) == 45 == len(set(SIMPLE_ANIMALS))
    assert cfg.prompts[:3] == ["cat", "dog", "horse"] and cfg.prompts[-1] == "kangaroo"
    assert (cfg.num_steps, cfg.eta, cfg.guidance_scale, cfg.resolution, cfg.lora_rank) == (50, 1.0, 5.0, 512, 4)


def test_missing_weights_give_a_one_line_error_saying_where_and_how(tiny_sd, tmp_path):
    from huggingface_hub import constants

    with pytest.raises(FileNotFoundError) as err:
        StableDiffusionModel(StableDiffusionConfig(pretrained="nobody/no-such-diffusion", device="cpu"))
    message = str(err.value)
    assert "\n" not in message and "nobody/no-such-diffusion" in message
    assert constants.HF_HUB_CACHE in message and "download nobody/no-such-diffusion" in message
    with pytest.raises(FileNotFoundError, match="not a local folder"):
        StableDiffusionModel(StableDiffusionConfig(pretrained=str(tmp_path / "absent"), device="cpu"))
    with pytest.raises(FileNotFoundError, match="model_index.json"):
        StableDiffusionModel(StableDiffusionConfig(pretrained=str(tmp_path), device="cpu"))
    with pytest.raises(FileNotFoundError, match="CLIP model"):
        build_task(tiny_sd.config(), "jpeg-compressibility", clip=str(tmp_path / "no-clip"))


@pytest.mark.parametrize("changes, message", [
    ({"num_steps": 3}, "divide"), ({"eta": 0.0}, "eta"), ({"prompts": ["a", "a"]}, "distinct"),
    ({"lora_rank": 0, "dtype": "float16"}, "float32"), ({"dtype": "float64"}, "dtype"),
])
def test_bad_settings_are_rejected(changes, message):
    with pytest.raises(ValueError, match=message):
        StableDiffusionConfig(**changes)


# ----- the policy -------------------------------------------------------------------------
def test_one_lora_step_changes_only_lora_weights(tiny_sd):
    rng = torch.random.get_rng_state()
    model = tiny_sd.model(lora_rank=4)
    assert torch.equal(torch.random.get_rng_state(), rng)  # the adapters' init has its own seed
    again = lora_weights(tiny_sd.model()).values()
    assert all(torch.equal(a, b) for a, b in zip(lora_weights(model).values(), again))
    base_linears = {n: m for n, m in model.unet.named_modules() if hasattr(m, "base_layer")}
    assert base_linears and all(n.endswith(LORA_TARGETS) for n in base_linears)
    expected = sum(4 * (m.in_features + m.out_features) for m in base_linears.values())
    params = model.trainable_parameters()
    assert sum(p.numel() for p in params) == expected
    before = {n: p.detach().clone() for n, p in model.unet.named_parameters()}
    vae_before = [p.detach().clone() for p in model.vae.parameters()]
    designs = model.sample(2, generator=gen()).designs
    opt = torch.optim.Adam(params, lr=1e-2)
    loss = model.denoising_loss(model.encode(designs), generator=gen(1), condition=model.conditions(designs),
                                weights=torch.tensor([1.0, 3.0]))
    loss.backward()
    opt.step()
    changed = {n for n, p in model.unet.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all("lora_" in n for n in changed)
    assert all(torch.equal(a, b) for a, b in zip(vae_before, model.vae.parameters()))


def test_full_finetuning_trains_every_unet_weight(tiny_sd):
    model = tiny_sd.model(lora_rank=0)
    assert sum(p.numel() for p in model.trainable_parameters()) == sum(p.numel() for p in model.unet.parameters())
    assert not any(p.requires_grad for p in model.vae.parameters())


def test_frozen_copy_shares_the_networks_and_keeps_its_lora_snapshot_through_training(tiny_sd):
    model = tiny_sd.model()
    frozen = model.frozen_copy()
    assert frozen.vae is model.vae and frozen.unet is model.unet and frozen.trainable_parameters() == []
    traj = model.sample(3, generator=gen(), keep_trajectory=True).trajectory
    opt = torch.optim.Adam(model.trainable_parameters(), lr=1e-2)
    (-model.log_prob(traj).mean()).backward()  # one DDPO-like step on the shared UNet's live LoRA weights
    opt.step()
    opt.zero_grad()
    assert (model.kl(traj, frozen) > 0).all()
    # The anchor kept its snapshot: it still samples what the untrained model sampled.
    torch.testing.assert_close(frozen.sample(3, generator=gen()).x, tiny_sd.model().sample(3, generator=gen()).x)


def test_sample_with_grad_reaches_only_the_lora_weights_with_or_without_checkpointing(tiny_sd):
    grads = {}
    for checkpointed in (True, False):  # gradient checkpointing changes the memory, not the gradient
        model = tiny_sd.model(gradient_checkpointing=checkpointed)
        frozen = model.frozen_copy()
        perturb_lora(model, scale=0.05)
        out = model.sample_with_grad(3, generator=gen(2), last_k=2, reference=frozen)
        assert out.x.shape == (3, 3, RESOLUTION, RESOLUTION) and out.kl.shape == (3, 4) and (out.kl > 0).all()
        (out.x.mean() + out.kl.sum()).backward()
        grads[checkpointed] = [p.grad for p in model.trainable_parameters()]
        assert not any(p.grad is not None for n, p in model.unet.named_parameters() if "lora_" not in n)
    assert all(g is not None for g in grads[True]) and sum(float(g.abs().sum()) for g in grads[True]) > 0
    for a, b in zip(grads[True], grads[False]):
        torch.testing.assert_close(a, b)


def test_guidance_scale_is_used(tiny_sd):
    x1 = tiny_sd.model(guidance_scale=1.0).sample(2, generator=gen()).x
    x7 = tiny_sd.model(guidance_scale=7.0).sample(2, generator=gen()).x
    assert not torch.allclose(x1, x7, atol=1e-3)


def test_conditions_are_prompts_and_unknown_prompts_are_rejected(tiny_sd):
    model = tiny_sd.model()
    out = model.sample(3, generator=gen(), condition=torch.tensor([2, 0, 2]))
    assert [d.condition for d in out.designs] == ["fox", "cat", "fox"]
    assert set(model.sample(12, generator=gen(), keep_trajectory=True).trajectory.condition.tolist()) == {0, 1, 2}
    with pytest.raises(ValueError, match="'owl'.*not one of"):
        model.conditions([ImageDesign(out.designs[0].pixels, "owl")])
    with pytest.raises(ValueError, match=r"\[0, 2\]"):
        model.sample(1, generator=gen(), condition=torch.tensor([3]))
    with pytest.raises(ValueError, match=r"uint8 RGB pixels of shape \(32, 32, 3\)"):
        model.encode([ImageDesign(np.zeros((32, 32), np.uint8), "cat")])


def test_save_and_load_restore_the_lora_weights(tiny_sd, tmp_path):
    model = tiny_sd.model()
    perturb_lora(model)
    model.save(tmp_path / "sd.safetensors")
    meta = json.loads((tmp_path / "sd.json").read_text())
    assert meta["weights"] == "lora" and meta["config"]["pretrained"] == tiny_sd.pipeline
    loaded = StableDiffusionModel.load(tmp_path / "sd.safetensors")
    assert lora_weights(loaded).keys() == lora_weights(model).keys()
    assert all(torch.equal(a, b) for a, b in zip(lora_weights(loaded).values(), lora_weights(model).values()))


# ----- rewards and features ----------------------------------------------------------------
def test_aesthetic_oracle_loads_the_mlp_weights_and_scores_finitely(tiny_sd, tmp_path):
    with torch.random.fork_rng():
        torch.manual_seed(5)
        reference = AestheticMLP()
    path = tmp_path / "sac+logos+ava1-l14-linearMSE.pth"
    torch.save(reference.state_dict(), path)
    loaded = AestheticMLP.load(path)
    assert [n for n, _ in loaded.named_parameters()][0] == "layers.0.weight"
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), reference.state_dict().values()))
    assert [m.out_features for m in loaded.layers if isinstance(m, torch.nn.Linear)] == [1024, 128, 64, 16, 1]

    task = build_task(tiny_sd.config(), "aesthetic", aesthetic_weights=path, clip=tiny_sd.clip)
    oracle = task.oracle
    assert isinstance(oracle, AestheticOracle) and isinstance(oracle, Oracle) and oracle.optimum is None
    assert task.featuriser.vision is oracle.predictor.vision  # one CLIP, not two
    designs = task.load_model().sample(3, generator=gen()).designs
    out = oracle(designs)
    assert out.reward.shape == (3,) and np.isfinite(out.reward).all() and out.feasible.all()
    assert oracle.key(designs[0]) == designs[0].key()

    with pytest.raises(FileNotFoundError) as err:
        AestheticMLP.load(tmp_path / "absent.pth")
    assert "\n" not in str(err.value) and "christophschuhmann/improved-aesthetic-predictor" in str(err.value)
    torch.save({"weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="not the aesthetic MLP"):
        AestheticMLP.load(tmp_path / "other.pth")
    with pytest.raises(ValueError, match="aesthetic_weights"):
        build_task(tiny_sd.config(), "aesthetic", clip=tiny_sd.clip)


def test_pil_preprocessing_matches_clips_image_processor():
    pytest.importorskip("transformers", reason="the CLIP preprocessing test needs transformers (the `sd` extra)")
    try:
        from transformers import CLIPImageProcessorPil as Processor
    except ImportError:  # transformers 4: the PIL processor is CLIPImageProcessor itself
        from transformers import CLIPImageProcessor as Processor
    pixels = np.random.default_rng(0).integers(0, 256, (2, 40, 40, 3), dtype=np.uint8)
    expected = Processor(size={"shortest_edge": 24}, crop_size={"height": 24, "width": 24})(
        images=list(pixels), return_tensors="pt")["pixel_values"]
    ours = ClipPreprocess(24)
    torch.testing.assert_close(ours.pil(pixels), expected, rtol=0, atol=1e-5)
    # The differentiable torch path is the same map up to about one grey level after normalising.
    x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 127.5 - 1
    assert (ours.torch(x) - expected).abs().mean() < 0.05


def test_featuriser_hard_features_equal_relaxed_ones_and_carry_gradients(tiny_sd):
    from transformers import CLIPVisionModelWithProjection

    featuriser = ClipFeaturiser(CLIPVisionModelWithProjection.from_pretrained(tiny_sd.clip))
    assert isinstance(featuriser, Featuriser) and featuriser.dim == 768
    model = tiny_sd.model()
    designs = model.sample(2, generator=gen()).designs
    x = model.encode(designs).requires_grad_(True)
    relaxed = featuriser.relaxed(x)
    torch.testing.assert_close(featuriser(designs), relaxed.detach())
    torch.testing.assert_close(relaxed.norm(dim=1), torch.ones(2))
    relaxed[:, 0].sum().backward()
    assert x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        featuriser.relaxed(torch.zeros(2, 1, 32, 32))


def test_rgb_jpeg_rewards_match_an_independent_pil_encode(tmp_path):
    rng = np.random.default_rng(0)
    pixels = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), np.full((32, 32, 3), 200, np.uint8),
              np.repeat(np.linspace(0, 255, 32, dtype=np.uint8)[None, :, None], 32, 0).repeat(3, 2)]
    expected = []
    for i, p in enumerate(pixels):
        image = Image.fromarray(p)
        assert image.mode == "RGB"
        image.save(tmp_path / f"{i}.jpg", quality=95)
        expected.append((tmp_path / f"{i}.jpg").stat().st_size / 1000)
    designs = [ImageDesign(p, "cat") for p in pixels]
    compress, incompress = SDJpegCompressibility(32), SDJpegIncompressibility(32)
    assert incompress(designs).reward.tolist() == expected
    assert compress(designs).reward.tolist() == [-e for e in expected]
    assert compress(designs).feasible.all() and compress.optimum is None and isinstance(compress, Oracle)
    assert incompress.floor <= min(expected) and compress.floor <= -max(expected)
    assert incompress.floor == SDJpegIncompressibility(32)(
        [ImageDesign(np.full((32, 32, 3), 128, np.uint8), "cat")]).reward[0]
    with pytest.raises(ValueError, match=r"uint8 RGB pixels of shape \(32, 32, 3\)"):
        compress([ImageDesign(np.zeros((32, 32, 3), np.float32), "cat")])
    with pytest.raises(ValueError, match="prompt string"):
        compress.key(ImageDesign(pixels[0], 3))


# ----- one SEIKO round through the loop ---------------------------------------------------------
def test_one_seiko_round_end_to_end(tiny_sd):
    from algorithms.budgeted_oracle import BudgetedOracle
    from algorithms.loop import run
    from algorithms.method import Context
    from algorithms.registry import build_method

    task = build_task(tiny_sd.config(), "jpeg-compressibility", clip=tiny_sd.clip)
    model = task.load_model()
    before = lora_weights(model)
    # hidden 16, not 8: the tiny random CLIP embeds every image in nearly the same direction, and with
    # 8 units per layer the reward model's ReLUs can all be dead there (seed 0 does that), which leaves
    # a reward with no gradient and a fine-tuning step that changes nothing.
    settings = {"finetune_steps": 1, "batch_size": 2, "last_k": 1,
                "reward_model": {"steps": 5, "hidden": 16, "min_feasible": 2}}
    method = build_method("seiko-ucb", Context(featuriser=task.featuriser, floor=task.oracle.floor, seed=0), settings)
    oracle = BudgetedOracle(task.oracle, 4, method="seiko-ucb", seed=0)
    records = run(method, model, oracle, [4], floor=task.oracle.floor, eval_samples=2, eval_seed=0)
    assert [r.round for r in records] == [0, 1] and records[-1].queries_used == 4
    assert all(np.isfinite(r.value) and r.value < 0 and r.feasible_fraction == 1.0 for r in records)
    assert np.isfinite(records[-1].learned_reward) and np.isfinite(records[-1].diagnostics["finetune_kl"])
    assert len(oracle.log()) == 4 and oracle.log()["feasible"].all()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.trainable_parameters())
    after = lora_weights(model)
    assert any(not torch.equal(before[n], after[n]) for n in before)


def test_a_jpeg_task_loads_clip_only_when_a_method_first_asks_for_features(tiny_sd, monkeypatch):
    import domains.images.sd_rewards as rewards

    loads = []
    real = rewards.load_clip_vision
    monkeypatch.setattr(rewards, "load_clip_vision", lambda *a, **k: loads.append(a) or real(*a, **k))
    task = build_task(tiny_sd.config(), "jpeg-incompressibility", clip=tiny_sd.clip)
    assert loads == [] and task.featuriser.dim == 768  # known from CLIP's config alone
    images = task.load_model().sample(2, generator=torch.Generator().manual_seed(0)).designs
    assert task.featuriser(images).shape == (2, 768) and len(loads) == 1
    task.featuriser(images)
    assert len(loads) == 1  # loaded once


def test_a_precision_or_compile_this_machine_cannot_honour_is_one_warning_and_a_recorded_fallback(
        tiny_sd, monkeypatch):
    from domains.images import stable_diffusion as sd

    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    monkeypatch.setattr(sd.shutil, "which", lambda name: None)
    with pytest.warns(UserWarning) as caught:
        task = build_task({**asdict(tiny_sd.config()), "dtype": "bfloat16", "compile": True}, "jpeg-compressibility",
                          clip=tiny_sd.clip)
    lines = [str(w.message) for w in caught]
    assert len(lines) == 2 and all("\n" not in line for line in lines)
    assert task.info["dtype"] == "float32" and task.info["compile"] is False
    assert [f.split(":")[0] for f in task.info["fallbacks"]] == ["dtype bfloat16", "compile"]
    assert task.load_model().unet.dtype == torch.float32
    # What the machine can do is kept, and says nothing.
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    assert sd.honoured(tiny_sd.config(dtype="bfloat16")) == (tiny_sd.config(dtype="bfloat16"), [])
