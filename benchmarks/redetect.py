"""Re-detecting a target that stays lost: on every lost frame, backed off, or beside the loop.

Issue 15: a target that stays invisible in one view made the pipeline call the detector on every
step; with Grounding DINO on a CPU (seconds a call) that stalled tracking of everything else. This
benchmark steps the real `PerceptionPipeline` over rendered sim frames of one view (the scripted
expert's apple-into-bowl episode, `benchmarks.tracking_iou`), paced at the camera rate, with the
pick object tracked (KCF) and the place object forced lost, in three modes:

- every lost frame: `redetect_max_interval=1`, inside `step` (the behaviour before the back-off);
- back-off: tries after 1, 2, 4, 8, 8 ... lost frames, inside `step`;
- back-off, background: the same tries on the pipeline's worker thread, `step` never waits.

The first detection (`start`) is simulator ground truth, so the task starts with both objects
found; every re-detection is Grounding DINO Swin-T with random weights (no checkpoint can be
downloaded here; latency depends on the architecture and the input size, not on the weights)
through the runtime's own backend, at a small model input to keep the run short. Random weights
do return boxes (arbitrary ones, above the default thresholds: seen here), so what it answers for
the place object is discarded, and the place object's tracker reports it lost on every frame:
no try ever finds it, which is what an object out of view does to a real detector. (The network
runs in full on every call; the discarded answers are counted in the JSON as `found`.)

Per mode: detector calls during the steps (one still running at the end counts), median and max
wall time of `step`, and tracking updates per second of the tracked target: steps (each one
updates the pick's tracker once) over the wall time from the first frame's arrival to the last
step's end. Frames arrive at `sim.camera_fps`; a step that overruns its frame period delays the
next (frames are not dropped, so every mode processes the same frames).

    python -m agent bench redetect [--frames 30] [--image-size 224] [--json PATH]
    python -m benchmarks.redetect  (the same arguments, with the sim profile)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from contextlib import closing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agent.threads import pin_math_threads
from benchmarks._cli import configured, save_results, standalone_main
from benchmarks.machine import describe, machine_info, markdown_table, preload_torch
from benchmarks.table4 import WEIGHTS_NOTE
from models.tracking.base import TrackResult
from models.types import Box, Detection, GroundTruth, TaskSpec


@dataclass(frozen=True, slots=True)
class Mode:
    name: str
    max_interval: int
    background: bool


MODES: tuple[Mode, ...] = (
    Mode("every lost frame (before)", 1, False),
    Mode("back-off", 8, False),
    Mode("back-off, background", 8, True),
)


class SwitchedDetector:
    """`start` sees the ground-truth detector, every later call the re-detector, whose answers
    for the labels in `hide` are dropped; counts calls (thread-safe) and lets a caller wait
    until none is running."""

    name = "switched"

    def __init__(self, start: Any, redetect: Any, hide: Sequence[str] = ()) -> None:
        self.start, self.redetect, self.hide = start, redetect, set(hide)
        self.started = False
        self.calls = 0
        self.found = 0  # detections the re-detector returned
        self._running = 0
        self._idle = threading.Condition()

    def detect(
        self, image: np.ndarray, phrases: Sequence[str], truth: GroundTruth | None = None
    ) -> list[Detection]:
        if not self.started:
            return list(self.start.detect(image, phrases, truth))
        with self._idle:
            self.calls += 1
            self._running += 1
        try:
            found = list(self.redetect.detect(image, phrases, truth))
        finally:
            with self._idle:
                self._running -= 1
                self._idle.notify_all()
        self.found += len(found)
        return [d for d in found if d.label not in self.hide]

    def wait_idle(self, timeout: float = 600.0) -> None:
        with self._idle:
            self._idle.wait_for(lambda: self._running == 0, timeout)


class _Blind:
    """A tracker that never finds its object (the forced-lost target)."""

    def init(self, image: np.ndarray, box: Box) -> None:
        self.box = box

    def update(self, image: np.ndarray) -> TrackResult:
        return TrackResult(self.box, 0.0, False)


class BlindingFactory:
    """Real trackers, except for boxes in `blind` (the forced-lost target's start boxes)."""

    def __init__(self, inner: Callable[[], Any], blind: Sequence[Box]) -> None:
        self.inner, self.blind = inner, list(blind)
        self.name = f"{getattr(inner, 'name', 'tracker')}, place blind"

    def __call__(self) -> Any:
        return _Switching(self.inner(), self.blind)


class _Switching:
    def __init__(self, real: Any, blind: list[Box]) -> None:
        self.real, self.blind = real, blind
        self.target: Any = real

    def init(self, image: np.ndarray, box: Box) -> None:
        self.target = _Blind() if box in self.blind else self.real
        self.target.init(image, box)

    def update(self, image: np.ndarray) -> TrackResult:
        result: TrackResult = self.target.update(image)
        return result


@dataclass(frozen=True, slots=True)
class ModeResult:
    mode: str
    steps: int
    detector_calls: int
    found: int
    redetections_taken: int
    step_median_ms: float
    step_p90_ms: float
    step_max_ms: float
    wall_s: float
    tracking_hz: float
    pick_tracked: int  # steps with a pick box
    place_lost: int  # steps without a place box


def measure_mode(
    frames: Sequence[Mapping[str, Any]],
    task: TaskSpec,
    detector: SwitchedDetector,
    tracker_factory: Any,
    segmenter: Any,
    mode: Mode,
    *,
    fps: float,
) -> ModeResult:
    """Start on `frames[0]` (ground truth), then step over the rest paced at `fps`."""
    from models.perception import PerceptionPipeline

    pipeline = PerceptionPipeline(
        detector,
        tracker_factory,
        segmenter,
        redetect_max_interval=mode.max_interval,
        redetect_in_background=mode.background,
    )
    detector.started, detector.calls, detector.found = False, 0, 0
    step_ms: list[float] = []
    pick = place_lost = 0
    with closing(pipeline):
        first = pipeline.start(task, frames[0])
        detector.started = True
        views = list(frames[0])
        for view in views:
            if first.boxes[view]["pick"] is None or first.boxes[view]["place"] is None:
                raise RuntimeError(f"ground truth did not find both objects in view {view!r}")
        t0 = time.perf_counter()
        for i, views_frames in enumerate(frames[1:]):
            wait = t0 + i / fps - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            ts = time.perf_counter()
            percept = pipeline.step(views_frames)
            step_ms.append((time.perf_counter() - ts) * 1e3)
            pick += all(percept.boxes[v]["pick"] is not None for v in views)
            place_lost += all(percept.boxes[v]["place"] is None for v in views)
        wall = time.perf_counter() - t0
        taken = percept.redetections
    detector.wait_idle()  # a background call still running: let it end before the next mode
    calls = detector.calls
    ordered = sorted(step_ms)
    return ModeResult(
        mode=mode.name,
        steps=len(step_ms),
        detector_calls=calls,
        found=detector.found,
        redetections_taken=taken,
        step_median_ms=round(statistics.median(step_ms), 2),
        step_p90_ms=round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 2),
        step_max_ms=round(max(step_ms), 2),
        wall_s=round(wall, 2),
        tracking_hz=round(len(step_ms) / wall, 2),
        pick_tracked=pick,
        place_lost=place_lost,
    )


def run_benchmark(
    config: Any,
    *,
    n_frames: int = 30,
    image_size: int = 224,
    threads: int = 1,
    workdir: Path | None = None,
    out: Any = None,
) -> dict[str, Any]:
    """Build Grounding DINO (random weights), render the frames, run the three modes."""
    from agent.backends import build_perception
    from benchmarks.tracking_iou import EPISODES, expert_frames
    from models.detection.ground_truth import GroundTruthDetector
    from models.detection.grounding_dino import resized_shape
    from models.detection.standin import standin_bert, write_grounding_dino
    from models.tracking import OpenCVTrackerFactory

    out = out or sys.stdout
    pin_math_threads(threads, torch=True)
    preload_torch()  # before MuJoCo renders (benchmarks.machine.preload_torch says why)
    episode = EPISODES[1]  # apple into bowl
    task = TaskSpec(episode.label, episode.skill, pick=episode.pick, place=episode.place)
    with tempfile.TemporaryDirectory() as tmp:
        folder = workdir or Path(tmp)
        print("building Grounding DINO Swin-T with random weights ...", file=out, flush=True)
        bert = standin_bert(folder / "bert", [episode.pick, episode.place])
        checkpoint = folder / "groundingdino_swint_ogc.pth"
        write_grounding_dino("swint_ogc", bert, checkpoint)
        gdino_config = configured(
            config,
            {
                "models.detector": "grounding_dino",
                "models.tracker": "kcf",
                "models.segmenter": "ground_truth",
                "grounding_dino.variant": "swint_ogc",
                "grounding_dino.checkpoint": str(checkpoint),
                "grounding_dino.text_encoder": str(bert),
                "grounding_dino.config_path": None,
                "grounding_dino.image_size": image_size,
                "grounding_dino.max_size": max(image_size, config.grounding_dino.max_size),
                "runtime.torch_threads": threads,
            },
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # timm / groundingdino deprecation noise
            gdino, _, segmenter = build_perception(gdino_config)
        checkpoint.unlink()
    view = config.cameras.views[0]
    size = config.sim.image_width
    print(f"rendering {n_frames + 1} frames of view {view!r} ...", file=out, flush=True)
    recorded = expert_frames(
        episode, views=[view], size=size, camera_hz=config.sim.camera_fps, max_steps=n_frames + 1
    )[: n_frames + 1]
    frames = [{view: views[view]} for views in recorded]
    truth = GroundTruthDetector()
    first = {
        d.label: d.box
        for d in truth.detect(frames[0][view].rgb, task_phrases(task), frames[0][view])
    }
    factory = BlindingFactory(OpenCVTrackerFactory("kcf"), [first[episode.place]])
    detector = SwitchedDetector(truth, gdino, hide=[episode.place])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        detector.started = True
        detector.detect(frames[0][view].rgb, task_phrases(task), None)  # warm-up, not counted
    results = []
    for mode in MODES:
        print(f"mode: {mode.name} ...", file=out, flush=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = measure_mode(
                frames, task, detector, factory, segmenter, mode, fps=config.sim.camera_fps
            )
        results.append(result)
        print(format_table([result]).splitlines()[-1], f"found {result.found}", file=out)
    h, w = resized_shape(size, size, image_size, gdino_config.grounding_dino.max_size)
    info = machine_info()
    return {
        "machine": info,
        "settings": {
            "frames": n_frames,
            "view": view,
            "image": f"{size}x{size}",
            "model_input": f"{w}x{h}",
            "camera_fps": config.sim.camera_fps,
            "threads": threads,
            "redetect_max_interval": MODES[1].max_interval,
        },
        "rows": [asdict(r) for r in results],
        "caption": caption(info, n_frames, size, w, h, config.sim.camera_fps, threads),
    }


def task_phrases(task: TaskSpec) -> list[str]:
    return [name for name in (task.pick, task.place) if name is not None]


def caption(
    info: dict[str, Any], n: int, size: int, w: int, h: int, fps: float, threads: int
) -> str:
    return (
        f"Re-detection of a target that stays lost, on {describe(info)}; {threads} thread(s) for "
        f"torch and OpenCV. {n} sim frames ({size}x{size}, one view) paced at {fps:g} fps; pick "
        f"tracked by KCF, place forced lost; re-detections by Grounding DINO Swin-T at model "
        f"input {w}x{h} with BERT-base text, {WEIGHTS_NOTE}. Tracking updates/s: steps (one "
        "pick-tracker update each) over the wall time from the first frame to the last step."
    )


def format_table(rows: Sequence[ModeResult]) -> str:
    columns = ["mode", "steps", "detector calls", "step median ms", "step p90 ms"]
    columns += ["step max ms", "wall s", "tracking updates/s", "pick tracked", "place lost"]
    return markdown_table(columns, (_cells(r) for r in rows))


def _cells(r: ModeResult) -> list[object]:
    ms = [f"{v:,.1f}" for v in (r.step_median_ms, r.step_p90_ms, r.step_max_ms, r.wall_s)]
    tracked = [f"{r.pick_tracked}/{r.steps}", f"{r.place_lost}/{r.steps}"]
    return [r.mode, r.steps, r.detector_calls, *ms, f"{r.tracking_hz:.2f}", *tracked]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", type=int, default=30, help="steps after the first frame")
    parser.add_argument(
        "--image-size", type=int, default=224, help="Grounding DINO's model input (short side)"
    )
    parser.add_argument(
        "--threads", type=int, help="torch / OpenCV threads (runtime.torch_threads)"
    )
    parser.add_argument(
        "--json", type=Path, help="result file (default: results/redetect-<device>)"
    )


def run(args: argparse.Namespace, config: Any, out: Any = None) -> int:
    out = out or sys.stdout
    if args.frames < 2 or args.image_size < 32:
        print("error: --frames must be >= 2 and --image-size >= 32", file=sys.stderr)
        return 2
    result = run_benchmark(
        config,
        n_frames=args.frames,
        image_size=args.image_size,
        threads=args.threads or config.runtime.torch_threads,
        out=out,
    )
    table = format_table([ModeResult(**row) for row in result["rows"]])
    print(f"\n{result['caption']}\n\n{table}", file=out)
    save_results("redetect", result, table, args.json, False, out)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return standalone_main("python -m benchmarks.redetect", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
