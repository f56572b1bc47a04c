"""A pool worker runs cell after cell: the peak memory a cell records must be its
own, not that of the biggest cell its worker ran before."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from algorithms.loop import peak_rss_mb, reset_peak_rss


@pytest.mark.skipif(sys.platform != "linux", reason="the high-water mark is reset through /proc")
def test_the_peak_restarts_for_the_next_cell():
    big = np.ones(300_000_000 // 8)  # 300 MB touched, as a large earlier cell would
    during = peak_rss_mb()
    del big
    reset_peak_rss()
    assert peak_rss_mb() < during - 200
