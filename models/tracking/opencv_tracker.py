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

import math
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from models._boxes import clip_box, pixel_bounds
from models.tracking.base import TrackResult
from models.types import Box, ModelError

#: kind -> OpenCV class name suffix (cv2.Tracker<X>, cv2.legacy.Tracker<X>).
TRACKER_KINDS: dict[str, str] = {"csrt": "CSRT", "kcf": "KCF", "mil": "MIL", "mosse": "MOSSE"}

#: Smallest accepted box side in pixels; below it a tracker has nothing left to follow.
MIN_SIDE_PX = 2.0

#: Hue and saturation bins of the appearance histogram (coarse: robust to light and pose changes).
_HIST_BINS = [16, 8]


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


def box_health(
    previous: Box, candidate: Box, *, max_area_ratio: float = 4.0, max_jump: float = 0.5
) -> float:
    """A plausibility score in [0, 1] for moving from `previous` to `candidate` in one frame.

    1 means same size and place; it falls linearly in the worse of two normalised changes and is
    0 at (or past) either limit: |log(area ratio)| / log(max_area_ratio), and centre displacement
    / (max_jump * previous diagonal). A box with a side under MIN_SIDE_PX scores 0. This is a
    stability measure, not a calibrated probability: CSRT and KCF expose no confidence in Python.
    """
    if candidate.width < MIN_SIDE_PX or candidate.height < MIN_SIDE_PX or previous.area <= 0:
        return 0.0
    area_change = abs(math.log(candidate.area / previous.area)) / math.log(max_area_ratio)
    jump = math.hypot(
        (candidate.x0 + candidate.x1 - previous.x0 - previous.x1) / 2,
        (candidate.y0 + candidate.y1 - previous.y0 - previous.y1) / 2,
    ) / (max_jump * math.hypot(previous.width, previous.height))
    return max(0.0, 1.0 - max(area_change, jump))


def _histogram(bgr: np.ndarray, box: Box) -> np.ndarray:
    """Normalised hue-saturation histogram of the pixels under `box`."""
    x0, y0, x1, y1 = pixel_bounds(box, bgr.shape)
    hsv = cv2.cvtColor(np.ascontiguousarray(bgr[y0:y1, x0:x1]), cv2.COLOR_BGR2HSV)
    hist = cv2.calcHist([hsv], [0, 1], None, _HIST_BINS, [0, 180, 0, 256])
    return cv2.normalize(hist, hist, 1.0, 0.0, cv2.NORM_L1)


def _similarity(a: np.ndarray, b: np.ndarray) -> float:
    """1 for identical colour distributions, 0 for disjoint ones."""
    return 1.0 - float(cv2.compareHist(a, b, cv2.HISTCMP_BHATTACHARYYA))


class OpenCVTracker:
    """Follows one box. On a lost update the result carries the last accepted box and ok=False.

    `score` is min(geometric health (`box_health`), appearance similarity to the init box): CSRT
    and KCF expose no confidence in Python, so this is the tracker's only confidence measure.
    The reference box does not advance on a lost update, so a tracker that stays on a distractor
    keeps failing the check until the pipeline re-detects and calls `init` again.
    """

    def __init__(
        self,
        create: Callable[[], Any],
        *,
        max_area_ratio: float,
        max_jump: float,
        min_appearance: float,
    ) -> None:
        self._create = create
        self._max_area_ratio = max_area_ratio
        self._max_jump = max_jump
        self._min_appearance = min_appearance
        self._tracker: Any = None
        self._last: Box | None = None
        self._template: np.ndarray | None = None

    def init(self, image: np.ndarray, box: Box) -> None:
        """Start following `box` in `image` (RGB (H, W, 3) uint8); replaces any earlier target."""
        x0, y0, x1, y1 = pixel_bounds(box, image.shape)
        if x1 - x0 < MIN_SIDE_PX or y1 - y0 < MIN_SIDE_PX:
            raise ValueError(f"cannot track a box with no area inside the image: {box}")
        bgr = _bgr(image)
        self._tracker = self._create()
        self._tracker.init(bgr, (x0, y0, x1 - x0, y1 - y0))
        self._last = Box(float(x0), float(y0), float(x1), float(y1))
        self._template = _histogram(bgr, self._last)

    def update(self, image: np.ndarray) -> TrackResult:
        """Track into `image`; `ok` is False on OpenCV failure or an implausible box."""
        if self._tracker is None or self._last is None or self._template is None:
            raise RuntimeError("OpenCVTracker.update called before init")
        bgr = _bgr(image)
        found, rect = self._tracker.update(bgr)
        if not found:
            return TrackResult(box=self._last, score=0.0, ok=False)
        x, y, w, h = (float(v) for v in rect)
        candidate = clip_box(Box(x, y, x + w, y + h), image.shape)
        score = box_health(
            self._last, candidate, max_area_ratio=self._max_area_ratio, max_jump=self._max_jump
        )
        if score > 0.0 and self._min_appearance > 0.0:
            appearance = _similarity(self._template, _histogram(bgr, candidate))
            score = min(score, appearance) if appearance >= self._min_appearance else 0.0
        if score <= 0.0:
            return TrackResult(box=self._last, score=0.0, ok=False)
        self._last = candidate
        return TrackResult(box=candidate, score=score, ok=True)


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
        if max_area_ratio <= 1.0:
            raise ValueError(f"max_area_ratio must be > 1, got {max_area_ratio}")
        if max_jump <= 0.0:
            raise ValueError(f"max_jump must be > 0, got {max_jump}")
        if not 0.0 <= min_appearance < 1.0:
            raise ValueError(f"min_appearance must be in [0, 1), got {min_appearance}")
        self.kind = kind
        self.name = f"opencv-{kind}"
        self.max_area_ratio = max_area_ratio
        self.max_jump = max_jump
        self.min_appearance = min_appearance
        self._create = _find_creator(kind)

    def __call__(self) -> OpenCVTracker:
        return OpenCVTracker(
            self._create,
            max_area_ratio=self.max_area_ratio,
            max_jump=self.max_jump,
            min_appearance=self.min_appearance,
        )


def _bgr(image: np.ndarray) -> np.ndarray:
    """Frames are RGB; OpenCV's colour features (CSRT's colour names) assume BGR."""
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    return image
