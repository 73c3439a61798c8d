"""Object catalog: the things the simulated world can put on the table, read from a TOML file.

The packaged file (`drivers/sim/data/objects.toml`) holds "seen" objects (used for training) and
"unseen" ones (held out, as in the paper's generalisation tests). A user may replace it with their
own file of the same schema (`load_catalog(path)`); every field is validated up front, so a typo
fails with the file and the entry named instead of as a physics glitch minutes later.

Sizes are full extents in metres in the object's own frame: x points away from the robot and y is
the axis along which the (fixed-orientation) gripper closes, so a pickable object must be narrow
along y. The user stand-in ("user") is not in the file: it is always part of a scene
(`USER`), as a place target only.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Family = Literal["box", "cylinder", "sphere", "ellipsoid", "flat", "figure"]
Split = Literal["seen", "unseen"]

FAMILIES: tuple[str, ...] = ("box", "cylinder", "sphere", "ellipsoid", "flat")
SPLITS: tuple[str, ...] = ("seen", "unseen")
DEFAULT_CATALOG = Path(__file__).parent / "data" / "objects.toml"

#: The user figure's name: the reasoners' place target `models.types.USER` (drivers may not
#: import models; tests/agent/test_import_rules.py keeps the two spellings equal).
USER_NAME = "user"

# The FR3 hand opens to 8 cm; leave room for the pads and for approach error.
MAX_GRASP_WIDTH = 0.065
MIN_GRASP_WIDTH = 0.015
# Fingertip pads are ~1.7 cm tall: anything lower cannot be pinched above the table.
MIN_PICK_HEIGHT = 0.02
MAX_PICK_MASS = 0.5
MAX_EXTENT = 0.3

_SIZE_ARITY: dict[str, tuple[int, ...]] = {
    "box": (3,),
    "ellipsoid": (3,),
    "cylinder": (2,),
    "sphere": (1,),
    "flat": (2, 3),
}
_FIELDS = frozenset(
    {
        "name",
        "split",
        "family",
        "size",
        "rgb",
        "mass",
        "description",
        "pickable",
        "container",
        "surface",
    }
)


class CatalogError(ValueError):
    """The catalog file is missing, unreadable, or one of its entries is invalid."""


@dataclass(frozen=True, slots=True)
class ObjectSpec:
    """One catalog entry. `size` follows the per-family convention of the catalog file."""

    name: str
    split: Split
    family: Family
    size: tuple[float, ...]
    rgb: tuple[float, float, float]
    mass: float
    description: str
    pickable: bool = True
    container: bool = False
    surface: bool = False

    @property
    def is_disc(self) -> bool:
        """Round footprint (cylinder, sphere, flat disc, the user figure)."""
        return self.family in ("cylinder", "sphere", "figure") or (
            self.family == "flat" and len(self.size) == 2
        )

    @property
    def extents(self) -> tuple[float, float, float]:
        """Full (x, y, z) extents of the axis-aligned bounding box, metres."""
        s = self.size
        if self.family == "sphere":
            return (s[0], s[0], s[0])
        if len(s) == 2:  # cylinder, flat disc, figure: [diameter, height]
            return (s[0], s[0], s[1])
        return (s[0], s[1], s[2])

    @property
    def height(self) -> float:
        return self.extents[2]

    @property
    def grasp_width(self) -> float:
        """Extent along the gripper's closing axis (y)."""
        return self.extents[1]

    @property
    def footprint_radius(self) -> float:
        """Radius of a circle around the footprint: used to keep objects apart when placing."""
        x, y, _ = self.extents
        return 0.5 * (x if self.is_disc else math.hypot(x, y))


USER = ObjectSpec(
    name=USER_NAME,
    split="seen",
    family="figure",
    size=(0.06, 0.16),
    rgb=(0.2, 0.35, 0.8),
    mass=1.0,
    description="a small figure of a person with a blue body and a round head",
    pickable=False,
)


@dataclass(frozen=True, slots=True)
class Catalog:
    """All objects of one file, by name, with the split views the scene builder draws from."""

    objects: Mapping[str, ObjectSpec]
    source: Path

    def __contains__(self, name: object) -> bool:
        return name in self.objects or name == USER_NAME

    def __iter__(self) -> Iterator[ObjectSpec]:
        return iter(self.objects.values())

    def __len__(self) -> int:
        return len(self.objects)

    def get(self, name: str) -> ObjectSpec:
        """The entry called `name` (the user figure included); CatalogError lists known names."""
        if name == USER_NAME:
            return USER
        try:
            return self.objects[name]
        except KeyError:
            raise CatalogError(
                f"no object {name!r} in {self.source}; known: {', '.join(sorted(self.objects))}"
            ) from None

    def split(self, split: Split) -> list[ObjectSpec]:
        return [o for o in self.objects.values() if o.split == split]


def load_catalog(path: str | Path | None = None) -> Catalog:
    """Read and validate a catalog file (the packaged one when `path` is None)."""
    source = Path(path) if path is not None else DEFAULT_CATALOG
    try:
        raw = tomllib.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CatalogError(f"{source}: object catalog not found") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CatalogError(f"{source}: cannot read object catalog: {exc}") from None
    entries = raw.get("object")
    if not isinstance(entries, list) or not entries:
        raise CatalogError(f"{source}: expected one or more [[object]] tables")
    objects: dict[str, ObjectSpec] = {}
    for index, entry in enumerate(entries):
        spec = _parse_entry(entry, f"{source}: object #{index + 1}")
        if spec.name in objects or spec.name == USER_NAME:
            raise CatalogError(f"{source}: object #{index + 1} ({spec.name!r}): duplicate name")
        objects[spec.name] = spec
    return Catalog(objects=objects, source=source)


def _parse_entry(entry: Any, where: str) -> ObjectSpec:
    if not isinstance(entry, dict):
        raise CatalogError(f"{where}: expected a table")
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        raise CatalogError(f"{where}: field 'name' must be a non-empty string")
    where = f"{where} ({name!r})"

    def fail(field: str, why: str) -> CatalogError:
        return CatalogError(f"{where}: field {field!r} {why}")

    unknown = set(entry) - _FIELDS
    if unknown:
        raise CatalogError(
            f"{where}: unknown field(s) {sorted(unknown)}; allowed {sorted(_FIELDS)}"
        )
    for field in ("split", "family", "size", "rgb", "mass", "description"):
        if field not in entry:
            raise fail(field, "is missing")

    split = entry["split"]
    if split not in SPLITS:
        raise fail("split", f"must be one of {SPLITS}, got {split!r}")
    family = entry["family"]
    if family not in FAMILIES:
        raise fail("family", f"must be one of {FAMILIES}, got {family!r}")
    size = _floats(entry["size"], fail("size", "must be a list of positive numbers (metres)"))
    if len(size) not in _SIZE_ARITY[family] or any(not 0.005 <= v <= MAX_EXTENT for v in size):
        raise fail(
            "size",
            f"for family {family!r} must have {' or '.join(map(str, _SIZE_ARITY[family]))} "
            f"values in 0.005..{MAX_EXTENT} m, got {entry['size']!r}",
        )
    rgb = _floats(entry["rgb"], fail("rgb", "must be three numbers in 0..1"))
    if len(rgb) != 3 or any(not 0.0 <= v <= 1.0 for v in rgb):
        raise fail("rgb", f"must be three numbers in 0..1, got {entry['rgb']!r}")
    mass = entry["mass"]
    if isinstance(mass, bool) or not isinstance(mass, int | float) or not 0.0 < mass <= 5.0:
        raise fail("mass", f"must be a number in (0, 5] kg, got {mass!r}")
    description = entry["description"]
    if not isinstance(description, str) or not description.strip():
        raise fail("description", "must be a non-empty string")
    flags = {}
    for field, default in (("pickable", True), ("container", False), ("surface", False)):
        value = entry.get(field, default)
        if not isinstance(value, bool):
            raise fail(field, f"must be true or false, got {value!r}")
        flags[field] = value

    spec = ObjectSpec(
        name=name.strip(),
        split=split,
        family=family,
        size=size,
        rgb=(rgb[0], rgb[1], rgb[2]),
        mass=float(mass),
        description=description.strip(),
        **flags,
    )
    if spec.pickable:
        if spec.container:
            raise fail("pickable", "cannot be true for a container")
        if not MIN_GRASP_WIDTH <= spec.grasp_width <= MAX_GRASP_WIDTH:
            raise fail(
                "size",
                f"of a pickable object must be {MIN_GRASP_WIDTH}..{MAX_GRASP_WIDTH} m along the "
                f"grasp axis (y), got {spec.grasp_width:.3f}; set pickable = false for place-only",
            )
        if spec.height < MIN_PICK_HEIGHT:
            raise fail("size", f"of a pickable object must be at least {MIN_PICK_HEIGHT} m tall")
        if spec.mass > MAX_PICK_MASS:
            raise fail("mass", f"of a pickable object must be at most {MAX_PICK_MASS} kg")
    if spec.container and spec.family not in ("box", "cylinder"):
        raise fail("container", "is only supported for families 'box' and 'cylinder'")
    return spec


def _floats(value: Any, error: CatalogError) -> tuple[float, ...]:
    if not isinstance(value, list) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in value
    ):
        raise error
    return tuple(float(v) for v in value)
