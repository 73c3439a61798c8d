"""A scene's look: the chosen background entry's table, wall and lights, plus (when randomisation
is on) what `draw_look` drew for this episode.

What is drawn: a new table texture (pattern, colours, scale, or an image from the file's
`textures` list) or the entry's own with jittered colours, a wall colour, light directions,
colours and intensities, object colour offsets and a small pose offset per camera. Everything is
drawn from its own stream of the episode seed (`numpy` Generator seeded with `[seed,
LOOK_STREAM]`), so the same seed gives the same look and turning randomisation on does not move a
single object. A `Look` is plain data: `look.record()` is the JSON stored with each demonstration.

How the held-out look stays out of reach (its region: `drivers.sim.backgrounds`;
`is_held_out(look, backgrounds)` tests a look). Three things keep randomised looks outside it:

1. `draw_look` redraws any table that falls in the region (rejection from the same stream: still
   reproducible); after `MAX_REDRAWS` it keeps the training entry's own table.
2. The loader refuses a file in which a training entry's table, or an image in `textures`, falls in
   a held-out region, so that fallback is outside too.
3. The default ranges stay far from the packaged held-out look anyway: drawn colours have HSV
   saturation <= 0.45 (the held-out table is saturated blue and orange, >= 0.67), walls are always
   flat (the held-out wall is a checker), and lights come from >= 45 degrees elevation with a
   near-white tint (the held-out key light is warm and 32 degrees low).

A held-out look itself is never randomised (its table, wall and lights are shown as written);
camera and object-colour jitter still apply when randomisation is on.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from drivers.sim.backgrounds import Backgrounds, Randomisation, Range, in_held_out_region
from drivers.sim.catalog import USER_NAME
from drivers.sim.scenery import FrozenModel, Light, Pattern, Surface, Vec3, Wall

MAX_REDRAWS = 100
#: second argument of the look's random stream (placement uses the bare seed)
LOOK_STREAM = 0x100C


class CameraOffset(FrozenModel):
    """A camera's pose offset from its nominal pose: a shift (m) and a turn (rotation vector in
    degrees, world frame)."""

    camera: str
    shift_m: Vec3 = (0.0, 0.0, 0.0)
    turn_deg: Vec3 = (0.0, 0.0, 0.0)


class ObjectColour(FrozenModel):
    name: str
    rgb: Vec3


class Look(FrozenModel):
    """What one scene looks like: the drawn values, ready to build and to record as JSON."""

    name: str  # the backgrounds entry it starts from
    held_out: bool = False
    randomised: bool = False
    table: Surface
    wall: Wall
    lights: tuple[Light, ...]
    cameras: tuple[CameraOffset, ...] = ()
    objects: tuple[ObjectColour, ...] = ()

    def record(self) -> dict[str, Any]:
        """Plain JSON-serialisable values (for episode metadata)."""
        return self.model_dump(mode="json")

    def camera(self, name: str) -> CameraOffset | None:
        return next((c for c in self.cameras if c.camera == name), None)

    def object_rgb(self, name: str) -> Vec3 | None:
        return next((o.rgb for o in self.objects if o.name == name), None)


def is_held_out(look: Look, backgrounds: Backgrounds) -> bool:
    """Whether `look` shows a held-out background or lies in one's held-out region."""
    if look.held_out or look.name in backgrounds.held_out:
        return True
    return any(
        in_held_out_region(look.table, backgrounds[name].table) for name in backgrounds.held_out
    )


# ---------------------------------------------------------------------------- drawing a look


def draw_look(
    backgrounds: Backgrounds,
    name: str,
    seed: int,
    settings: Randomisation | None = None,
    objects: Sequence[str] = (),
    cameras: Sequence[str] = ("front", "side"),
) -> Look:
    """The look of one scene: entry `name` as written, or randomised from `seed`'s own stream."""
    entry = backgrounds[name]
    look = Look(
        name=name, held_out=entry.held_out, table=entry.table, wall=entry.wall, lights=entry.lights
    )
    if settings is None or not settings.enabled:
        return look
    rng = np.random.default_rng([seed, LOOK_STREAM])
    updates: dict[str, Any] = {"randomised": True}
    if not entry.held_out:
        updates["table"] = _draw_table(rng, entry.table, backgrounds, settings)
        updates["wall"] = _draw_wall(rng, entry.wall, settings)
        updates["lights"] = _draw_lights(rng, entry.lights, settings)
    updates["objects"] = tuple(
        ObjectColour(name=obj, rgb=_offsets(rng, settings.object_colour_jitter))
        for obj in objects
        if obj != USER_NAME
    )
    updates["cameras"] = tuple(
        CameraOffset(
            camera=camera,
            shift_m=_in_ball(rng, settings.camera_shift_m),
            turn_deg=_in_ball(rng, settings.camera_turn_deg),
        )
        for camera in cameras
    )
    return look.model_copy(update=updates)


def _draw_table(
    rng: np.random.Generator, own: Surface, backgrounds: Backgrounds, s: Randomisation
) -> Surface:
    held = [backgrounds[n].table for n in backgrounds.held_out]
    images = list(backgrounds.textures) + [
        b.table.image for b in backgrounds.entries.values() if not b.held_out and b.table.image
    ]
    patterns = [p for p in s.patterns if p != "image" or images]
    for _ in range(MAX_REDRAWS):
        if patterns and rng.random() < s.texture_share:
            table = _new_table(rng, patterns, images, s)
        else:
            table = _jittered(rng, own, s.colour_jitter)
        if not any(in_held_out_region(table, region) for region in held):
            return table
    return own


def _new_table(
    rng: np.random.Generator, patterns: Sequence[Pattern], images: list[str], s: Randomisation
) -> Surface:
    pattern = patterns[int(rng.integers(len(patterns)))]
    if pattern == "image":
        image = images[int(rng.integers(len(images)))]
        return Surface(pattern="image", image=image, scale=_round(rng.uniform(1.0, 4.0)))
    first = _hsv_colour(rng, s.saturation_max, s.value_range)
    colours = [first]
    if pattern != "flat":
        h, _, v = colorsys.rgb_to_hsv(*first)
        low, high = s.value_range
        shift = rng.uniform(0.1, 0.35) * rng.choice([-1.0, 1.0])
        v2 = v + shift if low <= v + shift <= high else v - shift
        second = colorsys.hsv_to_rgb(
            (h + rng.uniform(-0.08, 0.08)) % 1.0,
            rng.uniform(0.0, s.saturation_max),
            float(np.clip(v2, 0.0, 1.0)),
        )
        colours.append(_rgb(second))
    scale = 1.0
    if pattern in ("checker", "stripes", "noise"):
        low, high = s.table_scale
        scale = _round(math.exp(rng.uniform(math.log(low), math.log(high))))
    return Surface(
        pattern=pattern,
        colours=tuple(colours),
        scale=scale,
        seed=int(rng.integers(2**31)) if pattern == "noise" else 0,
    )


def _jittered(rng: np.random.Generator, own: Surface, jitter: float) -> Surface:
    if own.pattern == "image":
        return own.model_copy(update={"scale": _round(own.scale * rng.uniform(0.7, 1.4))})
    colours = tuple(
        _rgb(np.clip(np.array(c) + rng.uniform(-jitter, jitter, 3), 0.0, 1.0)) for c in own.colours
    )
    return own.model_copy(update={"colours": colours})


def _draw_wall(rng: np.random.Generator, own: Wall, s: Randomisation) -> Wall:
    colour = _hsv_colour(rng, s.saturation_max, s.wall_value_range)
    return Wall(pattern="flat", colours=(colour,), scale=own.scale)


def _draw_lights(
    rng: np.random.Generator, own: Sequence[Light], s: Randomisation
) -> tuple[Light, ...]:
    """Directional lights get a new direction; every light a tint; the key light a new intensity
    and the others the same relative change."""
    key_intensity = _round(rng.uniform(*s.light_intensity))
    ratio = key_intensity / own[0].intensity
    lights = []
    for i, light in enumerate(own):
        update: dict[str, Any] = {
            "colour": _hsv_colour(rng, s.light_tint, (1.0, 1.0)),
            "intensity": key_intensity if i == 0 else _round(min(3.0, light.intensity * ratio)),
        }
        if light.kind == "directional":
            azimuth = math.radians(rng.uniform(0.0, 360.0))
            elevation = math.radians(rng.uniform(*s.light_elevation_deg))
            update["direction"] = _rgb(
                (
                    math.cos(elevation) * math.cos(azimuth),
                    math.cos(elevation) * math.sin(azimuth),
                    -math.sin(elevation),
                )
            )
        lights.append(light.model_copy(update=update))
    return tuple(lights)


def _hsv_colour(rng: np.random.Generator, saturation_max: float, values: Range) -> Vec3:
    return _rgb(
        colorsys.hsv_to_rgb(
            rng.uniform(0.0, 1.0), rng.uniform(0.0, saturation_max), rng.uniform(*values)
        )
    )


def _offsets(rng: np.random.Generator, size: float) -> Vec3:
    return _rgb(rng.uniform(-size, size, 3))


def _in_ball(rng: np.random.Generator, radius: float) -> Vec3:
    """A vector drawn uniformly from the ball of `radius`."""
    direction = rng.normal(size=3)
    direction /= max(float(np.linalg.norm(direction)), 1e-12)
    return _rgb(direction * radius * rng.random() ** (1.0 / 3.0))


def _rgb(values: Iterable[float]) -> Vec3:
    r, g, b = (round(float(v), 6) for v in values)
    return (r, g, b)


def _round(value: float) -> float:
    return round(float(value), 4)
