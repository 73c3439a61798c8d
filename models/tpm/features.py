"""Frozen RGB-trunk features of a dataset, computed once and cached beside it.

A frozen trunk (`TPMConfig.freeze_rgb`) gives the same features for a frame at every epoch, so
training computes them once: on this 2-core CPU EfficientNet-Lite0 costs about 13 ms an image,
which at every step would be most of the step. The cache is a `.npy` file beside the dataset,
named for the trunk and the input size, with a fingerprint of the frames it was computed from;
a dataset that grew (appended episodes) only gets its new frames computed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from models.tpm.network import TPMNet, normalise_inputs

BATCH = 64


def _fingerprint(rgb: np.ndarray, n: int) -> str:
    """A digest of a sample of the first `n` frames (cheap; changes if the frames change)."""
    h = hashlib.sha1()
    for i in np.linspace(0, n - 1, num=min(n, 32)).astype(int):
        h.update(np.ascontiguousarray(rgb[i]).tobytes())
    return h.hexdigest()[:16]


def cache_path(dataset: Path, net: TPMNet) -> Path:
    c = net.config
    return dataset.with_name(f"{dataset.name}.{c.rgb_trunk}-{c.image_size}px.features.npy")


@torch.no_grad()
def compute(
    net: TPMNet,
    rgb: np.ndarray,
    *,
    device: torch.device,
    on_progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """(N, V, S, S, 3) uint8 -> (N, V, C, h, w) float16 features of the net's shared trunk."""
    out: np.ndarray | None = None
    zero_mask = torch.zeros(1, 1, 1, 1)
    for start in range(0, len(rgb), BATCH):
        chunk = torch.from_numpy(np.ascontiguousarray(rgb[start : start + BATCH])).to(device)
        images, _ = normalise_inputs(chunk, zero_mask.expand(*chunk.shape[:4]))
        feats = net.shared_features(images)
        assert feats is not None, "the network has no shared RGB trunk"
        if out is None:
            out = np.empty((len(rgb), *feats.shape[1:]), dtype=np.float16)
        out[start : start + len(chunk)] = feats.float().cpu().numpy().astype(np.float16)
        if on_progress is not None:
            on_progress(start + len(chunk), len(rgb))
    assert out is not None, "no frames"
    return out


def cached(
    dataset: Path,
    net: TPMNet,
    rgb: np.ndarray,
    *,
    device: torch.device,
    on_progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """The features of every frame in `rgb` (all of `dataset`'s steps, in order), from the cache
    beside the dataset where it fits and computed (and cached) where it does not."""
    path = cache_path(dataset, net)
    meta_path = path.with_suffix(".json")
    have: np.ndarray | None = None
    if path.is_file() and meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
            n = int(meta["frames"])
            if n <= len(rgb) and meta["fingerprint"] == _fingerprint(rgb, n):
                have = np.load(path, mmap_mode="r")[:n]
        except (OSError, ValueError, KeyError):
            have = None  # unreadable or stale: computed again
    done = 0 if have is None else len(have)
    if done == len(rgb) and have is not None:
        return np.asarray(have)
    fresh = compute(
        net,
        rgb[done:],
        device=device,
        on_progress=None if on_progress is None else lambda i, _n: on_progress(done + i, len(rgb)),
    )
    feats = fresh if have is None else np.concatenate([np.asarray(have), fresh])
    tmp = path.with_suffix(".tmp.npy")
    try:  # a cache that cannot be written (read-only dataset folder) only costs time next run
        np.save(tmp, feats)
        tmp.replace(path)
        meta_path.write_text(
            json.dumps({"frames": len(rgb), "fingerprint": _fingerprint(rgb, len(rgb))})
        )
    except OSError:
        tmp.unlink(missing_ok=True)
    return feats
