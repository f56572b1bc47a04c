"""Large-scale RL: batch-wide normalisation gathered across processes, the
pretraining-loss regulariser, and the capability it needs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from algorithms.large_scale_rl import LargeScaleRL, LargeScaleRLConfig, batch_normalise, gather
from algorithms.method import Context, Feedback
from domains.base import CapabilityError
from domains.sequences.featuriser import SequenceFeaturiser
from domains.sequences.mdlm import MaskedDiffusionModel, MDLMConfig

CFG = MDLMConfig(alphabet="ACDE", length=6, num_steps=6, d_model=16, n_layers=1, n_heads=2)
FEATURES = SequenceFeaturiser(CFG.alphabet, CFG.length)


def data_fn(n: int, generator: torch.Generator):
    return torch.randint(len(CFG.alphabet), (n, CFG.length), generator=generator), None


def test_single_process_normalisation_is_over_the_batch():
    reward = np.array([0.0, 1.0, 2.0, 7.0])
    assert np.allclose(batch_normalise(reward), (reward - reward.mean()) / (reward.std() + 1e-6))


def _worker(rank: int, world: int, port: int, queue) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        local = np.array([0.0, 1.0]) if rank == 0 else np.array([10.0, 20.0, 30.0])  # unequal batch sizes
        queue.put((rank, gather(torch.as_tensor(local)).tolist(), batch_normalise(local).tolist()))
    finally:
        dist.destroy_process_group()


def test_normalisation_uses_the_statistics_gathered_across_processes():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(rank, 2, port, queue)) for rank in range(2)]
    for p in procs:
        p.start()
    results = dict((rank, (everyone, normalised)) for rank, everyone, normalised in (queue.get(timeout=60) for _ in procs))
    for p in procs:
        p.join(timeout=60)
    everyone = np.array([0.0, 1.0, 10.0, 20.0, 30.0])
    assert results[0][0] == results[1][0] == everyone.tolist()
    mean, std = everyone.mean(), everyone.std() + 1e-6
    assert np.allclose(results[0][1], (np.array([0.0, 1.0]) - mean) / std)
    assert np.allclose(results[1][1], (np.array([10.0, 20.0, 30.0]) - mean) / std)


def test_the_regulariser_needs_pretraining_data_unless_switched_off():
    with pytest.raises(CapabilityError, match="pretraining data.*pretrain_weight=0"):
        LargeScaleRL(LargeScaleRLConfig(), Context(FEATURES, 0.0, seed=0))
    method = LargeScaleRL(LargeScaleRLConfig(pretrain_weight=0.0), Context(FEATURES, 0.0, seed=0))
    assert "denoising_loss" not in method.requires


def _round(weight: float) -> tuple[dict[str, float], MaskedDiffusionModel]:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = MaskedDiffusionModel(CFG)
    method = LargeScaleRL(LargeScaleRLConfig(pretrain_weight=weight, batch_size=8),
                          Context(FEATURES, 0.0, seed=0, pretraining_data=data_fn))
    designs = method.propose(model, 16, 1).designs
    data = Feedback()
    data.add(designs, np.array([d.count("A") for d in designs], dtype=float), np.ones(16, bool), 1)
    return method.update(model, data, 1), model


def test_the_regulariser_adds_the_weighted_pretraining_loss():
    with_reg, _ = _round(2.0)
    without, _ = _round(0.0)
    assert "regulariser" in with_reg and "regulariser" not in without
    assert with_reg["regulariser"] > 0
    assert with_reg["first_ratio"] == pytest.approx(1.0, abs=1e-6)
