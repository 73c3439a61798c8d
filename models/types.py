"""Data passed between the model roles. Plain, immutable and free of any heavy import.

Conventions: boxes are pixel coordinates `(x0, y0, x1, y1)` in the image they came from (x
right, y down, x1/y1 exclusive); masks are (H, W) bool arrays; positions are metres in the robot
base frame.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

import numpy as np


class ModelError(RuntimeError):
    """A model backend cannot run (missing checkpoint or extra, bad output); one clear line."""


class Skill(StrEnum):
    """What to do (the paper's skills; values are the config strings).

    The `place_*` skills pick an object and place it relative to another; `open_drawer` acts on
    one object, the drawer, and has no place target.
    """

    PLACE_NEAR = "place_near"
    PLACE_INSIDE = "place_inside"
    PLACE_ON = "place_on"
    OPEN_DRAWER = "open_drawer"


#: The place target that means "near the person who asked" (the paper's "place it near the
#: user"); the one spelling for every model. The simulated world names its user figure the same
#: (`drivers.sim.catalog.USER_NAME`: drivers may not import models, so a test keeps the two equal).
USER = "user"


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """A request turned into targets: pick `pick`, then place it relative to `place` per `skill`.

    For `Skill.OPEN_DRAWER`, `pick` names the drawer to open and `place` is None.
    `pick is None` means nothing in view satisfies the request; the runtime stops and says so.
    The descriptions add shape and colour words for open-vocabulary detectors.
    """

    request: str
    skill: Skill
    pick: str | None
    place: str | None
    rationale: str = ""
    pick_description: str = ""
    place_description: str = ""

    @property
    def feasible(self) -> bool:
        """Something to act on, and a place target unless the skill needs none."""
        return self.pick is not None and (self.place is not None or self.skill is Skill.OPEN_DRAWER)


@dataclass(frozen=True, slots=True)
class Box:
    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def width(self) -> float:
        return max(0.0, self.x1 - self.x0)

    @property
    def height(self) -> float:
        return max(0.0, self.y1 - self.y0)

    @property
    def area(self) -> float:
        return self.width * self.height

    def iou(self, other: Box) -> float:
        ix = max(0.0, min(self.x1, other.x1) - max(self.x0, other.x0))
        iy = max(0.0, min(self.y1, other.y1) - max(self.y0, other.y0))
        inter = ix * iy
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.x0, self.y0, self.x1, self.y1)


@dataclass(frozen=True, slots=True)
class Detection:
    """The best box for one requested phrase; `label` is the phrase as requested."""

    label: str
    box: Box
    score: float


class GroundTruth(Protocol):
    """Simulator truth carried by a frame (structurally: `drivers.base.Frame` satisfies it)."""

    @property
    def segmentation(self) -> np.ndarray | None: ...

    @property
    def labels(self) -> Mapping[str, int] | None: ...


@dataclass(frozen=True, slots=True)
class Observation:
    """What a policy sees at one step: per view RGB and role-coded mask, plus proprioception.

    `masks[view]` is float32 (H, W): 0 background, `PICK_MASK_VALUE` on the object to pick,
    `PLACE_MASK_VALUE` on the place target (the paper conditions skills through mask values).
    `proprio` is [x, y, z, gripper_closed] in metres / {0, 1}. `gripper_width`: the fingers'
    measured gap (m) where the robot reports one; no policy input, read by the runtime's grasp
    retry (agent.grasp_retry).
    """

    images: Mapping[str, np.ndarray]
    masks: Mapping[str, np.ndarray]
    proprio: np.ndarray
    t_capture: float = 0.0
    gripper_width: float | None = None


PICK_MASK_VALUE = 1.0
PLACE_MASK_VALUE = 0.5  # the place target of `place_near`; other skills: `MASK_CODING`
ROLES = ("place", "pick")


@dataclass(frozen=True)
class MaskCoding:
    """The value each role's pixels take in a policy's mask input, per skill.

    The paper conditions one multi-task policy on the skill through the mask values ("assigning
    different values to object masks for different manipulation skills"): the place target of
    "next to" looks different from that of "inside" or "on top of", and the drawer to open has
    its own value. Perception paints masks with one coding (`MASK_CODING`), collection records
    them, training decodes them and export stores the coding in the ONNX file, so a policy read
    with another coding than it was trained with is caught at load instead of acting blindly.

    `place` maps every `place_*` skill value to its place target's value; `drawer` is the value
    of the object `open_drawer` acts on (its pick role); every other pick is `pick`.
    """

    pick: float
    place: Mapping[str, float]
    drawer: float

    def value(self, role: str, skill: Skill | str) -> float:
        """The mask value of `role` ("pick" or "place") for a task of `skill`."""
        skill = Skill(skill)
        if role == "pick":
            return self.drawer if skill is Skill.OPEN_DRAWER else self.pick
        if role != "place" or skill.value not in self.place:
            raise ValueError(f"no mask value for the {role!r} role of a {skill.value} task")
        return self.place[skill.value]

    def recode(self, mask: np.ndarray, skill: Skill | str, to: MaskCoding) -> np.ndarray:
        """`mask` (painted with this coding for a `skill` task) as `to` paints it."""
        if to == self:
            return mask
        out = np.zeros_like(mask)
        skill = Skill(skill)
        roles = ["pick"] if skill is Skill.OPEN_DRAWER else list(ROLES)
        for role in roles:
            out[mask == self.value(role, skill)] = to.value(role, skill)
        return out

    def to_json(self) -> str:
        """The coding as the ONNX metadata stores it (sorted keys: equal codings, equal text)."""
        data = {"pick": self.pick, "place": dict(self.place), "drawer": self.drawer}
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> MaskCoding:
        """Parse `to_json`'s text; ValueError (one line) when it is not a mask coding."""
        try:
            data = json.loads(text)
            coding = cls(
                pick=float(data["pick"]),
                place={str(k): float(v) for k, v in dict(data["place"]).items()},
                drawer=float(data["drawer"]),
            )
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ValueError(f"not a mask coding ({type(exc).__name__}: {exc})") from None
        return coding

    def describe(self) -> str:
        """One line: "pick 1, drawer 0.875, place_inside 0.25, ..."."""
        parts = [f"pick {self.pick:g}", f"drawer {self.drawer:g}"]
        parts += [f"{skill} {value:g}" for skill, value in sorted(self.place.items())]
        return ", ".join(parts)


#: The coding perception paints, collection records, training decodes and export stores.
MASK_CODING = MaskCoding(
    pick=PICK_MASK_VALUE,
    place={
        Skill.PLACE_NEAR.value: PLACE_MASK_VALUE,
        Skill.PLACE_INSIDE.value: 0.25,
        Skill.PLACE_ON.value: 0.75,
    },
    drawer=0.875,
)
#: The coding before masks carried the skill (one place value for every skill): what a policy
#: file without a `mask_coding` entry (the shipped `policies/tpm_cpu.onnx`) was trained with.
LEGACY_MASK_CODING = MaskCoding(
    pick=PICK_MASK_VALUE,
    place={skill: PLACE_MASK_VALUE for skill in MASK_CODING.place},
    drawer=PICK_MASK_VALUE,
)


@dataclass(frozen=True, slots=True)
class Action:
    """The next end-effector move (m, base frame) and gripper state; `done`: the policy is done."""

    move: np.ndarray  # (3,)
    gripper_closed: bool
    done: bool = False
    info: Mapping[str, float] = field(default_factory=dict)


class ActionLike(Protocol):
    """What the runtime reads of an action: `Action`, or any object with the same fields (the
    sim's scripted expert returns its own record, since drivers never import models)."""

    @property
    def move(self) -> np.ndarray: ...
    @property
    def gripper_closed(self) -> bool: ...
    @property
    def done(self) -> bool: ...
    @property
    def info(self) -> Mapping[str, float]: ...
