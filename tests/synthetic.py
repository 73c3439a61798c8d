"""Synthetic frames with exact truth, test fixtures for the perception backends (kept out of the
product: nothing under agent/, models/ or drivers/ uses them).

A textured background plus coloured, textured objects, rendered with the same shape of data that
the simulator's frames carry (`rgb`, `segmentation` with -1 background, `labels`, `t_capture`), so
the oracle backends, GrabCut and the trackers can be checked against known boxes and masks
without MuJoCo. Object textures are seeded per object, so a moving object looks the same in every
frame, which is what a tracker needs.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True, slots=True)
class SyntheticObject:
    """An object drawn at integer pixel `box` (x0, y0, x1, y1; x1/y1 exclusive).

    `shape` is "rect" or "ellipse" (inscribed in the box); `texture` adds a seeded pattern of
    +-25% brightness, which trackers need; a flat object is what GrabCut finds easiest.
    """

    name: str
    box: tuple[int, int, int, int]
    colour: tuple[int, int, int]
    shape: str = "rect"
    texture: bool = True


@dataclass(frozen=True, slots=True)
class SyntheticFrame:
    """Structurally a `drivers.base.Frame` as far as perception is concerned."""

    rgb: np.ndarray
    segmentation: np.ndarray
    labels: Mapping[str, int]
    t_capture: float = 0.0
    camera: str = "synthetic"


def textured_background(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth, low-contrast greyish texture (like a table top), (H, W, 3) uint8."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 1, size=(height // 8 + 2, width // 8 + 2, 3)).astype(np.float32)
    smooth = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    fine = rng.uniform(-1, 1, size=(height, width, 1)).astype(np.float32)
    image = 105 + 45 * smooth + 12 * fine
    return np.clip(image, 0, 255).astype(np.uint8)


def _object_pixels(obj: SyntheticObject, height: int, width: int) -> np.ndarray:
    x0, y0, x1, y1 = obj.box
    if obj.shape == "rect":
        region = np.ones((y1 - y0, x1 - x0), dtype=bool)
    elif obj.shape == "ellipse":
        yy, xx = np.mgrid[y0:y1, x0:x1]
        cx, cy, rx, ry = (x0 + x1 - 1) / 2, (y0 + y1 - 1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
        region = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0
    else:
        raise ValueError(f"unknown shape {obj.shape!r}; use 'rect' or 'ellipse'")
    pixels = np.zeros((height, width), dtype=bool)
    vx0, vy0, vx1, vy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if vx1 > vx0 and vy1 > vy0:
        pixels[vy0:vy1, vx0:vx1] = region[vy0 - y0 : vy1 - y0, vx0 - x0 : vx1 - x0]
    return pixels


def _object_texture(obj: SyntheticObject, height: int, width: int) -> np.ndarray:
    """Per-pixel colour of the object in object coordinates, placed in a full-size canvas."""
    x0, y0, x1, y1 = obj.box
    colour = np.asarray(obj.colour, dtype=np.float32)
    if obj.texture:
        rng = np.random.default_rng(zlib.crc32(obj.name.encode()))  # stable across runs
        blobs = rng.uniform(-1, 1, size=((y1 - y0) // 4 + 2, (x1 - x0) // 4 + 2, 1))
        pattern = cv2.resize(blobs.astype(np.float32), (x1 - x0, y1 - y0))[..., None]
        patch = colour * (1.0 + 0.25 * pattern)
    else:
        patch = np.broadcast_to(colour, (y1 - y0, x1 - x0, 3))
    canvas = np.zeros((height, width, 3), dtype=np.float32)
    vx0, vy0, vx1, vy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if vx1 > vx0 and vy1 > vy0:
        canvas[vy0:vy1, vx0:vx1] = patch[vy0 - y0 : vy1 - y0, vx0 - x0 : vx1 - x0]
    return canvas


def render_scene(
    objects: Sequence[SyntheticObject],
    *,
    size: tuple[int, int] = (224, 224),
    background: np.ndarray | None = None,
    seed: int = 0,
    t_capture: float = 0.0,
    camera: str = "synthetic",
) -> SyntheticFrame:
    """Draw `objects` in order (later ones occlude earlier ones); ids are 1, 2, ... in order.

    `size` is (height, width). Pass a fixed `background` to keep it identical across frames.
    Objects may lie partly or wholly outside the image; they keep their label either way.
    """
    height, width = size
    rgb = (
        textured_background(height, width, seed).astype(np.float32)
        if background is None
        else background.astype(np.float32)
    )
    segmentation = np.full((height, width), -1, dtype=np.int32)
    labels: dict[str, int] = {}
    for object_id, obj in enumerate(objects, start=1):
        labels[obj.name] = object_id
        pixels = _object_pixels(obj, height, width)
        rgb[pixels] = _object_texture(obj, height, width)[pixels]
        segmentation[pixels] = object_id
    return SyntheticFrame(
        rgb=np.clip(rgb, 0, 255).astype(np.uint8),
        segmentation=segmentation,
        labels=labels,
        t_capture=t_capture,
        camera=camera,
    )
