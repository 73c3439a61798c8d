"""Detect once, then track, re-detect when lost, segment: the blocking core of the perceive loop.

This is the paper's prompt generator plus SAM (eq. 1: m = SAM(o, PG(o, RM(o, l)))): the detector
runs on the first frame only, because it is slow (Grounding DINO) and because tracking is more
robust to the arm occluding the object (Table II, "w/o tracking" drops from 75.6% to 61.3%);
`detect_every_frame=True` is that ablation. A track that the tracker reports lost, or that fails
its plausibility check, is re-detected after `redetect_after_lost` consecutive lost frames.

Re-detection backs off: per (view, role), each try that still does not find the object doubles
the lost frames to wait before the next one (1, 2, 4, 8 ... capped at `redetect_max_interval`),
and finding it (by the detector or by the tracker itself) starts over. A target that stays
hidden therefore costs a detector call every `redetect_max_interval` frames, not every frame
(Grounding DINO takes seconds a call on a CPU).

With `redetect_in_background=True` (the runtime's default) a due re-detection runs beside the
loop: `step` hands it, with the frames it should run on, to the pipeline's one worker thread and
returns at once with the other targets tracked as usual (the missing role keeps no box and no
mask). A later `step` that finds it done takes its boxes: a new tracker starts on the frame the
detection ran on and is updated with the current frame, so the box is the object's position now.
At most one re-detection is in flight; an error it raised is raised by that later `step` (same
exception object). `start` always detects synchronously (a task cannot begin without its
objects), and so does detect-every-frame mode (the ablation). With `redetect_in_background=False`
everything happens inside `step`, deterministic for lockstep callers (dataset collection,
the tracking benchmark, tests).

Phrases: objects are detected by their TaskSpec names (`task.pick`, `task.place`), which is what
the ground-truth detector needs and what the detector reports back as `Detection.label`. With
`use_descriptions=True` the TaskSpec's shape-and-colour descriptions are sent instead (when
non-empty), as the paper recommends for open-vocabulary detectors; segmenters always receive the
names, since those identify objects in simulator truth.

Not thread-safe: one worker thread owns a pipeline; the runtime calls `start`, `step`, `close`.
Only the detector is called from the pipeline's own background thread, one call at a time; a
detector shared between pipelines may see a call from a closed pipeline's still-running
re-detection overlap the next pipeline's (torch modules in eval mode allow that).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from models._boxes import trackable
from models.types import MASK_CODING, Box, MaskCoding, ModelError, Skill, TaskSpec

if TYPE_CHECKING:  # the role packages import OpenCV; the pipeline itself needs only numpy
    from models.detection.base import Detector
    from models.segmentation.base import Segmenter
    from models.tracking.base import Tracker, TrackerFactory

#: Roles in the order their masks are painted: the pick object is painted last, so where it
#: overlaps the place target (an apple already inside the bowl) the policy still sees the pick.
ROLES: tuple[str, ...] = ("place", "pick")


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
    first frame, since `start`, once their result is taken (a background one counts in the step
    that takes it). `timings_ms` has "detect", "track" and "segment" for this call (0.0 for
    stages that did not run; a background re-detection is not in "detect", and starting its
    tracker and catching it up to the current frame is in "track"). `redetect_ms` is the
    detector's own time for the re-detections whose results this call took, wherever they ran.
    `redetecting` is true while a background re-detection is in flight after this call.
    `t_capture` is the oldest view's capture time and `t_done` the monotonic time the percept was
    finished, so the runtime can measure its age.
    """

    boxes: dict[str, dict[str, Box | None]]
    masks: dict[str, np.ndarray]
    images: dict[str, np.ndarray]
    t_capture: float
    redetections: int
    lost: dict[str, dict[str, int]]
    timings_ms: dict[str, float]
    t_done: float = 0.0
    redetect_ms: float = 0.0
    redetecting: bool = False


#: One view's re-detection request: the view, the frame to run on, role -> phrase.
_Request = tuple[str, "FrameLike", dict[str, str]]
#: Its result: the view, the frame it ran on, role -> box (None: not found), detector ms.
_Result = tuple[str, "FrameLike", dict[str, Box | None], float]


def _detect_roles(
    detector: Detector, frame: FrameLike, phrases: Mapping[str, str]
) -> tuple[dict[str, Box | None], float]:
    """One detector call for `phrases` (role -> phrase) on one frame: role -> box, and its ms.

    Touches no pipeline state, so it may run on the background thread.
    """
    t0 = time.perf_counter()
    found: dict[str, Box] = {}
    for detection in detector.detect(frame.rgb, list(phrases.values()), truth=frame):
        # a sliver (image edge, nearly hidden) is not found, whichever detector reported it
        if trackable(detection.box, frame.rgb.shape):
            found.setdefault(detection.label, detection.box)
    boxes = {role: found.get(phrase) for role, phrase in phrases.items()}
    return boxes, (time.perf_counter() - t0) * 1000.0


def _detect_views(detector: Detector, requests: Sequence[_Request]) -> list[_Result]:
    """Run each view's request in turn (the background job)."""
    results: list[_Result] = []
    for view, frame, phrases in requests:
        boxes, ms = _detect_roles(detector, frame, phrases)
        results.append((view, frame, boxes, ms))
    return results


class PerceptionPipeline:
    """Turns frames into role-coded masks for one task at a time.

    Masks are painted with `coding` (default `models.types.MASK_CODING`: the place target's value
    says the task's skill), the coding the policies are trained with.

    `redetect_after_lost`: consecutive lost frames before the detector runs again for that view
    and role (1 = in the same step that lost it). A role not found in a view at `start` counts as
    lost there too, so an object hidden in one view at first is picked up when it reappears.
    `redetect_max_interval`: the cap of the back-off, in lost frames between two tries that do
    not find the object (1 = try on every lost frame, the behaviour before the back-off).
    `redetect_in_background`: run re-detections on the pipeline's worker thread (see the module
    docstring); False keeps them inside `step`.
    """

    def __init__(
        self,
        detector: Detector,
        tracker_factory: TrackerFactory,
        segmenter: Segmenter,
        *,
        detect_every_frame: bool = False,
        redetect_after_lost: int = 1,
        redetect_max_interval: int = 8,
        redetect_in_background: bool = True,
        use_descriptions: bool = False,
        coding: MaskCoding = MASK_CODING,
    ) -> None:
        if redetect_after_lost < 1:
            raise ValueError(f"redetect_after_lost must be >= 1, got {redetect_after_lost}")
        if redetect_max_interval < 1:
            raise ValueError(f"redetect_max_interval must be >= 1, got {redetect_max_interval}")
        self.detector = detector
        self.tracker_factory = tracker_factory
        self.segmenter = segmenter
        self.detect_every_frame = detect_every_frame
        self.redetect_after_lost = redetect_after_lost
        self.redetect_max_interval = redetect_max_interval
        self.redetect_in_background = redetect_in_background
        self.use_descriptions = use_descriptions
        self.coding = coding
        self._skill = Skill.PLACE_NEAR  # the task's, for the mask values
        self._names: dict[str, str] = {}  # role -> object name
        self._phrases: dict[str, str] = {}  # role -> phrase sent to the detector
        self._views: tuple[str, ...] = ()
        self._trackers: dict[tuple[str, str], Tracker] = {}
        self._boxes: dict[str, dict[str, Box | None]] = {}
        self._lost: dict[str, dict[str, int]] = {}
        self._misses: dict[tuple[str, str], int] = {}  # consecutive tries that found nothing
        self._due: dict[tuple[str, str], int] = {}  # the lost count of the next try
        self._redetections = 0
        self._started = False
        self._executor: ThreadPoolExecutor | None = None
        self._pending: Future[list[_Result]] | None = None

    def start(self, task: TaskSpec, frames: Mapping[str, FrameLike]) -> Percept:
        """Detect the task's objects in every view, start one tracker per found (view, role).

        Synchronous, whatever `redetect_in_background` says; a re-detection still in flight from
        the previous task is dropped (`close`). Raises ObjectNotInView when an object is found in
        no view, ValueError for a task without a pick object or with pick and place naming the
        same thing.
        """
        self.close()  # also: a failed start leaves nothing to step from
        self._set_task(task)
        if not frames:
            raise ValueError("start needs at least one camera view")
        self._views = tuple(frames)
        self._trackers = {}
        self._redetections = 0
        self._boxes = {view: dict.fromkeys(("pick", "place")) for view in self._views}
        self._lost = {view: dict.fromkeys(self._names, 0) for view in self._views}
        keys = [(view, role) for view in self._views for role in self._names]
        self._misses = dict.fromkeys(keys, 0)
        self._due = dict.fromkeys(keys, self.redetect_after_lost)
        timings = {"detect": 0.0, "track": 0.0, "segment": 0.0}
        for view, frame in frames.items():
            boxes, ms = _detect_roles(self.detector, frame, self._phrases)
            timings["detect"] += ms
            for role, box in boxes.items():
                self._boxes[view][role] = box
                if box is None:  # a first try that found nothing: the back-off starts here
                    self._lost[view][role] = 1
                    self._missed((view, role))
        missing = [
            self._names[role]
            for role in self._names
            if all(self._boxes[view][role] is None for view in self._views)
        ]
        if missing:
            raise ObjectNotInView(missing, self._views)
        if not self.detect_every_frame:
            timings["track"] = self._init_trackers(frames)
            if self.redetect_in_background:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="redetect")
        self._started = True
        return self._finish(frames, timings, 0.0)

    def step(self, frames: Mapping[str, FrameLike]) -> Percept:
        """Track (or detect, in detect-every-frame mode) in new frames of the same views.

        Raises what the detector raised in a background re-detection that ended since the last
        call, after tracking this frame.
        """
        if not self._started:
            raise RuntimeError("PerceptionPipeline.step called before a successful start")
        if set(frames) != set(self._views):
            raise ModelError(
                f"perception started with views {sorted(self._views)}, got {sorted(frames)}"
            )
        timings = {"detect": 0.0, "track": 0.0, "segment": 0.0}
        if self.detect_every_frame:
            for view, frame in frames.items():
                boxes, ms = _detect_roles(self.detector, frame, self._phrases)
                timings["detect"] += ms
                self._redetections += 1
                for role, box in boxes.items():
                    self._boxes[view][role] = box
                    self._lost[view][role] = 0 if box is not None else self._lost[view][role] + 1
            return self._finish(frames, timings, timings["detect"])
        for view, frame in frames.items():
            timings["track"] += self._track(view, frame)
        redetect_ms = 0.0
        if self._pending is not None and self._pending.done():
            future, self._pending = self._pending, None
            t0 = time.perf_counter()
            for view, ran_on, boxes, ms in future.result():  # the detector's error, if any
                redetect_ms += ms
                self._take(view, ran_on, boxes, frames[view])
            timings["track"] += (time.perf_counter() - t0) * 1000.0
        requests = self._due_requests(frames) if self._pending is None else []
        if requests and self.redetect_in_background:
            executor = self._executor
            if executor is not None:  # None: closed under a step the runtime abandoned
                self._pending = executor.submit(_detect_views, self.detector, requests)
        elif requests:
            for view, frame, boxes, ms in _detect_views(self.detector, requests):
                timings["detect"] += ms
                redetect_ms += ms
                t0 = time.perf_counter()
                self._take(view, frame, boxes, frame)
                timings["track"] += (time.perf_counter() - t0) * 1000.0
        return self._finish(frames, timings, redetect_ms)

    def close(self) -> None:
        """Stop background re-detection; `step` refuses until the next `start`.

        Does not wait: a re-detection still running finishes on its thread and is dropped.
        Idempotent; `start` calls it.
        """
        self._started = False
        self._pending = None
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

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
        self._names, self._phrases, self._skill = names, phrases, Skill(task.skill)

    def _due_requests(self, frames: Mapping[str, FrameLike]) -> list[_Request]:
        """Per view, the lost roles whose next try is due now, with the frame to run on."""
        requests: list[_Request] = []
        for view, frame in frames.items():
            phrases = {
                role: phrase
                for role, phrase in self._phrases.items()
                if self._lost[view][role] >= self._due[(view, role)]
            }
            if phrases:
                requests.append((view, frame, phrases))
        return requests

    def _missed(self, key: tuple[str, str]) -> None:
        """A try found nothing: wait 1, 2, 4 ... (capped) more lost frames before the next."""
        self._misses[key] += 1
        interval = min(1 << min(self._misses[key] - 1, 30), self.redetect_max_interval)
        view, role = key
        self._due[key] = max(self.redetect_after_lost, self._lost[view][role] + interval)

    def _found(self, key: tuple[str, str]) -> None:
        self._misses[key] = 0
        self._due[key] = self.redetect_after_lost

    def _take(
        self,
        view: str,
        ran_on: FrameLike,
        boxes: Mapping[str, Box | None],
        current: FrameLike,
    ) -> None:
        """Take one view's re-detection, run on `ran_on`, into the state of the `current` frame.

        A role the tracker found again meanwhile keeps its track. A found role gets a new
        tracker started on `ran_on`; when that is an older frame (background), the tracker is
        updated with `current` at once and a failed update counts as a miss.
        """
        self._redetections += 1
        for role, box in boxes.items():
            key = (view, role)
            if self._lost[view][role] == 0:
                continue
            if box is None:
                self._missed(key)
                continue
            tracker = self.tracker_factory()
            tracker.init(ran_on.rgb, box)
            self._trackers[key] = tracker
            if ran_on is not current:
                result = tracker.update(current.rgb)
                if not result.ok:
                    self._missed(key)
                    continue
                box = result.box
            self._boxes[view][role] = box
            self._lost[view][role] = 0
            self._found(key)

    def _init_trackers(self, frames: Mapping[str, FrameLike]) -> float:
        """Start a tracker for every role found at `start` in each view; returns ms."""
        t0 = time.perf_counter()
        for view, frame in frames.items():
            for role in self._names:
                box = self._boxes[view][role]
                if box is not None:
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
                self._found((view, role))
            else:
                self._boxes[view][role] = None
                self._lost[view][role] += 1
        return (time.perf_counter() - t0) * 1000.0

    def _finish(
        self, frames: Mapping[str, FrameLike], timings: dict[str, float], redetect_ms: float
    ) -> Percept:
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
            redetect_ms=redetect_ms,
            redetecting=self._pending is not None,
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
            mask[segment] = self.coding.value(role, self._skill)
        return mask
