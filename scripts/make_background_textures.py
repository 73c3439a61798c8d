"""Make the image textures shipped in drivers/sim/data/textures (procedural: no downloads).

    python scripts/make_background_textures.py

`wood.png`: light wood grain, 128 x 128, tileable, a few KB (colours quantised to 16 shades).
The randomiser may draw it for the table (backgrounds.toml lists it under `textures`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from drivers.sim.textures import _value_noise, encode_png

OUT = Path(__file__).resolve().parents[1] / "drivers" / "sim" / "data" / "textures"


def wood(size: int = 128, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    warp = _value_noise(rng, size)
    x = np.arange(size)[None, :] / size
    rings = 0.5 + 0.5 * np.sin(2 * np.pi * (6 * x + 1.5 * warp))  # 6 grain lines per tile
    shade = np.floor(rings * 15.99) / 15  # 16 shades: small file
    light, dark = np.array([0.80, 0.64, 0.45]), np.array([0.62, 0.45, 0.29])
    pixels = dark + (light - dark) * shade[..., None]
    return np.clip(np.rint(pixels * 255), 0, 255).astype(np.uint8)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "wood.png"
    path.write_bytes(encode_png(wood()))
    print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
