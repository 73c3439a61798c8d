"""OpenCV trackers (CSRT, KCF, MIL, MOSSE) behind the `Tracker` protocol, with a health check.

The paper tracks with MixFormer after the first detection because tracking survives occlusion by
the arm better than per-frame detection. OpenCV's trackers need no weights; their weakness is that
they report success while sitting on background: measured here, CSRT and KCF still say "found" on
the first updates after init when the target has vanished, and after a target jumps out of their
search window they stay put and keep saying "found". So every update is checked twice:
- geometry, against the last accepted box: a box that collapses, leaves the image, changes area by
  more than `max_area_ratio` or moves its centre by more than `max_jump` box diagonals is lost;
- appearance, against the colour histogram taken at `init`: a box whose hue-saturation histogram
  is less similar than `min_appearance` (1 - Bhattacharyya distance) is lost.
A lost track makes the pipeline re-detect instead of feeding the policy a wrong mask.

Measured on this machine (FINDINGS.md): CSRT update 22-30 ms, KCF 2.4-3 ms, MOSSE 0.1-0.4 ms.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from models._boxes import pixel_bounds, trackable
from models.tracking.base import TrackResult
from models.tracking.health import TrackHealth, bgr
from models.types import Box, ModelError

#: kind -> OpenCV class name suffix (cv2.Tracker<X>, cv2.legacy.Tracker<X>).
TRACKER_KINDS: dict[str, str] = {"csrt": "CSRT", "kcf": "KCF", "mil": "MIL", "mosse": "MOSSE"}


def _find_creator(kind: str) -> Callable[[], Any]:
    """The constructor for `kind`: OpenCV >= 4.5 `cv2.TrackerX.create`, else the legacy module."""
    suffix = TRACKER_KINDS[kind]
    cls = getattr(cv2, f"Tracker{suffix}", None)
    if cls is not None and hasattr(cls, "create"):
        return cls.create
    legacy = getattr(cv2, "legacy", None)
    create = getattr(legacy, f"Tracker{suffix}_create", None) if legacy is not None else None
    if create is None:
        raise ModelError(
            f"OpenCV {cv2.__version__} has no {suffix} tracker; install "
            "opencv-contrib-python-headless (not opencv-python, which shares the cv2 folder)"
        )
    return create


class OpenCVTracker:
    """Follows one box. On a lost update the result carries the last accepted box and ok=False.

    Every box OpenCV proposes goes through `TrackHealth` (geometry and appearance; see
    models.tracking.health): CSRT and KCF expose no confidence in Python, so that is the tracker's
    only confidence measure. The reference box does not advance on a lost update, so a tracker
    that stays on a distractor keeps failing the check until the pipeline re-detects.
    """

    def __init__(self, create: Callable[[], Any], health: TrackHealth) -> None:
        self._create = create
        self._health = health
        self._tracker: Any = None

    def init(self, image: np.ndarray, box: Box) -> None:
        """Start following `box` in `image` (RGB (H, W, 3) uint8); replaces any earlier target."""
        if not trackable(box, image.shape):
            raise ValueError(f"cannot track a box with no area inside the image: {box}")
        x0, y0, x1, y1 = pixel_bounds(box, image.shape)
        self._tracker = self._create()
        self._tracker.init(bgr(image), (x0, y0, x1 - x0, y1 - y0))
        self._health.reset(image, Box(float(x0), float(y0), float(x1), float(y1)))

    def update(self, image: np.ndarray) -> TrackResult:
        """Track into `image`; `ok` is False on OpenCV failure or an implausible box."""
        if self._tracker is None:
            raise RuntimeError("OpenCVTracker.update called before init")
        found, rect = self._tracker.update(bgr(image))
        if not found:
            return self._health.lost()
        x, y, w, h = (float(v) for v in rect)
        return self._health.check(image, Box(x, y, x + w, y + h))


class OpenCVTrackerFactory:
    """Makes `OpenCVTracker`s of one kind; checks at construction that OpenCV provides it.

    `min_appearance` in [0, 1): 0 turns the appearance check off. The default 0.35 was chosen on
    synthetic scenes (object vs table top well below it, the object itself well above); real
    scenes with objects coloured like the table need it lower, or a learned tracker.
    """

    def __init__(
        self,
        kind: str = "csrt",
        *,
        max_area_ratio: float = 4.0,
        max_jump: float = 0.5,
        min_appearance: float = 0.35,
    ) -> None:
        if kind not in TRACKER_KINDS:
            raise ValueError(
                f"unknown OpenCV tracker kind {kind!r}; allowed: {', '.join(TRACKER_KINDS)}"
            )
        self._health_args = {
            "max_area_ratio": max_area_ratio,
            "max_jump": max_jump,
            "min_appearance": min_appearance,
        }
        TrackHealth(**self._health_args)  # validates the parameters now, not at first use
        self.kind = kind
        self.name = f"opencv-{kind}"
        self.max_area_ratio = max_area_ratio
        self.max_jump = max_jump
        self.min_appearance = min_appearance
        self._create = _find_creator(kind)

    def __call__(self) -> OpenCVTracker:
        return OpenCVTracker(self._create, TrackHealth(**self._health_args))
