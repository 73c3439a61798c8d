"""Backgrounds: the file of looks the simulated world can show (table, wall, lights), read from
TOML and validated, and the settings of their per-episode randomisation.

The packaged file (`drivers/sim/data/backgrounds.toml`) holds the training looks ("train-0" ..
"train-2") and the held-out look ("new", `held_out = true`) that the `new_background` setting
shows. A user's file of the same schema replaces it (`load_backgrounds(path)`, `--backgrounds`);
every field is validated up front and a problem is one line naming the file, the entry and the
field, e.g. ``backgrounds.toml: [new].table.scale must be > 0, got -1``.

The held-out region of a held-out entry is every table with the same pattern (or the same image
file) whose colours each lie within `HELD_OUT_RADIUS` (RGB distance) of that entry's colours
(`in_held_out_region`). The loader refuses a file in which a training entry's table, or an image in
`textures`, falls in a held-out region; `drivers.sim.look` keeps the randomised looks out of it.

The entries' schema is `drivers.sim.scenery`; drawing a scene's look from an entry, `draw_look`,
is `drivers.sim.look`.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from drivers.sim.catalog import CatalogError
from drivers.sim.scenery import (
    PATTERNS,
    Background,
    FrozenModel,
    Light,
    Pattern,
    Speckle,
    Surface,
    Wall,
)

DEFAULT_BACKGROUNDS = Path(__file__).parent / "data" / "backgrounds.toml"
HELD_OUT_RADIUS = 0.25


class BackgroundsError(CatalogError):
    """The backgrounds file is missing, unreadable, or one of its entries is invalid.

    A `CatalogError` (the scene's other data file), so every caller that reports a bad object
    catalog in one line reports a bad backgrounds file the same way.
    """


# ---------------------------------------------------------------------------- randomisation

Range = tuple[float, float]


class Randomisation(FrozenModel):
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
            if in_held_out_region(looks[name].table, region):
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


def in_held_out_region(table: Surface, region: Surface) -> bool:
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
