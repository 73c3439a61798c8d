"""Tracking IoU on rendered sim episodes: how well each tracker follows objects the arm occludes.

Scripted-expert pick-and-place episodes are rendered in lockstep (no realtime thread: physics is
stepped between frames at the camera rate), once per episode; every tracker then runs the real
perception pipeline (`PerceptionPipeline`: detect on the first frame, track, re-detect when the
track is lost or fails its health check) over the same frames. The detector is simulator ground
truth, so re-detection is perfect and what is measured is the tracker and its health check:

- mean IoU of the tracked box against the truth box, over every (view, role, frame) after the
  first in which the object shows at least `min_pixels` pixels (0 for a frame without a box);
- the fraction of those frames above IoU 0.5 ("ok"), and the fraction that had a box with IoU
  below 0.5 ("wrong": the tracker sat on the wrong place and its health check did not notice);
- re-detections (detector calls after the first frame: the cost of being unsure), and the mean
  tracker time per step. A `detect every frame` row is the paper's "w/o tracking" ablation.

    python -m agent bench tracking [--tracker csrt --tracker kcf ...] [--episodes 3] [--json PATH]
    python -m benchmarks.tracking_iou  (the same arguments, with the sim profile)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks._cli import standalone_main
from drivers.base import Frame
from drivers.sim import offscreen_gl
from models.detection.ground_truth import GroundTruthDetector
from models.perception import PerceptionPipeline
from models.segmentation.box import BoxSegmenter
from models.tracking.base import TrackerFactory
from models.types import Box, ModelError, Skill, TaskSpec

if TYPE_CHECKING:
    from drivers.sim.expert import ExpertAction

TRACKERS = ("csrt", "kcf", "mil", "onnx")
DETECT_EVERY_FRAME = "detect every frame"


@dataclass(frozen=True, slots=True)
class Episode:
    """One scripted pick-and-place: scene seed, required objects, and the task."""

    seed: int
    objects: tuple[str, ...]
    pick: str
    place: str
    skill: Skill

    @property
    def label(self) -> str:
        return f"seed {self.seed}: {self.pick} {self.skill.value} {self.place}"


#: Tasks the scripted expert completes (tests/drivers/test_sim_world.py): the arm passes over
#: and grips the pick object and lowers it next to, into or onto the place object.
EPISODES: tuple[Episode, ...] = (
    Episode(0, ("sponge",), "sponge", "user", Skill.PLACE_NEAR),
    Episode(0, ("apple", "bowl"), "apple", "bowl", Skill.PLACE_INSIDE),
    Episode(1, ("sponge", "book"), "sponge", "book", Skill.PLACE_ON),
)


def expert_frames(
    episode: Episode,
    *,
    views: Sequence[str] = ("front", "side"),
    size: int = 224,
    camera_hz: float = 10.0,
    max_steps: int = 400,
) -> list[dict[str, Frame]]:
    """Frames ({view: Frame}) of one expert episode, one per control step, plus a settled last one.

    The expert acts at the camera rate (one action per frame), as the runtime's policy does.
    """
    offscreen_gl()  # before the next import loads mujoco
    from drivers.sim import ScriptedExpert
    from drivers.sim.rollout import LockstepScene, run_steps
    from drivers.sim.scene import SceneSpec

    spec = SceneSpec(
        seed=episode.seed, objects=list(episode.objects), image_width=size, image_height=size
    )
    frames: list[dict[str, Frame]] = []
    with LockstepScene.open(spec, views, control_hz=camera_hz, max_step_m=0.02) as scene:
        expert = ScriptedExpert(scene.world, max_step=0.01)
        expert.reset(_task(episode))

        def observe() -> None:
            frames.append(scene.render())

        def decide(_: None, __: object) -> ExpertAction | None:
            action = expert.act(None)
            return None if action.done else action

        run_steps(observe, decide, scene.robot, max_steps=max_steps, advance=scene.advance)
        scene.advance(5)  # the object settles after release
        frames.append(scene.render())
    return frames


def _task(episode: Episode) -> TaskSpec:
    return TaskSpec(
        request=episode.label, skill=episode.skill, pick=episode.pick, place=episode.place
    )


@dataclass
class Tally:
    """Per-tracker accumulation over episodes."""

    ious: list[float]
    pick_ious: list[float]
    wrong: int = 0
    redetections: int = 0
    steps: int = 0
    track_ms: float = 0.0

    @classmethod
    def new(cls) -> Tally:
        return cls(ious=[], pick_ious=[])


def track_episode(
    frames: Sequence[Mapping[str, Any]],
    episode: Episode,
    tracker: TrackerFactory,
    tally: Tally,
    *,
    detect_every_frame: bool = False,
    redetect_after_lost: int = 1,
    redetect_max_interval: int = 1,
    min_pixels: int = 20,
) -> None:
    """Run the perception pipeline over `frames` and add its per-frame IoUs to `tally`.

    `redetect_after_lost` and `redetect_max_interval` are the pipeline's settings (a huge
    `redetect_after_lost`: a lost track stays lost; `redetect_max_interval=1`: re-detect on every
    lost frame, no back-off). The pipeline runs in lockstep (re-detection inside each step).
    """
    truth = GroundTruthDetector(min_pixels=min_pixels)
    pipeline = PerceptionPipeline(
        GroundTruthDetector(min_pixels=min_pixels),
        tracker,
        BoxSegmenter(),
        detect_every_frame=detect_every_frame,
        redetect_after_lost=redetect_after_lost,
        redetect_max_interval=redetect_max_interval,
        redetect_in_background=False,
    )
    task = _task(episode)
    roles = {"pick": episode.pick, "place": episode.place}
    percept = pipeline.start(task, frames[0])
    for views in frames[1:]:
        percept = pipeline.step(views)
        tally.steps += 1
        tally.track_ms += percept.timings_ms["track"]
        for view, frame in views.items():
            found = {d.label: d.box for d in truth.detect(frame.rgb, list(roles.values()), frame)}
            for role, name in roles.items():
                if name not in found:
                    continue  # hidden (or nearly): nothing to compare against
                box: Box | None = percept.boxes[view][role]
                iou = box.iou(found[name]) if box is not None else 0.0
                tally.ious.append(iou)
                if role == "pick":
                    tally.pick_ious.append(iou)
                if box is not None and iou < 0.5:
                    tally.wrong += 1
    tally.redetections += percept.redetections


@dataclass(frozen=True, slots=True)
class Row:
    tracker: str
    frames: int
    mean_iou: float
    pick_mean_iou: float
    above_half: float
    wrong: float
    redetections: int
    track_ms: float


def _row(name: str, tally: Tally) -> Row:
    n = len(tally.ious)
    return Row(
        tracker=name,
        frames=n,
        mean_iou=statistics.fmean(tally.ious) if n else 0.0,
        pick_mean_iou=statistics.fmean(tally.pick_ious) if tally.pick_ious else 0.0,
        above_half=sum(i > 0.5 for i in tally.ious) / n if n else 0.0,
        wrong=tally.wrong / n if n else 0.0,
        redetections=tally.redetections,
        track_ms=tally.track_ms / tally.steps if tally.steps else 0.0,
    )


def run_benchmark(
    trackers: Mapping[str, TrackerFactory],
    *,
    episodes: Sequence[Episode] = EPISODES,
    views: Sequence[str] = ("front", "side"),
    size: int = 224,
    detect_every_frame_row: bool = True,
    min_pixels: int = 20,
    log: Any = None,
) -> list[Row]:
    """Record each episode once, run every tracker (and the ablation) on it; one row each."""
    tallies = {name: Tally.new() for name in trackers}
    if detect_every_frame_row:
        tallies[DETECT_EVERY_FRAME] = Tally.new()
    for episode in episodes:
        t0 = time.perf_counter()
        frames = expert_frames(episode, views=views, size=size)
        if log is not None:
            print(
                f"{episode.label}: {len(frames)} frames x {len(views)} views "
                f"rendered in {time.perf_counter() - t0:.1f} s",
                file=log,
            )
        for name, tally in tallies.items():
            every = name == DETECT_EVERY_FRAME
            factory = next(iter(trackers.values())) if every else trackers[name]
            track_episode(
                frames,
                episode,
                factory,
                tally,
                detect_every_frame=every,
                min_pixels=min_pixels,
            )
    return [_row(name, tally) for name, tally in tallies.items()]


def format_table(rows: Sequence[Row]) -> str:
    header = (
        f"{'tracker':<20} {'frames':>6} {'mean IoU':>8} {'pick IoU':>8} {'IoU>0.5':>7} "
        f"{'wrong':>6} {'re-det':>6} {'track ms':>8}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r.tracker:<20} {r.frames:>6} {r.mean_iou:>8.3f} {r.pick_mean_iou:>8.3f} "
            f"{r.above_half:>7.1%} {r.wrong:>6.1%} {r.redetections:>6} {r.track_ms:>8.1f}"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The benchmark's own arguments (the CLI's `bench tracking` adds the config arguments)."""
    parser.add_argument(
        "--tracker",
        dest="trackers",
        action="append",
        choices=TRACKERS,
        metavar="NAME",
        help=f"tracker to run, repeatable ({', '.join(TRACKERS)}; onnx uses [onnx_tracker]); "
        "default: csrt, kcf, mil",
    )
    parser.add_argument(
        "--episodes", type=int, default=len(EPISODES), help=f"1-{len(EPISODES)} (default: all)"
    )
    parser.add_argument("--size", type=int, help="image side in pixels (default: sim.image_width)")
    parser.add_argument("--view", dest="views", action="append", help="camera (default: cameras)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")


def run(args: argparse.Namespace, config: Any, out: Any = None) -> int:
    """Run the benchmark as the arguments say; prints the table; returns the exit code."""
    from agent.backends import BackendError, build_tracker

    out = out or sys.stdout
    if not 1 <= args.episodes <= len(EPISODES):
        print(f"error: --episodes must be 1-{len(EPISODES)}", file=sys.stderr)
        return 2
    try:
        trackers = {
            name: build_tracker(
                config.model_copy(
                    update={"models": config.models.model_copy(update={"tracker": name})}
                )
            )
            for name in dict.fromkeys(args.trackers or ("csrt", "kcf", "mil"))
        }
    except (BackendError, ModelError) as exc:  # a missing tracker model or extra: one line
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows = run_benchmark(
        trackers,
        episodes=EPISODES[: args.episodes],
        views=args.views or config.cameras.views,
        size=args.size or config.sim.image_width,
        log=out,
    )
    print(format_table(rows), file=out)
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return standalone_main("python -m benchmarks.tracking_iou", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
