"""Box <-> pixel helpers shared by the detection, segmentation and tracking backends.

Boxes are float pixel coordinates with x1/y1 exclusive (see `models.types`); these helpers decide,
in one place, how a float box covers whole pixels, so every backend rounds the same way.
"""

from __future__ import annotations

import math

import numpy as np

from models.types import Box

#: Smallest box side in pixels (inside the image) that a tracker can follow; detectors report
#: thinner boxes (a sliver at the image edge, an object almost hidden) as not found.
MIN_SIDE_PX = 2.0


def pixel_bounds(box: Box, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """Integer `(x0, y0, x1, y1)` of the pixels a box touches, clipped to an image of `shape`.

    x0/y0 are floored and x1/y1 ceiled so that a box never loses a partly covered pixel; the result
    may be empty (x1 <= x0) when the box lies outside the image.
    """
    height, width = shape[0], shape[1]
    x0 = min(max(math.floor(box.x0), 0), width)
    y0 = min(max(math.floor(box.y0), 0), height)
    x1 = min(max(math.ceil(box.x1), x0), width)
    y1 = min(max(math.ceil(box.y1), y0), height)
    return x0, y0, x1, y1


def trackable(box: Box, shape: tuple[int, ...]) -> bool:
    """Whether `box` covers at least MIN_SIDE_PX x MIN_SIDE_PX pixels of an image of `shape`."""
    x0, y0, x1, y1 = pixel_bounds(box, shape)
    return x1 - x0 >= MIN_SIDE_PX and y1 - y0 >= MIN_SIDE_PX


def clip_box(box: Box, shape: tuple[int, ...]) -> Box:
    """The box cut to the image area (float coordinates kept)."""
    height, width = shape[0], shape[1]
    x0 = min(max(box.x0, 0.0), float(width))
    y0 = min(max(box.y0, 0.0), float(height))
    return Box(x0, y0, min(max(box.x1, x0), float(width)), min(max(box.y1, y0), float(height)))


def box_of_mask(mask: np.ndarray) -> Box | None:
    """The tight box around the True pixels of an (H, W) mask (x1/y1 exclusive); None if empty."""
    cols = np.flatnonzero(mask.any(axis=0))
    if cols.size == 0:
        return None
    rows = np.flatnonzero(mask.any(axis=1))
    return Box(float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1))


def box_mask(box: Box, shape: tuple[int, ...]) -> np.ndarray:
    """An (H, W) bool mask that is True on the pixels the box touches."""
    mask = np.zeros(shape[:2], dtype=bool)
    x0, y0, x1, y1 = pixel_bounds(box, shape)
    mask[y0:y1, x0:x1] = True
    return mask
