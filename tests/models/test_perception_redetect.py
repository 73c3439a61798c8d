"""Re-detection back-off and re-detection beside the loop (issue 15), with the real simulator
ground-truth detector and real KCF trackers on synthetic views where the apple hides and returns.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from contextlib import closing
from typing import Any

import numpy as np
import pytest

from models.detection import GroundTruthDetector
from models.perception import PerceptionPipeline
from models.segmentation import GroundTruthSegmenter
from models.tracking import OpenCVTrackerFactory
from models.types import PICK_MASK_VALUE, Box, Detection, GroundTruth, ModelError
from tests.models.test_models_perception import BACKGROUNDS, LAYOUT, TASK, _true_box
from tests.synthetic import SyntheticFrame, SyntheticObject, render_scene

HIDDEN = (300, 300, 340, 340)  # off the 224 x 224 image
BACK = (150, 20, 190, 60)  # where the apple comes back in the front view, far from where it was


def _frames(
    step: int,
    front_apple: tuple[int, int, int, int] | None = None,
    side_apple: tuple[int, int, int, int] | None = None,
) -> dict[str, Any]:
    """Both views at `step` (t_capture = step, + 0.5 in the side view): each apple moves as in
    LAYOUT unless placed (`front_apple`, `side_apple`)."""
    frames = {}
    placed = {"front": front_apple, "side": side_apple}
    for view, layout in LAYOUT.items():
        dx, dy = layout["move"]
        x0, y0, x1, y1 = layout["apple"]
        apple = placed[view] or (x0 + dx * step, y0 + dy * step, x1 + dx * step, y1 + dy * step)
        objects = [
            SyntheticObject("bowl", layout["bowl"], (40, 70, 210)),
            SyntheticObject("apple", apple, (210, 40, 30), shape="ellipse"),
        ]
        t = step + (0.5 if view == "side" else 0.0)
        frames[view] = render_scene(objects, background=BACKGROUNDS[view], t_capture=t)
    return frames


class RecordingDetector:
    """The real ground-truth detector, recording the frames it ran on as (step, view)."""

    name = "recording"

    def __init__(self) -> None:
        self.inner = GroundTruthDetector()
        self.ran: list[tuple[int, str]] = []

    def detect(
        self, image: np.ndarray, phrases: Sequence[str], truth: GroundTruth | None = None
    ) -> list[Detection]:
        assert isinstance(truth, SyntheticFrame)
        step = int(truth.t_capture)
        self.ran.append((step, "front" if truth.t_capture == step else "side"))
        return self.inner.detect(image, phrases, truth)

    def front_steps(self) -> list[int]:
        return [step for step, view in self.ran if view == "front"]


class GatedDetector(RecordingDetector):
    """Every call after the first `free` waits until the test lets it finish."""

    def __init__(self, free: int = 2) -> None:
        super().__init__()
        self.free = free
        self.started = threading.Semaphore(0)
        self.gate = threading.Semaphore(0)
        self.done = threading.Semaphore(0)
        self.threads: set[str] = set()
        self.error: Exception | None = None

    def detect(
        self, image: np.ndarray, phrases: Sequence[str], truth: GroundTruth | None = None
    ) -> list[Detection]:
        gated = len(self.ran) >= self.free
        found = super().detect(image, phrases, truth)
        if gated:
            self.threads.add(threading.current_thread().name)
            self.started.release()
            assert self.gate.acquire(timeout=20), "the test never let the call finish"
            self.done.release()
            if self.error is not None:
                raise self.error
        return found

    def wait_started(self) -> None:
        assert self.started.acquire(timeout=20), "no gated call started"

    def finish(self, pipeline: PerceptionPipeline, calls: int = 1) -> None:
        """Let `calls` gated calls finish, then wait until the pipeline's job is done."""
        for _ in range(calls):
            self.gate.release()
            assert self.done.acquire(timeout=20)
        deadline = time.monotonic() + 20
        while pipeline._pending is not None and not pipeline._pending.done():
            assert time.monotonic() < deadline, "the background job never ended"
            time.sleep(0.001)


def _pipeline(
    detector: RecordingDetector, tracker: str = "kcf", **options: Any
) -> PerceptionPipeline:
    return PerceptionPipeline(
        detector, OpenCVTrackerFactory(tracker), GroundTruthSegmenter(), **options
    )


def _start(pipeline: PerceptionPipeline, **placed: Any) -> Any:
    return pipeline.start(TASK, _frames(0, **placed))


def test_back_off_doubles_the_wait_up_to_the_cap_and_resets_when_found() -> None:
    detector = RecordingDetector()
    pipeline = _pipeline(detector, redetect_in_background=False, redetect_max_interval=8)
    _start(pipeline)
    assert detector.ran == [(0, "front"), (0, "side")]
    for step in range(1, 30):  # the apple is gone from the front view at step 1, back at 27
        frames = _frames(step, HIDDEN if step < 27 else BACK)
        percept = pipeline.step(frames)
        assert percept.timings_ms["detect"] == 0.0 or step in (1, 2, 4, 8, 16, 24)
        if step < 27:
            assert percept.boxes["front"]["pick"] is None and percept.lost["front"]["pick"] == step
            assert not (percept.masks["front"] == PICK_MASK_VALUE).any()
        else:  # back, but the next try is due at lost frame 32 (gaps 1, 2, 4, 8, 8, 8)
            assert percept.boxes["front"]["pick"] is None
        # the other targets are tracked all along, and never re-detected
        assert percept.lost["side"] == {"pick": 0, "place": 0}
        assert percept.lost["front"]["place"] == 0
    assert detector.front_steps() == [0, 1, 2, 4, 8, 16, 24]
    assert {view for _, view in detector.ran} == {"front", "side"}
    assert [s for s, v in detector.ran if v == "side"] == [0]
    assert percept.redetections == 6
    percept = pipeline.step(_frames(30, BACK))  # lost frame 30: still waiting
    assert detector.front_steps()[-1] == 24
    percept = pipeline.step(_frames(31, BACK))  # lost frame 31: still waiting
    assert detector.front_steps()[-1] == 24 and percept.lost["front"]["pick"] == 31
    frames = _frames(32, BACK)
    percept = pipeline.step(frames)  # the scheduled try finds it
    assert detector.front_steps() == [0, 1, 2, 4, 8, 16, 24, 32]
    assert percept.boxes["front"]["pick"] == _true_box(frames["front"], "apple")
    assert percept.lost["front"]["pick"] == 0 and percept.redetections == 7
    assert percept.timings_ms["detect"] > 0.0 and percept.redetect_ms > 0.0
    moved = (BACK[0] + 3, BACK[1] + 2, BACK[2] + 3, BACK[3] + 2)
    for step in (33, 34, 35):  # tracked again, no detector call
        frames = _frames(step, moved)
        percept = pipeline.step(frames)
        box = percept.boxes["front"]["pick"]
        assert box is not None and box.iou(_true_box(frames["front"], "apple")) > 0.7
        assert percept.lost["front"]["pick"] == 0
    assert len(detector.ran) == 9
    # hidden again: the back-off starts over at one frame
    for step in range(36, 40):
        pipeline.step(_frames(step, HIDDEN))
    assert detector.front_steps()[-3:] == [36, 37, 39]


def test_max_interval_one_is_the_old_every_lost_frame_behaviour() -> None:
    detector = RecordingDetector()
    pipeline = _pipeline(detector, redetect_in_background=False, redetect_max_interval=1)
    _start(pipeline)
    for step in range(1, 8):
        pipeline.step(_frames(step, HIDDEN))
    assert detector.front_steps() == list(range(8))


def test_redetect_after_lost_delays_the_first_try_and_is_the_floor() -> None:
    detector = RecordingDetector()
    pipeline = _pipeline(
        detector, redetect_in_background=False, redetect_after_lost=3, redetect_max_interval=4
    )
    _start(pipeline)
    for step in range(1, 20):
        pipeline.step(_frames(step, HIDDEN))
    assert detector.front_steps() == [0, 3, 4, 6, 10, 14, 18]


def test_object_hidden_at_start_backs_off_from_start() -> None:
    detector = RecordingDetector()
    pipeline = _pipeline(detector, redetect_in_background=False)
    assert _start(pipeline, front_apple=HIDDEN).lost["front"]["pick"] == 1
    for step in range(1, 8):
        pipeline.step(_frames(step, HIDDEN))
    assert detector.front_steps() == [0, 1, 3, 7]  # lost frames 1 (start), 2, 4, 8


def test_background_redetection_does_not_stall_tracking_and_catches_up() -> None:
    detector = GatedDetector()
    # CSRT: OpenCV 5's KCF reports the previous frame's position, so one update after the
    # frame the detection ran on would not show the catch-up
    pipeline = _pipeline(detector, "csrt")  # the default: in the background
    with closing(pipeline):
        _start(pipeline)
        percept = pipeline.step(_frames(1, HIDDEN))  # lost: submitted, not awaited
        assert percept.redetecting and percept.timings_ms["detect"] == 0.0
        assert percept.boxes["front"]["pick"] is None
        assert percept.boxes["side"]["pick"] is not None  # the other targets tracked as usual
        detector.wait_started()
        assert detector.front_steps() == [0, 1]
        assert detector.threads and all(t.startswith("redetect") for t in detector.threads)
        # the apple is back while the detection of step 1's frame (nothing there) still runs
        for step in range(2, 6):
            percept = pipeline.step(_frames(step, BACK))
            assert percept.redetecting and percept.boxes["front"]["pick"] is None
            side = percept.boxes["side"]["pick"]
            assert side is not None
            assert side.iou(_true_box(_frames(step)["side"], "apple")) > 0.7
            assert percept.lost["front"]["pick"] == step
        assert detector.front_steps() == [0, 1] and percept.redetections == 0
        detector.finish(pipeline)  # found nothing in step 1's frame: a miss
        percept = pipeline.step(_frames(6, BACK))
        # taken at lost frame 6: the next try waits one more lost frame (then 2, 4 ...)
        assert percept.redetections == 1 and not percept.redetecting
        assert percept.boxes["front"]["pick"] is None
        ran_on = _frames(7, BACK)
        percept = pipeline.step(ran_on)
        assert percept.redetecting
        detector.wait_started()
        assert detector.front_steps() == [0, 1, 7]
        detector.finish(pipeline)  # found at its place in step 7's frame
        now = (BACK[0] + 8, BACK[1] + 4, BACK[2] + 8, BACK[3] + 4)  # and it has moved since
        frames = _frames(8, now)
        percept = pipeline.step(frames)
        box = percept.boxes["front"]["pick"]
        assert box is not None and percept.lost["front"]["pick"] == 0
        truth_now = _true_box(frames["front"], "apple")
        truth_then = _true_box(ran_on["front"], "apple")
        assert box.iou(truth_now) > 0.7 and box.iou(truth_now) > box.iou(truth_then)
        assert (percept.masks["front"] == PICK_MASK_VALUE).any()
        assert percept.redetections == 2 and percept.redetect_ms > 0.0
        assert percept.timings_ms["detect"] == 0.0 and not percept.redetecting
        percept = pipeline.step(_frames(9, now))  # tracked from then on
        assert percept.lost["front"]["pick"] == 0 and detector.front_steps() == [0, 1, 7]


def test_at_most_one_redetection_in_flight() -> None:
    detector = GatedDetector()
    pipeline = _pipeline(detector)
    with closing(pipeline):
        _start(pipeline)
        for step in range(1, 5):  # both views lose the apple: one job holds both views' calls
            percept = pipeline.step(_frames(step, HIDDEN, HIDDEN))
            assert percept.redetecting
        detector.wait_started()
        assert detector.ran == [(0, "front"), (0, "side"), (1, "front")]
        detector.finish(pipeline, calls=2)  # the job's front call, then its side call
        assert detector.ran[2:] == [(1, "front"), (1, "side")]
        percept = pipeline.step(_frames(5, HIDDEN, HIDDEN))
        assert percept.redetections == 2 and not percept.redetecting  # both missed: back off
        assert len(detector.ran) == 4


@pytest.mark.parametrize("background", [False, True])
def test_a_detector_error_is_raised_by_step(background: bool) -> None:
    detector = GatedDetector()
    detector.error = ModelError("grounding dino: out of memory")
    pipeline = _pipeline(detector, redetect_in_background=background)
    with closing(pipeline):
        _start(pipeline)
        if not background:
            detector.gate.release()
            with pytest.raises(ModelError, match="out of memory"):
                pipeline.step(_frames(1, HIDDEN))
            return
        percept = pipeline.step(_frames(1, HIDDEN))
        assert percept.redetecting
        detector.finish(pipeline)
        with pytest.raises(ModelError, match="out of memory") as caught:
            pipeline.step(_frames(2, HIDDEN))
        assert caught.value is detector.error


def test_close_and_a_new_start_drop_the_detection_in_flight() -> None:
    detector = GatedDetector(free=2)
    pipeline = _pipeline(detector)
    _start(pipeline)
    assert pipeline.step(_frames(1, HIDDEN)).redetecting
    pipeline.close()
    with pytest.raises(RuntimeError, match="before a successful start"):
        pipeline.step(_frames(2, HIDDEN))
    detector.free = 10**6  # the new task's detections are not gated
    percept = _start(pipeline)  # while the old one still blocks its thread
    assert not percept.redetecting and percept.lost["front"]["pick"] == 0
    detector.gate.release()  # the dropped detection ends; nothing of it reaches the new task
    assert detector.done.acquire(timeout=20)
    percept = pipeline.step(_frames(1))
    assert percept.redetections == 0 and percept.lost["front"] == {"pick": 0, "place": 0}
    pipeline.close()
    pipeline.close()  # idempotent


def test_detect_every_frame_stays_synchronous() -> None:
    detector = RecordingDetector()
    pipeline = _pipeline(detector, detect_every_frame=True)  # background asked, ablation wins
    _start(pipeline)
    for step in range(1, 4):
        percept = pipeline.step(_frames(step, HIDDEN))
        assert not percept.redetecting and percept.timings_ms["detect"] > 0.0
    assert detector.front_steps() == [0, 1, 2, 3] and percept.lost["front"]["pick"] == 3


def test_config_sets_the_back_off_and_lockstep_callers_get_the_old_behaviour(
    tmp_path: Any,
) -> None:
    from agent.backends import pipeline_factory
    from tests.conftest import make_config

    # the sim profile's detector is free: it re-detects at every lost frame, inside the step
    config = make_config(tmp_path)
    assert not config.models.redetect_in_background and config.models.redetect_max_interval == 1
    config = make_config(
        tmp_path, "models.redetect_in_background=true", "models.redetect_max_interval=8"
    )
    pipeline = pipeline_factory(config)()
    assert pipeline.redetect_in_background and pipeline.redetect_max_interval == 8
    assert pipeline.redetect_after_lost == config.models.redetect_after_lost == 1
    config = make_config(
        tmp_path, "models.redetect_max_interval=16", "models.redetect_after_lost=2"
    )
    pipeline = pipeline_factory(config)()
    assert (pipeline.redetect_max_interval, pipeline.redetect_after_lost) == (16, 2)
    lockstep = pipeline_factory(config, lockstep=True)()
    assert not lockstep.redetect_in_background and lockstep.redetect_max_interval == 1
    assert lockstep.redetect_after_lost == 2
    from agent.config import ConfigError

    with pytest.raises(ConfigError, match="redetect_max_interval"):
        make_config(tmp_path, "models.redetect_max_interval=0")


def test_placed_apple_is_where_asked() -> None:
    frames = _frames(3, BACK)
    assert _true_box(frames["front"], "apple") == Box(*BACK)


class SlowBlindDetector:
    """A detector that takes 80 ms a call and finds nothing (a random-weight model's cost)."""

    name = "slow-blind"

    def detect(
        self, image: np.ndarray, phrases: Sequence[str], truth: GroundTruth | None = None
    ) -> list[Detection]:
        time.sleep(0.08)
        return []


def test_redetect_benchmark_modes_on_a_slow_detector() -> None:
    """benchmarks.redetect's measurement, with a sleeping stand-in for Grounding DINO."""
    from benchmarks.redetect import MODES, BlindingFactory, SwitchedDetector, measure_mode

    frames = [{"front": _frames(step)["front"]} for step in range(11)]
    place = [_true_box(frames[0]["front"], "bowl")]
    factory = BlindingFactory(OpenCVTrackerFactory("kcf"), place)
    detector = SwitchedDetector(GroundTruthDetector(), SlowBlindDetector(), hide=["bowl"])
    every, backoff, background = (
        measure_mode(frames, TASK, detector, factory, GroundTruthSegmenter(), mode, fps=50.0)
        for mode in MODES
    )
    for result in (every, backoff, background):
        assert result.steps == 10 and result.place_lost == 10 and result.pick_tracked == 10
    assert every.detector_calls == 10 and every.step_median_ms >= 80.0
    assert backoff.detector_calls == 4  # lost frames 1, 2, 4, 8
    assert backoff.redetections_taken == 4 and backoff.step_median_ms < 40.0
    assert 1 <= background.detector_calls <= 4 and background.step_median_ms < 40.0
    assert background.tracking_hz > 2 * every.tracking_hz
