"""Detect once, then track, re-detect when lost, segment: the blocking core of the perceive loop.

This is the paper's prompt generator plus SAM (eq. 1: m = SAM(o, PG(o, RM(o, l)))): the detector
runs on the first frame only, because it is slow (Grounding DINO) and because tracking is more
robust to the arm occluding the object (Table II, "w/o tracking" drops from 75.6% to 61.3%);
`detect_every_frame=True` is that ablation. A track that the tracker reports lost, or that fails
its plausibility check, is re-detected after `redetect_after_lost` consecutive lost frames.

Phrases: objects are detected by their TaskSpec names (`task.pick`, `task.place`), which is what
the ground-truth detector needs and what the detector reports back as `Detection.label`. With
`use_descriptions=True` the TaskSpec's shape-and-colour descriptions are sent instead (when
non-empty), as the paper recommends for open-vocabulary detectors; segmenters always receive the
names, since those identify objects in simulator truth.

Not thread-safe: one worker thread owns a pipeline; the runtime calls `start` then `step`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from models._boxes import trackable
from models.types import PICK_MASK_VALUE, PLACE_MASK_VALUE, Box, ModelError, TaskSpec

if TYPE_CHECKING:  # the role packages import OpenCV; the pipeline itself needs only numpy
    from models.detection.base import Detector
    from models.segmentation.base import Segmenter
    from models.tracking.base import Tracker, TrackerFactory

#: Roles in the order their masks are painted: the pick object is painted last, so where it
#: overlaps the place target (an apple already inside the bowl) the policy still sees the pick.
ROLES: tuple[str, ...] = ("place", "pick")
_MASK_VALUES = {"pick": PICK_MASK_VALUE, "place": PLACE_MASK_VALUE}


class FrameLike(Protocol):
    """What perception reads from a camera frame (`drivers.base.Frame` satisfies it)."""

    @property
    def rgb(self) -> np.ndarray: ...

    @property
    def segmentation(self) -> np.ndarray | None: ...

    @property
    def labels(self) -> Mapping[str, int] | None: ...

    @property
    def t_capture(self) -> float: ...


class ObjectNotInView(ModelError):
    """An object the task needs was detected in none of the camera views."""

    def __init__(self, missing: Sequence[str], views: Sequence[str]) -> None:
        self.missing = tuple(missing)
        self.views = tuple(views)
        super().__init__(
            f"not found in any camera view ({', '.join(self.views)}): {', '.join(self.missing)}"
        )


@dataclass(frozen=True, slots=True)
class Percept:
    """One perception result for a synchronised set of views.

    `boxes[view][role]` is None where the object is not (or no longer) seen in that view, and then
    `masks[view]` has no region for it. `lost[view][role]` counts consecutive frames without a box
    (0 while tracked; only roles the task uses). `redetections` counts detector calls after the
    first frame, since `start`. `timings_ms` has "detect", "track" and "segment" for this call
    (0.0 for stages that did not run). `t_capture` is the oldest view's capture time and `t_done`
    the monotonic time the percept was finished, so the runtime can measure its age.
    """

    boxes: dict[str, dict[str, Box | None]]
    masks: dict[str, np.ndarray]
    images: dict[str, np.ndarray]
    t_capture: float
    redetections: int
    lost: dict[str, dict[str, int]]
    timings_ms: dict[str, float]
    t_done: float = 0.0


class PerceptionPipeline:
    """Turns frames into role-coded masks for one task at a time.

    `redetect_after_lost`: consecutive lost frames before the detector runs again for that view
    and role (1 = in the same step that lost it). A role not found in a view at `start` counts as
    lost there too, so an object hidden in one view at first is picked up when it reappears.
    """

    def __init__(
        self,
        detector: Detector,
        tracker_factory: TrackerFactory,
        segmenter: Segmenter,
        *,
        detect_every_frame: bool = False,
        redetect_after_lost: int = 1,
        use_descriptions: bool = False,
    ) -> None:
        if redetect_after_lost < 1:
            raise ValueError(f"redetect_after_lost must be >= 1, got {redetect_after_lost}")
        self.detector = detector
        self.tracker_factory = tracker_factory
        self.segmenter = segmenter
        self.detect_every_frame = detect_every_frame
        self.redetect_after_lost = redetect_after_lost
        self.use_descriptions = use_descriptions
        self._names: dict[str, str] = {}  # role -> object name
        self._phrases: dict[str, str] = {}  # role -> phrase sent to the detector
        self._views: tuple[str, ...] = ()
        self._trackers: dict[tuple[str, str], Tracker] = {}
        self._boxes: dict[str, dict[str, Box | None]] = {}
        self._lost: dict[str, dict[str, int]] = {}
        self._redetections = 0
        self._started = False

    def start(self, task: TaskSpec, frames: Mapping[str, FrameLike]) -> Percept:
        """Detect the task's objects in every view, start one tracker per found (view, role).

        Raises ObjectNotInView when an object is found in no view, ValueError for a task without
        a pick object or with pick and place naming the same thing.
        """
        self._started = False  # a failed start leaves nothing to step from
        self._set_task(task)
        if not frames:
            raise ValueError("start needs at least one camera view")
        self._views = tuple(frames)
        self._trackers = {}
        self._redetections = 0
        self._boxes = {view: dict.fromkeys(("pick", "place")) for view in self._views}
        self._lost = {view: dict.fromkeys(self._names, 0) for view in self._views}
        timings = {"detect": 0.0, "track": 0.0, "segment": 0.0}
        for view, frame in frames.items():
            timings["detect"] += self._detect(view, frame, tuple(self._names))
        missing = [
            self._names[role]
            for role in self._names
            if all(self._boxes[view][role] is None for view in self._views)
        ]
        if missing:
            raise ObjectNotInView(missing, self._views)
        if not self.detect_every_frame:
            timings["track"] = self._init_trackers(frames, tuple(self._names))
        self._started = True
        return self._finish(frames, timings)

    def step(self, frames: Mapping[str, FrameLike]) -> Percept:
        """Track (or detect, in detect-every-frame mode) in new frames of the same views."""
        if not self._started:
            raise RuntimeError("PerceptionPipeline.step called before a successful start")
        if set(frames) != set(self._views):
            raise ModelError(
                f"perception started with views {sorted(self._views)}, got {sorted(frames)}"
            )
        timings = {"detect": 0.0, "track": 0.0, "segment": 0.0}
        for view, frame in frames.items():
            if self.detect_every_frame:
                due = tuple(self._names)
            else:
                timings["track"] += self._track(view, frame)
                due = tuple(
                    r for r in self._names if self._lost[view][r] >= self.redetect_after_lost
                )
            if due:
                timings["detect"] += self._detect(view, frame, due)
                self._redetections += 1
                if not self.detect_every_frame:
                    timings["track"] += self._init_trackers({view: frame}, due)
        return self._finish(frames, timings)

    def _set_task(self, task: TaskSpec) -> None:
        if task.pick is None:
            raise ValueError(f"task has nothing to pick ({task.rationale or task.request!r})")
        names = {"pick": task.pick} | ({"place": task.place} if task.place is not None else {})
        descriptions = {"pick": task.pick_description, "place": task.place_description}
        phrases = {
            role: (descriptions[role] if self.use_descriptions and descriptions[role] else name)
            for role, name in names.items()
        }
        if len(set(phrases.values())) != len(phrases):
            raise ValueError(f"pick and place must be different objects, got {phrases}")
        self._names, self._phrases = names, phrases

    def _detect(self, view: str, frame: FrameLike, roles: Sequence[str]) -> float:
        """Detect `roles` in one view and record their boxes and lost counts; returns ms."""
        t0 = time.perf_counter()
        phrases = [self._phrases[role] for role in roles]
        found: dict[str, Box] = {}
        for detection in self.detector.detect(frame.rgb, phrases, truth=frame):
            # a sliver (image edge, nearly hidden) is not found, whichever detector reported it
            if trackable(detection.box, frame.rgb.shape):
                found.setdefault(detection.label, detection.box)
        for role in roles:
            box = found.get(self._phrases[role])
            self._boxes[view][role] = box
            self._lost[view][role] = 0 if box is not None else self._lost[view][role] + 1
        return (time.perf_counter() - t0) * 1000.0

    def _init_trackers(self, frames: Mapping[str, FrameLike], roles: Sequence[str]) -> float:
        """(Re)start a tracker for every role with a fresh box in each view; returns ms."""
        t0 = time.perf_counter()
        for view, frame in frames.items():
            for role in roles:
                box = self._boxes[view][role]
                if box is not None and self._lost[view][role] == 0:
                    tracker = self.tracker_factory()
                    tracker.init(frame.rgb, box)
                    self._trackers[(view, role)] = tracker
        return (time.perf_counter() - t0) * 1000.0

    def _track(self, view: str, frame: FrameLike) -> float:
        """Update this view's trackers; a lost or missing track clears the box; returns ms."""
        t0 = time.perf_counter()
        for role in self._names:
            tracker = self._trackers.get((view, role))
            result = tracker.update(frame.rgb) if tracker is not None else None
            if result is not None and result.ok:
                self._boxes[view][role] = result.box
                self._lost[view][role] = 0
            else:
                self._boxes[view][role] = None
                self._lost[view][role] += 1
        return (time.perf_counter() - t0) * 1000.0

    def _finish(self, frames: Mapping[str, FrameLike], timings: dict[str, float]) -> Percept:
        """Segment every view's boxes in one call each and paint the role-coded masks."""
        t0 = time.perf_counter()
        masks = {view: self._role_mask(frame, self._boxes[view]) for view, frame in frames.items()}
        timings["segment"] = (time.perf_counter() - t0) * 1000.0
        return Percept(
            boxes={view: dict(boxes) for view, boxes in self._boxes.items()},
            masks=masks,
            images={view: frame.rgb for view, frame in frames.items()},
            t_capture=min(frame.t_capture for frame in frames.values()),
            redetections=self._redetections,
            lost={view: dict(lost) for view, lost in self._lost.items()},
            timings_ms=timings,
            t_done=time.monotonic(),
        )

    def _role_mask(self, frame: FrameLike, boxes: Mapping[str, Box | None]) -> np.ndarray:
        image = frame.rgb
        mask = np.zeros(image.shape[:2], dtype=np.float32)
        present = [(role, box) for role in ROLES if (box := boxes.get(role)) is not None]
        if not present:
            return mask
        roles = [role for role, _ in present]
        segments = self.segmenter.segment(
            image,
            [box for _, box in present],
            labels=[self._names[role] for role in roles],
            truth=frame,
        )
        if len(segments) != len(roles):
            raise ModelError(
                f"segmenter {self.segmenter.name!r} returned {len(segments)} masks "
                f"for {len(roles)} boxes"
            )
        for role, segment in zip(roles, segments, strict=True):
            mask[segment] = _MASK_VALUES[role]
        return mask
