"""Tracking IoU on a rendered scripted-expert episode, where the arm occludes the tracked objects.

One episode (seed 0: the sponge is picked up and placed near the user) is rendered at 128 x 128
from both cameras, ~120 frames each, and the real perception pipeline runs over it with the
configured default tracker (KCF) and with detect-every-frame (the paper's "w/o tracking").

Thresholds, from measurements on this machine (see the benchmark table in docs/benchmarks.md):
KCF with
its health check and ground-truth re-detection scored mean IoU 0.81 with 87.6% of the
(view, role, frame) samples above 0.5 and 39 re-detections over 244 view-steps; without
re-detection (a lost track stays lost) it scored 0.48 with 49% above 0.5.
The asserted bounds sit ~0.1 below the measured values so that another Mesa / OpenCV build may
render or track a little differently, while a broken health check (wrong boxes kept), broken
re-detection (boxes lost for good) or a box-convention error (IoU near 0) fails clearly.
"""

from __future__ import annotations

import pytest

pytest.importorskip("mujoco")

from benchmarks.tracking_iou import (
    EPISODES,
    Tally,
    expert_frames,
    format_table,
    run_benchmark,
    track_episode,
)
from models.tracking.opencv_tracker import OpenCVTrackerFactory

EPISODE = EPISODES[0]
SIZE = 128


@pytest.fixture(scope="module")
def frames() -> list:
    return expert_frames(EPISODE, size=SIZE)


def _tally(frames: list, **kwargs: object) -> Tally:
    tally = Tally.new()
    track_episode(frames, EPISODE, OpenCVTrackerFactory("kcf"), tally, **kwargs)
    return tally


def test_episode_is_rendered_with_truth(frames: list) -> None:
    assert 80 <= len(frames) <= 400
    first = frames[0]["front"]
    assert first.rgb.shape == (SIZE, SIZE, 3)
    assert {"sponge", "user"} <= set(first.labels)


def test_kcf_follows_through_occlusion(frames: list) -> None:
    tally = _tally(frames)
    n = len(tally.ious)
    mean = sum(tally.ious) / n
    above = sum(i > 0.5 for i in tally.ious) / n
    steps = tally.steps * 2  # view-steps: the ablation would call the detector on each
    assert n > 300
    assert mean >= 0.70, mean
    assert above >= 0.75, above
    assert tally.wrong / n <= 0.25
    assert 0 < tally.redetections <= 0.3 * steps  # tracking saves most detector calls


def test_redetection_is_what_recovers(frames: list) -> None:
    """Without re-detection the occluded track is lost for good: much lower IoU."""
    with_redetect = _tally(frames)
    without = _tally(frames, redetect_after_lost=10**6)
    mean = sum(with_redetect.ious) / len(with_redetect.ious)
    mean_without = sum(without.ious) / len(without.ious)
    assert without.redetections == 0
    assert mean_without < mean - 0.1, (mean_without, mean)


def test_benchmark_table_has_the_ablation_row(frames: list, monkeypatch) -> None:
    import benchmarks.tracking_iou as bench

    monkeypatch.setattr(bench, "expert_frames", lambda *a, **k: frames)
    rows = run_benchmark({"kcf": OpenCVTrackerFactory("kcf")}, episodes=[EPISODE], size=SIZE)
    assert [r.tracker for r in rows] == ["kcf", bench.DETECT_EVERY_FRAME]
    ablation = rows[1]
    assert ablation.mean_iou == pytest.approx(1.0) and ablation.wrong == 0.0
    assert ablation.redetections > rows[0].redetections
    table = format_table(rows)
    assert "mean IoU" in table and "detect every frame" in table
