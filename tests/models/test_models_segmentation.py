"""Ground-truth detection and the three segmenters, on synthetic frames with exact truth."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.detection import GroundTruthDetector
from models.segmentation import BoxSegmenter, GrabCutSegmenter, GroundTruthSegmenter
from models.types import Box, ModelError
from tests.synthetic import SyntheticFrame, SyntheticObject, render_scene, textured_background


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


@pytest.fixture(scope="module")
def scene() -> SyntheticFrame:
    return render_scene(
        [
            SyntheticObject("Apple", (30, 40, 70, 90), (200, 30, 30), shape="ellipse"),
            SyntheticObject("bowl", (120, 100, 200, 160), (40, 60, 200)),
            SyntheticObject("crumb", (10, 10, 13, 13), (250, 250, 0)),  # 9 px
        ]
    )


def test_detector_boxes_are_exact_with_exclusive_max(scene: SyntheticFrame) -> None:
    detections = GroundTruthDetector().detect(scene.rgb, ["bowl", "apple"], truth=scene)
    assert [d.label for d in detections] == ["bowl", "apple"]
    assert detections[0].box == Box(120, 100, 200, 160)
    assert detections[1].box == Box(30, 40, 70, 90)
    assert all(d.score == 1.0 for d in detections)


def test_detector_leaves_out_missing_and_tiny_objects(scene: SyntheticFrame) -> None:
    detector = GroundTruthDetector(min_pixels=10)
    assert [d.label for d in detector.detect(scene.rgb, ["sponge", "crumb", "bowl"], scene)] == [
        "bowl"
    ]
    assert [d.label for d in GroundTruthDetector(min_pixels=9).detect(scene.rgb, ["crumb"], scene)]


@pytest.mark.parametrize("truth", [None, SimpleNamespace(segmentation=None, labels=None)])
def test_ground_truth_backends_refuse_real_frames(truth: Any) -> None:
    image = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(ModelError, match="ground_truth detection needs simulator frames"):
        GroundTruthDetector().detect(image, ["apple"], truth=truth)
    with pytest.raises(ModelError, match="ground_truth segmentation needs simulator frames"):
        GroundTruthSegmenter().segment(image, [Box(0, 0, 2, 2)], ["apple"], truth=truth)


@settings(max_examples=40, deadline=None)
@given(
    x0=st.integers(-10, 60),
    y0=st.integers(-10, 40),
    width=st.integers(1, 40),
    height=st.integers(1, 30),
)
def test_detector_box_matches_pixels(x0: int, y0: int, width: int, height: int) -> None:
    frame = render_scene(
        [SyntheticObject("thing", (x0, y0, x0 + width, y0 + height), (0, 200, 0), texture=False)],
        size=(48, 64),
    )
    detections = GroundTruthDetector(min_pixels=1).detect(frame.rgb, ["thing"], frame)
    visible = frame.segmentation == 1
    if not visible.any():
        assert detections == []
        return
    (detection,) = detections
    x0c, y0c = max(x0, 0), max(y0, 0)
    assert detection.box == Box(x0c, y0c, min(x0 + width, 64), min(y0 + height, 48))
    assert GroundTruthSegmenter().segment(frame.rgb, [detection.box], ["thing"], frame)[
        0
    ].sum() == (visible.sum())


def test_ground_truth_segmenter_cuts_to_the_box(scene: SyntheticFrame) -> None:
    half = Box(120, 100, 160, 160)
    bowl, apple = GroundTruthSegmenter().segment(
        scene.rgb, [half, Box(0, 0, 224, 224)], ["bowl", "APPLE"], scene
    )
    assert bowl.dtype == bool and bowl.shape == (224, 224)
    assert bowl.sum() == 40 * 60 and bowl[100:160, 120:160].all()
    np.testing.assert_array_equal(apple, scene.segmentation == scene.labels["Apple"])


def test_ground_truth_segmenter_needs_known_labels(scene: SyntheticFrame) -> None:
    segmenter = GroundTruthSegmenter()
    with pytest.raises(ModelError, match="one object name per box"):
        segmenter.segment(scene.rgb, [Box(0, 0, 5, 5)], None, scene)
    with pytest.raises(ModelError, match="'sponge'"):
        segmenter.segment(scene.rgb, [Box(0, 0, 5, 5)], ["sponge"], scene)


def test_box_segmenter_fills_the_box_clipped() -> None:
    image = np.zeros((20, 30, 3), np.uint8)
    (inside, outside) = BoxSegmenter().segment(image, [Box(2.5, 3, 10, 8), Box(25, 15, 40, 40)])
    assert inside.sum() == 8 * 5 and inside[3:8, 2:10].all()
    assert outside.sum() == 5 * 5


@pytest.mark.parametrize("shape", ["rect", "ellipse"])
def test_grabcut_finds_the_object_inside_a_loose_box(shape: str) -> None:
    obj = SyntheticObject("mug", (60, 70, 150, 140), (210, 60, 40), shape=shape)
    frame = render_scene([obj], background=textured_background(224, 224, seed=3))
    loose = Box(50, 62, 162, 150)
    (mask,) = GrabCutSegmenter().segment(frame.rgb, [loose])
    truth = frame.segmentation == 1
    assert _iou(mask, truth) > 0.7
    assert _iou(mask, BoxSegmenter().segment(frame.rgb, [loose])[0]) < _iou(mask, truth)


def test_grabcut_falls_back_to_the_box() -> None:
    flat = np.full((64, 64, 3), 128, np.uint8)
    segmenter = GrabCutSegmenter(iterations=1)
    for box in (Box(10, 10, 30, 30), Box(0, 0, 64, 64), Box(5, 5, 6, 6)):
        (mask,) = segmenter.segment(flat, [box])
        np.testing.assert_array_equal(mask, BoxSegmenter().segment(flat, [box])[0])


def test_grabcut_rejects_non_rgb_images() -> None:
    with pytest.raises(ModelError, match="uint8"):
        GrabCutSegmenter().segment(np.zeros((8, 8), np.float32), [Box(1, 1, 4, 4)])
