"""Scenery: the parts of one background, as the backgrounds file writes them (table and wall
surfaces, lights) and as a scene's `Look` shows them.

Plain validated data (pydantic, frozen, unknown keys refused), so that a bad file fails up front in
one line (`drivers.sim.backgrounds` words the message) and a drawn look can be recorded as JSON.
Colours are [r, g, b] in 0..1 or "#rrggbb".
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

Pattern = Literal["flat", "checker", "gradient", "stripes", "noise", "image"]
PATTERNS: tuple[Pattern, ...] = ("flat", "checker", "gradient", "stripes", "noise", "image")
Vec3 = tuple[float, float, float]


def _colour(value: Any) -> Any:
    """[r, g, b] in 0..1 or "#rrggbb" -> a tuple of three floats."""
    if isinstance(value, str):
        text = value.strip()
        if len(text) == 7 and text[0] == "#":
            try:
                return tuple(int(text[i : i + 2], 16) / 255.0 for i in (1, 3, 5))
            except ValueError:
                pass
        raise ValueError(f"must be [r, g, b] in 0..1 or '#rrggbb', got {value!r}")
    if (
        isinstance(value, list | tuple)
        and len(value) == 3
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        and all(0.0 <= v <= 1.0 for v in value)
    ):
        return tuple(float(v) for v in value)
    raise ValueError(f"must be [r, g, b] in 0..1 or '#rrggbb', got {value!r}")


Colour = Annotated[tuple[float, float, float], BeforeValidator(_colour)]


class FrozenModel(BaseModel):
    """Strict (unknown keys refused) and immutable: the base of every scenery and look model."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Speckle(FrozenModel):
    """Small random dots over a pattern (MuJoCo's random mark), e.g. crumbs on a cloth."""

    colour: Colour
    density: float = Field(gt=0, le=1)


class Surface(FrozenModel):
    """A textured surface: a pattern in one or two colours, or an image file, repeated `scale`
    times across the surface."""

    pattern: Pattern = "flat"
    colours: tuple[Colour, ...] = Field(((0.8, 0.8, 0.8),), min_length=1, max_length=2)
    scale: float = Field(1.0, gt=0, le=100)
    image: str | None = None
    speckle: Speckle | None = None
    seed: int = Field(0, ge=0, description="noise pattern: which noise")

    @model_validator(mode="before")
    @classmethod
    def _image_means_pattern(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("image") is not None:
            if data.get("pattern", "image") != "image":
                raise ValueError(
                    f"has an image, so its pattern must be 'image', not {data['pattern']!r}"
                )
            for key in ("colours", "speckle"):
                if key in data:
                    raise ValueError(f"has an image: {key} do not apply to it")
            data = {**data, "pattern": "image"}
        return data

    @model_validator(mode="after")
    def _image_given(self) -> Surface:
        if self.pattern == "image" and not self.image:
            raise ValueError("pattern 'image' needs image = \"FILE.png\"")
        return self

    @property
    def rgb1(self) -> Vec3:
        return self.colours[0]

    @property
    def rgb2(self) -> Vec3:
        return self.colours[-1]


class Wall(Surface):
    """The walls around the table (repeated 6 times by default)."""

    scale: float = Field(6.0, gt=0, le=100)


class Light(FrozenModel):
    """One light without shadows: diffuse = colour x intensity."""

    direction: Vec3
    colour: Colour = (1.0, 1.0, 1.0)
    intensity: float = Field(0.6, gt=0, le=3)
    position: Vec3 = (0.6, 0.0, 1.5)
    kind: Literal["directional", "spot"] = "directional"
    specular: float = Field(0.1, ge=0, le=1)

    @field_validator("direction")
    @classmethod
    def _nonzero(cls, value: Vec3) -> Vec3:
        if math.hypot(*value) < 1e-6:
            raise ValueError(f"must not be zero, got {list(value)}")
        return value

    @property
    def diffuse(self) -> Vec3:
        r, g, b = self.colour
        return (r * self.intensity, g * self.intensity, b * self.intensity)


class Background(FrozenModel):
    """One entry of the backgrounds file."""

    held_out: bool = False
    table: Surface
    wall: Wall
    lights: tuple[Light, ...] = Field(min_length=1, max_length=8)
