"""Every math library's pool is pinned, the copies already loaded included (real libraries)."""

from __future__ import annotations

import cv2
import pytest
from threadpoolctl import threadpool_info

from agent.threads import pin_math_threads


def test_every_loaded_blas_and_opencv_pool_is_pinned() -> None:
    """OpenCV's wheel bundles its own OpenBLAS, loaded before any environment variable could
    reach it; its idle worker spinning on sched_yield cost a core's half in the loop benchmark.
    After the pin, threadpoolctl (which reads each library's own get-threads call) sees every
    loaded pool at the asked size, that bundled copy among them."""
    pin_math_threads(2)
    try:
        pools = threadpool_info()
        assert any("opencv" in pool["filepath"] for pool in pools), pools  # the bundled copy
        assert {pool["num_threads"] for pool in pools} == {2}, pools
        assert cv2.getNumThreads() == 2
    finally:
        pin_math_threads(1)  # what the test session runs with (conftest)
    assert {pool["num_threads"] for pool in threadpool_info()} == {1}


def test_zero_threads_is_refused() -> None:
    with pytest.raises(ValueError, match="threads must be >= 1"):
        pin_math_threads(0)
