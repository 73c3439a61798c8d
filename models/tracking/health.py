"""Track health for learned trackers: the OpenCV tracker's checks, reused as one object.

A learned tracker such as MixFormerV2 reports a confidence, but a confident box can still jump to
a distractor or collapse when the arm covers the object. The OpenCV backend already judges every
update by geometry (`box_health`: area change and centre jump against the last accepted box) and
by appearance (hue-saturation histogram against the one taken at init); `TrackHealth` wraps those
same functions, so every tracker backend is held to the same rules and the pipeline's
re-detection triggers the same way whichever tracker is configured.
"""

from __future__ import annotations

import numpy as np

from models._boxes import clip_box
from models.tracking.base import TrackResult
from models.tracking.opencv_tracker import _bgr, _histogram, _similarity, box_health
from models.types import Box


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
        self._template = _histogram(_bgr(image), self._last)

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
            appearance = _similarity(self._template, _histogram(_bgr(image), candidate))
            score = min(score, appearance) if appearance >= self.min_appearance else 0.0
        if score <= 0.0:
            return self.lost()
        self._last = candidate
        return TrackResult(box=candidate, score=score, ok=True)
