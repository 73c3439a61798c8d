"""Texture pixels: the table and wall patterns MuJoCo does not draw itself, and PNG encoding.

The builtin patterns (flat, checker, gradient) are MuJoCo's own; stripes and noise are RGB arrays
made here with numpy (256 x 256 in ~2 ms); image files are PNGs MuJoCo decodes itself. `encode_png`
writes pixels as a PNG for MJCF text, which cannot hold in-memory textures, and for the packaged
image textures (`scripts/make_background_textures.py`). Plain numpy and zlib: no MuJoCo.
"""

from __future__ import annotations

import zlib

import numpy as np

from drivers.sim.scenery import Surface


def surface_pixels(surface: Surface, size: int) -> np.ndarray:
    """(size, size, 3) uint8 pixels of a stripes or noise surface (speckle included)."""
    c1 = np.array(surface.rgb1) * 255.0
    c2 = np.array(surface.rgb2) * 255.0
    if surface.pattern == "stripes":
        weight = ((np.arange(size) * 8 // size) % 2).astype(float)[None, :].repeat(size, 0)
    elif surface.pattern == "noise":
        weight = _value_noise(np.random.default_rng(surface.seed), size)
    else:
        raise ValueError(f"pattern {surface.pattern!r} is drawn by MuJoCo, not as pixels")
    pixels = c1 * (1.0 - weight[..., None]) + c2 * weight[..., None]
    if surface.speckle is not None:
        rng = np.random.default_rng([surface.seed, 1])
        dots = rng.random((size, size)) < surface.speckle.density
        pixels[dots] = np.array(surface.speckle.colour) * 255.0
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def _value_noise(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth blotches in 0..1: three octaves of bilinearly upsampled random grids (tileable)."""
    total = np.zeros((size, size))
    weight_sum = 0.0
    for cells, weight in ((4, 0.6), (8, 0.3), (32, 0.1)):
        grid = rng.random((cells, cells))
        pos = np.arange(size) * cells / size
        i0 = np.floor(pos).astype(int)
        f = pos - i0
        i1 = (i0 + 1) % cells  # wraps, so the texture tiles without seams
        rows = grid[i0] * (1 - f)[:, None] + grid[i1] * f[:, None]
        total += weight * (rows[:, i0] * (1 - f)[None, :] + rows[:, i1] * f[None, :])
        weight_sum += weight
    total /= weight_sum
    low, high = total.min(), total.max()
    return (total - low) / (high - low) if high > low else total


def encode_png(pixels: np.ndarray) -> bytes:
    """An 8-bit RGB PNG of (H, W, 3) uint8 pixels (no dependency beyond zlib)."""
    height, width, _ = pixels.shape
    rows = np.concatenate(
        [np.zeros((height, 1), np.uint8), pixels.reshape(height, width * 3)], axis=1
    )

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return len(body).to_bytes(4, "big") + kind + body + crc.to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows.tobytes(), 9))
        + chunk(b"IEND", b"")
    )
