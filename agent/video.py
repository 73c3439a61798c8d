"""The run folder's video: what the policy saw, drawn and encoded frame by frame.

`draw_overlay` draws both camera views side by side, each with the pick mask tinted green, the
place mask blue, the tracked boxes, and a caption strip (the newest step's numbers) underneath.
`VideoWriter` encodes such frames as MP4 or GIF. The run folder's recorder (`agent.recording`)
feeds them; kept apart because drawing and encoding are image work, not the run folder's files.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from models.perception import Percept
from models.types import MASK_CODING

ROLE_COLOURS = {"pick": (60, 220, 60), "place": (60, 140, 255)}  # RGB
#: mask values per role, whatever the skill (the place target's value depends on it)
ROLE_VALUES = {
    "pick": np.array([MASK_CODING.pick, MASK_CODING.drawer], dtype=np.float32),
    "place": np.array(sorted(MASK_CODING.place.values()), dtype=np.float32),
}


def draw_overlay(percept: Percept, caption: str = "") -> np.ndarray:
    """Both views side by side with masks, boxes and a caption strip, as one RGB uint8 image."""
    panels = []
    for view, image in percept.images.items():
        panel = image.copy()
        mask = percept.masks.get(view)
        if mask is not None:
            for role, values in ROLE_VALUES.items():
                region = np.isin(mask, values)
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
