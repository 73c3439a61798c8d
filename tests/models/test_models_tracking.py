"""Real OpenCV trackers on a synthetic textured patch: following, losing, and the health check."""

from __future__ import annotations

import numpy as np
import pytest

from models.tracking import TRACKER_KINDS, OpenCVTracker, OpenCVTrackerFactory, box_health
from models.types import Box
from tests.synthetic import SyntheticObject, render_scene, textured_background

BACKGROUND = textured_background(224, 224, seed=7)


def _frame(x: int, y: int, size: tuple[int, int] = (48, 40)) -> np.ndarray:
    patch = SyntheticObject("patch", (x, y, x + size[0], y + size[1]), (220, 60, 40))
    return render_scene([patch], background=BACKGROUND).rgb


@pytest.mark.parametrize("kind", ["csrt", "kcf", "mil", "mosse"])
def test_follows_a_moving_patch(kind: str) -> None:
    tracker = OpenCVTrackerFactory(kind)()
    tracker.init(_frame(30, 40), Box(30, 40, 78, 80))
    for step in range(1, 25):
        x, y = 30 + 4 * step, 40 + 2 * step
        result = tracker.update(_frame(x, y))
        assert result.ok, f"{kind} lost the patch at step {step}"
        assert result.box.iou(Box(x, y, x + 48, y + 40)) > 0.6
        assert 0.0 < result.score <= 1.0


def _warmed_up(kind: str, steps: int) -> tuple[OpenCVTracker, Box]:
    """A tracker that followed the patch for `steps` frames, and the patch's last box."""
    tracker = OpenCVTrackerFactory(kind)()
    tracker.init(_frame(20, 20), Box(20, 20, 68, 60))
    for step in range(1, steps + 1):
        assert tracker.update(_frame(20 + 2 * step, 20)).ok
    return tracker, Box(20 + 2 * steps, 20, 68 + 2 * steps, 60)


# Right after init CSRT and KCF themselves still report "found" on an empty frame; the appearance
# check is what catches it, so both fresh and warmed-up trackers are tested.
@pytest.mark.parametrize("steps", [0, 5])
@pytest.mark.parametrize("kind", ["csrt", "kcf"])
def test_reports_loss_when_the_target_disappears(kind: str, steps: int) -> None:
    tracker, last = _warmed_up(kind, steps)
    empty = render_scene([], background=BACKGROUND).rgb
    result = tracker.update(empty)
    assert not result.ok and result.score == 0.0
    assert result.box.iou(last) > 0.6  # the last accepted box, for the record
    assert not tracker.update(empty).ok


@pytest.mark.parametrize("steps", [0, 5])
@pytest.mark.parametrize("kind", ["csrt", "kcf"])
def test_reports_loss_when_the_target_jumps(kind: str, steps: int) -> None:
    tracker, _ = _warmed_up(kind, steps)
    assert not tracker.update(_frame(160, 170)).ok


def test_health_check() -> None:
    prev = Box(100, 100, 140, 140)
    assert box_health(prev, prev) == 1.0
    assert 0.0 < box_health(prev, Box(104, 100, 144, 140)) < 1.0
    assert box_health(prev, Box(100, 100, 110, 110)) == 0.0  # area / 16
    assert box_health(prev, Box(80, 80, 160, 160)) == 0.0  # area x 4: at the limit
    assert box_health(prev, Box(100, 100, 101, 140)) == 0.0  # degenerate
    diagonal = float(np.hypot(40, 40))
    assert box_health(prev, Box(100 + diagonal, 100, 140 + diagonal, 140)) == 0.0
    assert box_health(prev, Box(120, 100, 160, 140), max_jump=1.0) > 0.5


def test_factory_names_and_errors() -> None:
    assert OpenCVTrackerFactory("kcf").name == "opencv-kcf"
    with pytest.raises(ValueError, match="allowed: " + ", ".join(TRACKER_KINDS)):
        OpenCVTrackerFactory("goturn")
    with pytest.raises(RuntimeError, match="before init"):
        OpenCVTrackerFactory("kcf")().update(_frame(0, 0))
    with pytest.raises(ValueError, match="min_appearance"):
        OpenCVTrackerFactory("kcf", min_appearance=1.0)
    with pytest.raises(ValueError, match="no area"):
        OpenCVTrackerFactory("kcf")().init(_frame(0, 0), Box(300, 300, 320, 320))
