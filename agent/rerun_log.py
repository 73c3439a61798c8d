"""What a run looks like in rerun: the entities, their timelines and the default layout.

One `RerunLog` turns an execution's events and percepts into rerun entities on a recording
stream. Both a live run (`agent.live_view`, from its worker thread) and a replay of a finished
run folder's events.jsonl (`agent.view_command`) log through it, so a replay shows the same
entities as the live view, less the camera images that only percepts carry.

Entities (all on the `capture` timeline: seconds since the execution started, at the capture time
of the frame a value derives from; steps also on the `step` timeline):

| entity | what |
|---|---|
| `cameras/<view>/rgb` | the camera image the policy saw |
| `cameras/<view>/masks` | pick (class 1) and place (class 2) masks, a segmentation image |
| `cameras/<view>/boxes` | the tracked boxes, labelled with the role and the object |
| `robot/ee`, `robot/ee_path` | the end effector now, and its path so far, in 3D (m, base frame) |
| `robot/gripper_closed` | the commanded gripper state (1 closed, 0 open) |
| `action/move` | the action stream: dx, dy, dz of each step |
| `latency_ms/<stage>` | per-stage latencies of each step (perceive, act, command, total) |
| `events` | every event but executed steps, as a text log |

This module imports rerun at the top: only `agent.live_view` and `agent.view_command` import it,
and only once the view extra is known to be installed.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import rerun as rr
import rerun.blueprint as rrb

from agent.events import (
    Detected,
    Event,
    Fault,
    Finished,
    Reasoned,
    Started,
    Step,
    describe_task,
)
from agent.messages import PerceptMsg
from agent.video import ROLE_COLOURS, ROLE_VALUES

APPLICATION_ID = "tpm-agent"
CAPTURE = "capture"  # seconds since the execution started, at the source frame's capture
STEP = "step"  # the command loop's step index
ROLE_CLASS = {"pick": 1, "place": 2}
MOVE_AXES = ("dx", "dy", "dz")
#: where the 3D view looks from and at (m, base frame): a tabletop arm's reach, seen from the front
WORKSPACE_EYE, WORKSPACE_CENTRE = (0.95, -0.45, 0.5), (0.52, 0.05, 0.15)


def segmentation(mask: np.ndarray) -> np.ndarray:
    """A policy mask (float role codes, any skill's) as class ids: 0 none, 1 pick, 2 place."""
    out = np.zeros(mask.shape[:2], dtype=np.uint8)
    for role, values in ROLE_VALUES.items():
        out[np.isin(mask, values)] = ROLE_CLASS[role]
    return out


def blueprint(views: Iterable[str]) -> rrb.Blueprint:
    """The default layout: camera views left, the 3D path and plots in the middle, the log right."""
    cameras = [rrb.Spatial2DView(origin=f"cameras/{view}", name=view) for view in views]
    return rrb.Blueprint(
        rrb.Horizontal(
            rrb.Vertical(*cameras) if cameras else rrb.TextLogView(origin="events", name="log"),
            rrb.Vertical(
                rrb.Spatial3DView(
                    origin="robot",
                    name="end effector",
                    eye_controls=rrb.EyeControls3D(
                        position=WORKSPACE_EYE, look_target=WORKSPACE_CENTRE, eye_up=(0, 0, 1)
                    ),
                ),
                rrb.TimeSeriesView(origin="latency_ms", name="latency (ms)"),
                rrb.TimeSeriesView(origin="action", name="action"),
            ),
            rrb.Vertical(
                rrb.TimeSeriesView(origin="robot/gripper_closed", name="gripper closed"),
                rrb.TextLogView(origin="events", name="events"),
            ),
        ),
        rrb.TimePanel(timeline=CAPTURE, play_state="following", state="collapsed"),
        collapse_panels=True,
    )


class RerunLog:
    """Logs one execution to `rec`; call from one thread only (rerun's time is per thread)."""

    def __init__(self, rec: rr.RecordingStream) -> None:
        self.rec = rec
        self._t0: float | None = None
        self._path: list[tuple[float, float, float]] = []
        self._labels = {"pick": "", "place": ""}
        self._views: tuple[str, ...] = ()
        classes = [rr.AnnotationInfo(id=0, label="background", color=(0, 0, 0))] + [
            rr.AnnotationInfo(id=ROLE_CLASS[role], label=role, color=ROLE_COLOURS[role])
            for role in ROLE_CLASS
        ]
        rec.log("cameras", rr.AnnotationContext(classes), static=True)
        rec.log("robot", rr.ViewCoordinates.RIGHT_HAND_Z_UP, static=True)
        rec.log("action/move", rr.SeriesLines(names=list(MOVE_AXES)), static=True)

    # ----------------------------------------------------------------- timelines
    def _at(self, t: float, step: int | None = None) -> None:
        """Put what follows at monotonic time `t` (and at `step`)."""
        if self._t0 is None:
            self._t0 = t
        self.rec.reset_time()
        self.rec.set_time(CAPTURE, duration=t - self._t0)
        if step is not None:
            self.rec.set_time(STEP, sequence=step)

    def _show_views(self, views: Iterable[str]) -> None:
        """Send the layout again when a camera view appears that it does not show yet."""
        known = tuple(dict.fromkeys([*self._views, *views]))
        if known != self._views:
            self._views = known
            self.rec.send_blueprint(blueprint(known), make_active=True)

    # ----------------------------------------------------------------- what is logged
    def percept(self, msg: PerceptMsg) -> None:
        """Both views' images, masks and tracked boxes, at the frames' capture time."""
        percept = msg.percept
        self._show_views(percept.images)
        self._at(msg.t_capture)
        for view, image in percept.images.items():
            self.rec.log(f"cameras/{view}/rgb", rr.Image(image))
            mask = percept.masks.get(view)
            if mask is not None:
                self.rec.log(f"cameras/{view}/masks", rr.SegmentationImage(segmentation(mask)))
            boxes = {r: b for r, b in percept.boxes.get(view, {}).items() if b is not None}
            self.rec.log(
                f"cameras/{view}/boxes",
                rr.Boxes2D(
                    array=np.array([b.as_tuple() for b in boxes.values()]).reshape(-1, 4),
                    array_format=rr.Box2DFormat.XYXY,
                    class_ids=[ROLE_CLASS[r] for r in boxes],
                    labels=[f"{r}: {self._labels[r]}" if self._labels[r] else r for r in boxes],
                ),
            )

    def event(self, event: Event) -> None:
        """A step's robot, action and latency series; every other event into the text log."""
        if isinstance(event, Step):
            self._step(event)
            return
        self._at(event.t)
        if isinstance(event, Reasoned):
            self._labels = {"pick": event.pick or "", "place": event.place or ""}
        elif isinstance(event, Detected):
            self._show_views([event.view])
        text, level = describe_event(event)
        self.rec.log("events", rr.TextLog(text, level=level))

    def note(self, text: str, *, warn: bool = False) -> None:
        """A line of our own in the text log (e.g. what the live view had to drop)."""
        level = rr.TextLogLevel.WARN if warn else rr.TextLogLevel.INFO
        self.rec.log("events", rr.TextLog(text, level=level))

    def _step(self, step: Step) -> None:
        # the action was computed from a frame captured `total` ms before it was commanded
        self._at(step.t - step.latency_ms.get("total", 0.0) / 1e3, step=step.index)
        self._path.append(step.ee_pos)
        self.rec.log("robot/ee", rr.Points3D([step.ee_pos], radii=0.01))
        self.rec.log("robot/ee_path", rr.LineStrips3D([self._path], radii=0.003))
        self.rec.log("robot/gripper_closed", rr.Scalars(1.0 if step.gripper_closed else 0.0))
        self.rec.log("action/move", rr.Scalars(list(step.move)))
        for stage, ms in step.latency_ms.items():
            self.rec.log(f"latency_ms/{stage}", rr.Scalars(ms))
        if not step.executed:
            self.rec.log(
                "events",
                rr.TextLog(f"step {step.index}: stale action, held", level=rr.TextLogLevel.WARN),
            )


def describe_event(event: Event) -> tuple[str, rr.TextLogLevel]:
    """One line for the text log, and its level."""
    info = rr.TextLogLevel.INFO
    if isinstance(event, Started):
        world = "" if event.world is None else f"; {event.world.scene}"
        return f"started {event.request!r} ({event.profile}{world})", info
    if isinstance(event, Reasoned):
        if event.pick is None:
            return f"reasoned ({event.backend}): nothing fits - {event.rationale}", info
        task = describe_task(event.skill, event.pick, event.place)
        return f"reasoned ({event.backend}, {event.latency_ms:.0f} ms): {task}", info
    if isinstance(event, Detected):
        how = "re-detected" if event.redetection else "detected"
        found = "" if event.box else " (not visible)"
        return f"{how} {event.role} '{event.label}' in {event.view}{found}", info
    if isinstance(event, Fault):
        level = rr.TextLogLevel.ERROR if event.fatal else rr.TextLogLevel.WARN
        return f"fault in {event.where}: {event.message}", level
    if isinstance(event, Finished):
        o = event.outcome
        level = info if o.status == "success" else rr.TextLogLevel.WARN
        return f"{o.status}: {o.reason} ({o.steps} steps, {o.duration_s:.1f} s)", level
    return f"step {event.index}", info
