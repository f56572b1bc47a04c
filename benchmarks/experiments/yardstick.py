"""The reference workload every timing benchmark divides by: absolute times on shared
machines are noise, ratios to a workload measured in the same run on the same load are not."""

from __future__ import annotations

import timeit

import torch


def reference_seconds() -> float:
    """Best of 5 runs of 20 products of 256 x 256 matrices: the yardstick."""
    a = torch.randn(256, 256, generator=torch.Generator().manual_seed(0))
    return min(timeit.repeat(lambda: [a @ a for _ in range(20)], number=1, repeat=5))
