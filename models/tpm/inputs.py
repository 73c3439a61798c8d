"""The one function that turns perception output into the policy's input arrays.

Collection (what the network is trained on) and the ONNX policy (what it runs on) both call
`prepare_views`, so resizing and mask coding can never differ between training and use: RGB is
downsampled with area averaging (what a camera at the lower resolution would see), role masks with
nearest-neighbour (their values are codes, not intensities).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import cv2
import numpy as np


def prepare_views(
    images: Mapping[str, np.ndarray],
    masks: Mapping[str, np.ndarray],
    views: Sequence[str],
    size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(V, S, S, 3) uint8 RGB and (V, S, S) float32 role masks for `views`, in that order."""
    missing = [v for v in views if v not in images or v not in masks]
    if missing:
        raise KeyError(f"the policy needs views {list(views)}; missing {missing}")
    rgb = np.stack([_resize(np.asarray(images[v]), size, cv2.INTER_AREA) for v in views])
    mask = np.stack(
        [_resize(np.asarray(masks[v], dtype=np.float32), size, cv2.INTER_NEAREST) for v in views]
    )
    return rgb.astype(np.uint8, copy=False), mask.astype(np.float32, copy=False)


def _resize(image: np.ndarray, size: int, interpolation: int) -> np.ndarray:
    if image.shape[0] == size and image.shape[1] == size:
        return image
    return cv2.resize(image, (size, size), interpolation=interpolation)
