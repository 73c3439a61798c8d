"""A run folder: the event log (JSON lines), the summary (JSON) and a video of both camera views.

The event log is appended and flushed line by line, so a crash loses at most the line being
written. The video shows what the policy saw: each view with the pick mask tinted green, the place
mask blue, the tracked boxes, and the newest step's numbers underneath.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import anyio
import cv2
import numpy as np
import structlog

from agent.channels import Latest
from agent.config import Config
from agent.events import Event, Outcome, Step, WorldStart, describe_task
from agent.messages import PerceptMsg
from models.perception import Percept
from models.types import PICK_MASK_VALUE, PLACE_MASK_VALUE, TaskSpec

log = structlog.get_logger("agent.recording")

ROLE_COLOURS = {"pick": (60, 220, 60), "place": (60, 140, 255)}  # RGB


def draw_overlay(percept: Percept, caption: str = "") -> np.ndarray:
    """Both views side by side with masks, boxes and a caption strip, as one RGB uint8 image."""
    panels = []
    for view, image in percept.images.items():
        panel = image.copy()
        mask = percept.masks.get(view)
        if mask is not None:
            for role, value in (("pick", PICK_MASK_VALUE), ("place", PLACE_MASK_VALUE)):
                region = np.isclose(mask, value)
                tint = np.array(ROLE_COLOURS[role], dtype=np.float32)
                panel[region] = (0.5 * panel[region] + 0.5 * tint).astype(np.uint8)
        for role, box in percept.boxes.get(view, {}).items():
            if box is None:
                continue
            p0 = (int(box.x0), int(box.y0))
            p1 = (int(box.x1) - 1, int(box.y1) - 1)
            cv2.rectangle(panel, p0, p1, ROLE_COLOURS[role], 1)
            cv2.putText(
                panel,
                role,
                (p0[0], max(8, p0[1] - 2)),
                cv2.FONT_HERSHEY_PLAIN,
                0.7,
                ROLE_COLOURS[role],
                1,
                cv2.LINE_AA,
            )
        cv2.putText(
            panel, view, (3, 11), cv2.FONT_HERSHEY_PLAIN, 0.8, (255, 255, 255), 1, cv2.LINE_AA
        )
        panels.append(panel)
    height = max(p.shape[0] for p in panels)
    row = np.concatenate([_pad_to(p, height) for p in panels], axis=1)
    strip = np.zeros((16, row.shape[1], 3), dtype=np.uint8)
    cv2.putText(
        strip, caption, (3, 12), cv2.FONT_HERSHEY_PLAIN, 0.8, (230, 230, 230), 1, cv2.LINE_AA
    )
    return np.concatenate([row, strip], axis=0)


def _pad_to(image: np.ndarray, height: int) -> np.ndarray:
    if image.shape[0] == height:
        return image
    pad = np.zeros((height - image.shape[0], image.shape[1], 3), dtype=np.uint8)
    return np.concatenate([image, pad], axis=0)


class VideoWriter:
    """MP4 (H.264, through the ffmpeg binary that imageio-ffmpeg ships) or GIF (Pillow).

    ffmpeg is started with `subprocess` directly rather than through imageio-ffmpeg's writer,
    which forks with a `preexec_fn`: a full fork() of a process whose render and tracker threads
    hold native locks can deadlock (seen here: the whole runtime hung). `process_group=0` keeps
    Ctrl-C away from the encoder without a preexec_fn, so the video is still finalised.
    """

    def __init__(self, path: Path, fps: float) -> None:
        self.path = path
        self.fps = fps
        self.frames = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._size: tuple[int, int] = (0, 0)
        self._gif: list[Any] = []

    def add(self, image: np.ndarray) -> None:
        if self.path.suffix == ".gif":
            from PIL import Image

            self._gif.append(Image.fromarray(image))
        else:
            if self._proc is None:
                self._start(image.shape[1], image.shape[0])
            if (image.shape[1], image.shape[0]) != self._size:
                image = cv2.resize(image, self._size)
            assert self._proc is not None and self._proc.stdin is not None
            self._proc.stdin.write(np.ascontiguousarray(image).tobytes())
        self.frames += 1

    def _start(self, width: int, height: int) -> None:
        import imageio_ffmpeg

        self._size = (width, height)
        command = [
            imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-v", "error",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
            "-r", f"{self.fps:g}", "-i", "-",
            "-an", "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2",  # H.264 needs even sizes
            "-c:v", "libx264", "-pix_fmt", "yuv420p", "-movflags", "+faststart",
            str(self.path),
        ]  # fmt: skip
        self._proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, process_group=0,
        )  # fmt: skip

    def close(self) -> None:
        if self._proc is not None:
            proc, self._proc = self._proc, None
            assert proc.stdin is not None
            assert proc.stderr is not None
            proc.stdin.close()  # end of input: ffmpeg writes the trailer and exits
            err = proc.stderr.read()
            if proc.wait(timeout=60) != 0:
                raise RuntimeError(f"ffmpeg failed ({proc.returncode}): {err.decode()[-300:]}")
        if self._gif:
            self._gif[0].save(
                self.path,
                save_all=True,
                append_images=self._gif[1:],
                duration=int(1000 / self.fps),
                loop=0,
            )
            self._gif = []


class RunRecorder:
    """Writes one execution's run folder; the runtime feeds it events and percepts."""

    def __init__(self, run_dir: Path, config: Config) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.events_path = self.run_dir / "events.jsonl"
        self.summary_path = self.run_dir / "summary.json"
        self.video_path: Path | None = None
        self._events = self.events_path.open("a", buffering=1, encoding="utf-8")
        self._config = config
        self._video: VideoWriter | None = None
        if config.output.video:
            self.video_path = self.run_dir / f"video.{config.output.video_format}"
            self._video = VideoWriter(self.video_path, config.output.video_fps)
        self._caption = ""
        self._task: TaskSpec | None = None
        self._world: WorldStart | None = None
        (self.run_dir / "config.json").write_text(config.model_dump_json(indent=2))

    def set_task(self, task: TaskSpec) -> None:
        self._task = task

    def set_world(self, world: WorldStart) -> None:
        """Which world the task starts in (reset or carried over); goes into the summary."""
        self._world = world

    def write_event(self, event: Event) -> None:
        self._events.write(event.to_json() + "\n")
        if isinstance(event, Step):
            total = event.latency_ms.get("total", 0.0)
            self._caption = (
                f"step {event.index}  {'closed' if event.gripper_closed else 'open'}"
                f"  {'' if event.executed else 'STALE  '}capture->command {total:.0f} ms"
            )

    async def record_loop(self, percepts: Latest[PerceptMsg]) -> None:
        """Draw and encode each new percept in a worker thread (dropping frames if it lags)."""
        if self._video is None:
            await anyio.sleep_forever()
        reader = percepts.reader()
        while True:
            msg = await reader.next()
            caption = self._caption
            if self._task is not None and not caption:
                task = self._task
                caption = describe_task(task.skill.value, task.pick, task.place)
            await anyio.to_thread.run_sync(self._add_frame, msg.percept, caption)

    def _add_frame(self, percept: Percept, caption: str) -> None:
        assert self._video is not None
        self._video.add(draw_overlay(percept, caption))

    def finish(self, outcome: Outcome) -> None:
        """Close the video and write the summary; safe to call once at the end of the episode."""
        self._events.close()
        video_frames = 0
        if self._video is not None:
            video_frames = self._video.frames
            try:
                self._video.close()
            except Exception as exc:  # a broken encoder must not lose the summary
                log.error("video encoding failed", error=str(exc))
        summary = {
            "outcome": outcome.model_dump(),
            "task": None
            if self._task is None
            else {
                "request": self._task.request,
                "skill": self._task.skill.value,
                "pick": self._task.pick,
                "place": self._task.place,
                "rationale": self._task.rationale,
            },
            "world": None if self._world is None else self._world.model_dump(),
            "files": {
                "events": self.events_path.name,
                "video": self.video_path.name if self.video_path and video_frames else None,
                "config": "config.json",
            },
            "video_frames": video_frames,
        }
        self.summary_path.write_text(json.dumps(summary, indent=2))
