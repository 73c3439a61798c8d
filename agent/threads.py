"""Math libraries' thread pools, pinned to what a real-time process on a few cores can afford.

Every numerical library brings its own pool, each sized to the machine's cores by default:
torch's intra-op pool, OpenCV's, OpenMP, and OpenBLAS, twice (numpy's, and a second copy bundled
inside the opencv-contrib wheel). Measured on a 2-core machine in `bench loop`: the idle worker of
OpenCV's bundled OpenBLAS spun on `sched_yield` between the KCF tracker's calls and burned 87 ms
of CPU per 100 ms control step, more than rendering and the models together, all of it in the
kernel and attributed to no stage. Environment variables only reach a library that has not
loaded yet, so the pools already loaded are limited through threadpoolctl, which finds every
loaded OpenBLAS / MKL / OpenMP by its shared object and calls its own set-threads function.
"""

from __future__ import annotations

import os
import sys

_POOL_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def pin_math_threads(threads: int, *, torch: bool = False) -> None:
    """Limit OpenCV, OpenMP, BLAS (every loaded copy) and torch to `threads` threads each.

    Loads OpenCV (the runtime always uses it) so its bundled OpenBLAS is among the pools limited;
    torch only when `torch` is set or it is loaded already (importing it costs seconds a process
    that never uses it should not pay). Safe to call again: the last call wins.
    """
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    for name in _POOL_VARIABLES:  # for the libraries that load later
        os.environ[name] = str(threads)
    import cv2
    from threadpoolctl import threadpool_limits

    cv2.setNumThreads(threads)
    if torch or "torch" in sys.modules:
        import torch as torch_module

        torch_module.set_num_threads(threads)
    threadpool_limits(limits=threads)  # not as a context: the limit stays for the process
