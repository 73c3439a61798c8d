"""Track health: one plausibility check that every tracker backend's proposals go through.

OpenCV's trackers report success while sitting on background, and a learned tracker such as
MixFormerV2 can be confident about a box that jumped to a distractor or collapsed under the arm.
So every update is judged by geometry (`box_health`: area change and centre jump against the last
accepted box) and by appearance (hue-saturation histogram against the one taken at init), and the
pipeline's re-detection triggers the same way whichever tracker is configured.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from models._boxes import MIN_SIDE_PX, clip_box, pixel_bounds
from models.tracking.base import TrackResult
from models.types import Box

#: Hue and saturation bins of the appearance histogram (coarse: robust to light and pose changes).
_HIST_BINS = [16, 8]


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


def _histogram(image_bgr: np.ndarray, box: Box) -> np.ndarray:
    """Normalised hue-saturation histogram of the pixels under `box`."""
    x0, y0, x1, y1 = pixel_bounds(box, image_bgr.shape)
    hsv = cv2.cvtColor(np.ascontiguousarray(image_bgr[y0:y1, x0:x1]), cv2.COLOR_BGR2HSV)
    hist = cv2.calcHist([hsv], [0, 1], None, _HIST_BINS, [0, 180, 0, 256])
    return cv2.normalize(hist, hist, 1.0, 0.0, cv2.NORM_L1)


def _similarity(a: np.ndarray, b: np.ndarray) -> float:
    """1 for identical colour distributions, 0 for disjoint ones."""
    return 1.0 - float(cv2.compareHist(a, b, cv2.HISTCMP_BHATTACHARYYA))


def bgr(image: np.ndarray) -> np.ndarray:
    """Frames are RGB; OpenCV's colour features (CSRT's colour names) assume BGR."""
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    return image


class TrackHealth:
    """Accepts or rejects a tracker's proposed box; remembers the last accepted one.

    `check` returns ok=False (and the last accepted box, score 0) when the proposal is
    implausible; otherwise score = min(model confidence, geometric health, appearance).
    Parameters mean what they mean for `OpenCVTrackerFactory`.
    """

    def __init__(
        self, *, max_area_ratio: float = 4.0, max_jump: float = 0.5, min_appearance: float = 0.35
    ) -> None:
        if max_area_ratio <= 1.0:
            raise ValueError(f"max_area_ratio must be > 1, got {max_area_ratio}")
        if max_jump <= 0.0:
            raise ValueError(f"max_jump must be > 0, got {max_jump}")
        if not 0.0 <= min_appearance < 1.0:
            raise ValueError(f"min_appearance must be in [0, 1), got {min_appearance}")
        self.max_area_ratio = max_area_ratio
        self.max_jump = max_jump
        self.min_appearance = min_appearance
        self._last: Box | None = None
        self._template: np.ndarray | None = None

    @property
    def last(self) -> Box:
        if self._last is None:
            raise RuntimeError("TrackHealth used before reset")
        return self._last

    def reset(self, image: np.ndarray, box: Box) -> None:
        """Start judging against `box` in the RGB `image` (the tracker's init frame)."""
        self._last = clip_box(box, image.shape)
        self._template = _histogram(bgr(image), self._last)

    def lost(self) -> TrackResult:
        """The result for an update the tracker itself gave up on."""
        return TrackResult(box=self.last, score=0.0, ok=False)

    def check(self, image: np.ndarray, candidate: Box, confidence: float = 1.0) -> TrackResult:
        """Judge `candidate` (pixel box in the RGB `image`) proposed with `confidence` in [0, 1]."""
        if self._template is None:
            raise RuntimeError("TrackHealth used before reset")
        candidate = clip_box(candidate, image.shape)
        score = min(
            confidence,
            box_health(
                self.last, candidate, max_area_ratio=self.max_area_ratio, max_jump=self.max_jump
            ),
        )
        if score > 0.0 and self.min_appearance > 0.0:
            appearance = _similarity(self._template, _histogram(bgr(image), candidate))
            score = min(score, appearance) if appearance >= self.min_appearance else 0.0
        if score <= 0.0:
            return self.lost()
        self._last = candidate
        return TrackResult(box=candidate, score=score, ok=True)
