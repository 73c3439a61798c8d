"""Backgrounds: how the simulated world looks (table, wall, lights), read from a TOML file, and
per-episode domain randomisation of that look, drawn from the scene seed.

The packaged file (`drivers/sim/data/backgrounds.toml`) holds the training looks ("train-0" ..
"train-2") and the held-out look ("new", `held_out = true`) that the `new_background` setting
shows. A user's file of the same schema replaces it (`load_backgrounds(path)`, `--backgrounds`);
every field is validated up front and a problem is one line naming the file, the entry and the
field, e.g. ``backgrounds.toml: [new].table.scale must be > 0, got -1``.

A scene's look is a `Look`: the chosen entry's table, wall and lights, plus (when randomisation is
on) what `draw_look` drew for this episode: a new table texture (pattern, colours, scale, or an
image from the file's `textures` list) or the entry's own with jittered colours, a wall colour,
light directions, colours and intensities, object colour offsets and a small pose offset per
camera. Everything is drawn from its own stream of the episode seed (`numpy` Generator seeded with
`[seed, LOOK_STREAM]`), so the same seed gives the same look and turning randomisation on does not
move a single object. A `Look` is plain data: `look.record()` is the JSON stored with each
demonstration.

How the held-out look stays out of reach. The held-out region of a held-out entry is every table
with the same pattern (or the same image file) whose colours each lie within `HELD_OUT_RADIUS`
(RGB distance) of that entry's colours; `is_held_out(look, backgrounds)` tests it. Three things
keep randomised looks outside it:

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

Texture cost: the builtin patterns (flat, checker, gradient) are MuJoCo's own; stripes and noise
are 256 x 256 RGB arrays made with numpy (~2 ms); image files are PNGs MuJoCo decodes itself.
"""

from __future__ import annotations

import colorsys
import math
import tomllib
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from drivers.sim.catalog import USER_NAME, CatalogError

DEFAULT_BACKGROUNDS = Path(__file__).parent / "data" / "backgrounds.toml"
Pattern = Literal["flat", "checker", "gradient", "stripes", "noise", "image"]
PATTERNS: tuple[Pattern, ...] = ("flat", "checker", "gradient", "stripes", "noise", "image")
#: patterns MuJoCo draws itself; the others are made here as pixel arrays
BUILTIN_PATTERNS: tuple[str, ...] = ("flat", "checker", "gradient")
HELD_OUT_RADIUS = 0.25
MAX_REDRAWS = 100
#: second argument of the look's random stream (placement uses the bare seed)
LOOK_STREAM = 0x100C
TEXTURE_SIZE = 256
WALL_TEXTURE_SIZE = 128
Vec3 = tuple[float, float, float]


class BackgroundsError(CatalogError):
    """The backgrounds file is missing, unreadable, or one of its entries is invalid.

    A `CatalogError` (the scene's other data file), so every caller that reports a bad object
    catalog in one line reports a bad backgrounds file the same way.
    """


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


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Speckle(_Model):
    """Small random dots over a pattern (MuJoCo's random mark), e.g. crumbs on a cloth."""

    colour: Colour
    density: float = Field(gt=0, le=1)


class Surface(_Model):
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


class Light(_Model):
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


class Background(_Model):
    """One entry of the backgrounds file."""

    held_out: bool = False
    table: Surface
    wall: Wall
    lights: tuple[Light, ...] = Field(min_length=1, max_length=8)


class CameraOffset(_Model):
    """A camera's pose offset from its nominal pose: a shift (m) and a turn (rotation vector in
    degrees, world frame)."""

    camera: str
    shift_m: Vec3 = (0.0, 0.0, 0.0)
    turn_deg: Vec3 = (0.0, 0.0, 0.0)


class ObjectColour(_Model):
    name: str
    rgb: Vec3


class Look(_Model):
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


Range = tuple[float, float]


class Randomisation(_Model):
    """Domain randomisation of the scene's look, per episode (off unless enabled).

    `collect` turns it on by default (`--no-randomise` records the fixed looks); `run` and `eval`
    leave it off, so a standard scene renders exactly as its training entry is written.
    """

    enabled: bool = False
    texture_share: float = Field(
        0.75, ge=0, le=1, description="Chance of a new table texture (else the entry's, jittered)."
    )
    patterns: tuple[Pattern, ...] = Field(PATTERNS, min_length=1)
    saturation_max: float = Field(0.45, ge=0, le=1, description="HSV saturation of drawn colours.")
    value_range: Range = (0.3, 0.95)
    table_scale: Range = (2.0, 14.0)
    colour_jitter: float = Field(
        0.06, ge=0, le=0.3, description="Per-channel change of an entry's own table colours."
    )
    wall_value_range: Range = (0.5, 0.95)
    light_elevation_deg: Range = (45.0, 85.0)
    light_intensity: Range = (0.4, 0.85)
    light_tint: float = Field(0.15, ge=0, le=1, description="HSV saturation of light colours.")
    object_colour_jitter: float = Field(0.05, ge=0, le=0.3)
    camera_shift_m: float = Field(0.01, ge=0, le=0.05, description="Largest camera shift.")
    camera_turn_deg: float = Field(1.0, ge=0, le=5, description="Largest camera turn.")

    @field_validator(
        "value_range", "table_scale", "wall_value_range", "light_elevation_deg", "light_intensity"
    )
    @classmethod
    def _ordered(cls, value: Range) -> Range:
        low, high = value
        if not 0 <= low <= high:
            raise ValueError(f"must be [low, high] with 0 <= low <= high, got {list(value)}")
        return value

    @model_validator(mode="after")
    def _bounded(self) -> Randomisation:
        for name in ("value_range", "wall_value_range"):
            if getattr(self, name)[1] > 1:
                raise ValueError(f"{name} must lie in 0..1, got {list(getattr(self, name))}")
        if self.table_scale[0] <= 0:
            raise ValueError("table_scale must be > 0")
        if self.light_elevation_deg[1] > 90:
            raise ValueError("light_elevation_deg must lie in 0..90")
        if not 0 < self.light_intensity[1] <= 3:
            raise ValueError("light_intensity must lie in (0, 3]")
        return self


# ---------------------------------------------------------------------------- the file


@dataclass(frozen=True)
class Backgrounds:
    """All entries of one file, by name, in file order; `textures` are the randomiser's images."""

    entries: Mapping[str, Background]
    source: Path
    textures: tuple[str, ...] = ()

    @property
    def training(self) -> list[str]:
        return [name for name, b in self.entries.items() if not b.held_out]

    @property
    def held_out(self) -> list[str]:
        return [name for name, b in self.entries.items() if b.held_out]

    def __getitem__(self, name: str) -> Background:
        return self.entries[name]

    def choices(self, setting: str) -> list[str]:
        """Entries a scene of `setting` draws from; BackgroundsError when there are none."""
        if setting == "new_background":
            if not self.held_out:
                raise BackgroundsError(
                    f"{self.source}: no held-out entry (held_out = true); the new_background "
                    "setting shows one"
                )
            return self.held_out
        if not self.training:
            raise BackgroundsError(
                f"{self.source}: no training entry (held_out = false); the {setting} setting "
                "shows one"
            )
        return self.training


_CACHE: dict[tuple[str, int, int], Backgrounds] = {}


def load_backgrounds(path: str | Path | None = None) -> Backgrounds:
    """Read and validate a backgrounds file (the packaged one when `path` is None)."""
    source = Path(path) if path is not None else DEFAULT_BACKGROUNDS
    try:
        stat = source.stat()
    except FileNotFoundError:
        raise BackgroundsError(f"{source}: backgrounds file not found") from None
    except OSError as exc:
        raise BackgroundsError(f"{source}: cannot read backgrounds file: {exc}") from None
    key = (str(source.resolve()), stat.st_mtime_ns, stat.st_size)
    cached = _CACHE.get(key)
    if cached is None:
        cached = _CACHE[key] = _load(source)
    return cached


def _load(source: Path) -> Backgrounds:
    try:
        raw = tomllib.loads(source.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise BackgroundsError(f"{source}: cannot read backgrounds file: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise BackgroundsError(f"{source}: not valid TOML ({exc})") from None
    folder = source.parent
    textures_raw = raw.pop("textures", [])
    if not isinstance(textures_raw, list) or not all(isinstance(t, str) for t in textures_raw):
        raise BackgroundsError(f"{source}: textures must be a list of PNG file names")
    textures = tuple(_image_path(t, folder, f"{source}: textures") for t in textures_raw)
    entries: dict[str, Background] = {}
    for name, entry in raw.items():
        if not isinstance(entry, dict):
            raise BackgroundsError(
                f"{source}: top-level key {name!r} must be a [table] (one background) or the "
                "textures list"
            )
        try:
            background = Background.model_validate(entry)
        except ValidationError as exc:
            raise BackgroundsError(f"{source}: [{name}]{_describe(exc)}") from None
        for part in ("table", "wall"):
            surface: Surface = getattr(background, part)
            if surface.image is not None:
                resolved = _image_path(surface.image, folder, f"{source}: [{name}].{part}.image")
                background = background.model_copy(
                    update={part: surface.model_copy(update={"image": resolved})}
                )
        entries[name] = background
    if not entries:
        raise BackgroundsError(f"{source}: expected one or more [name] tables (backgrounds)")
    looks = Backgrounds(entries=entries, source=source, textures=textures)
    for held in looks.held_out:
        region = looks[held].table
        for name in looks.training:
            if _near(looks[name].table, region):
                raise BackgroundsError(
                    f"{source}: [{name}].table lies in the held-out region of [{held}] (same "
                    f"pattern, colours within {HELD_OUT_RADIUS}): a held-out look must differ "
                    "from every training look"
                )
        for texture in textures:
            if region.image == texture:
                raise BackgroundsError(
                    f"{source}: textures lists {texture}, the table image of held-out [{held}]"
                )
    return looks


def _image_path(name: str, folder: Path, where: str) -> str:
    path = Path(name) if Path(name).is_absolute() else folder / name
    if not path.is_file():
        raise BackgroundsError(f"{where}: image file not found: {path}")
    try:
        with path.open("rb") as handle:
            magic = handle.read(8)
    except OSError as exc:
        raise BackgroundsError(f"{where}: cannot read image {path}: {exc}") from None
    if magic != b"\x89PNG\r\n\x1a\n":
        raise BackgroundsError(f"{where}: {path} is not a PNG file")
    return str(path.resolve())


_MESSAGES = {
    "greater_than": "must be > {gt:g}",
    "greater_than_equal": "must be >= {ge:g}",
    "less_than": "must be < {lt:g}",
    "less_than_equal": "must be <= {le:g}",
    "too_short": "must have at least {min_length} item(s)",
    "too_long": "must have at most {max_length} item(s)",
}


_SECTIONS: dict[str, type[BaseModel]] = {
    "": Background,
    "table": Surface,
    "wall": Wall,
    "lights": Light,
    "speckle": Speckle,
}


def _describe(exc: ValidationError) -> str:
    """The first validation error as `.field.path message, got VALUE`."""
    err = exc.errors()[0]
    loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"])
    kind, ctx, given = err["type"], err.get("ctx", {}), err.get("input")
    if kind == "extra_forbidden":
        parents = [p for p in err["loc"][:-1] if isinstance(p, str)]
        model = _SECTIONS.get(parents[-1] if parents else "", Background)
        return f"{loc} is not a known key; allowed: {', '.join(model.model_fields)}"
    if kind == "missing":
        return f"{loc} is missing"
    if kind == "literal_error":
        return f"{loc} must be one of {ctx.get('expected', '')}, got {given!r}"
    if kind == "value_error":
        return f"{loc} {err['msg'].removeprefix('Value error, ')}"
    if kind in _MESSAGES:
        return f"{loc} {_MESSAGES[kind].format(**ctx)}, got {given!r}"
    return f"{loc}: {err['msg'].lower()}, got {given!r}"


# ---------------------------------------------------------------------------- the held-out region


def _near(table: Surface, region: Surface) -> bool:
    """True when `table` is in the held-out region around `region` (see the module docstring)."""
    if table.pattern != region.pattern:
        return False
    if table.pattern == "image":
        return table.image == region.image
    a = np.array([table.rgb1, table.rgb2])
    b = np.array([region.rgb1, region.rgb2])
    straight = np.linalg.norm(a - b, axis=1).max()
    swapped = np.linalg.norm(a - b[::-1], axis=1).max()
    return bool(min(straight, swapped) <= HELD_OUT_RADIUS)


def is_held_out(look: Look, backgrounds: Backgrounds) -> bool:
    """Whether `look` shows a held-out background or lies in one's held-out region."""
    if look.held_out or look.name in backgrounds.held_out:
        return True
    return any(_near(look.table, backgrounds[name].table) for name in backgrounds.held_out)


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
        if not any(_near(table, region) for region in held):
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


# ---------------------------------------------------------------------------- pixels


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
