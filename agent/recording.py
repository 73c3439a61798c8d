"""A run folder: the event log (JSON lines), the summary (JSON) and a video of both camera views.

The event log is appended and flushed line by line, so a crash loses at most the line being
written. The video shows what the policy saw (drawn and encoded by `agent.video`).

A run folder is claimed when it is named (`new_run_folder` creates it; two runs never share one)
and checked before anything moves: a folder that cannot be written is a `RunFolderError` then.
A write that fails later (a full disk) degrades the run to no recording (`RecordingError`, which
the runtime turns into a Fault event); it never ends the episode. `config.json` and
`summary.json` are written whole or not at all (a temporary file, then `os.replace`), and a video
the encoder could not finish is removed rather than left truncated.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Collection
from pathlib import Path
from typing import IO, Any

import anyio
import structlog

from agent.channels import Latest
from agent.config import Config
from agent.events import Event, Outcome, Step, WorldStart, describe_task
from agent.messages import PerceptMsg
from agent.video import VideoWriter, draw_overlay
from models.perception import Percept
from models.types import TaskSpec

log = structlog.get_logger("agent.recording")


class RunFolderError(Exception):
    """A run folder cannot be created or written (raised before anything moves)."""


class RecordingError(Exception):
    """Writing the run folder failed mid-run; the recorder has stopped recording."""


def _stamp() -> str:
    return dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def new_run_folder(runs_dir: Path, request: str) -> Path:
    """Create and return a new run folder, e.g. runs/20261125-190102-i-spilled-the-milk.

    The folder is claimed by creating it (`mkdir` fails if it exists), so two runs of the same
    request in the same second, in one process or two, get different folders (`...-2`, `...-3`).
    The folder is checked for writing too; any problem is a RunFolderError naming the folder.
    """
    slug = re.sub(r"[^a-z0-9]+", "-", request.lower()).strip("-")[:40] or "run"
    stamp = _stamp()
    runs_dir = Path(runs_dir)
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunFolderError(_cannot(runs_dir, exc)) from None
    for suffix in range(1, 10_000):
        folder = runs_dir / (f"{stamp}-{slug}" if suffix == 1 else f"{stamp}-{slug}-{suffix}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            raise RunFolderError(_cannot(folder, exc)) from None
        try:
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as exc:
            _remove_empty(folder)
            raise RunFolderError(_cannot(folder, exc)) from None
        return folder
    raise RunFolderError(f"cannot write run folders in {runs_dir}: too many named {stamp}-{slug}")


RUN_FOLDER_NAME = re.compile(r"\d{8}-\d{6}-[a-z0-9][a-z0-9-]*")  # as new_run_folder names them
UNFINISHED_GRACE_S = 3600.0  # a run folder without a summary, changed this recently, is running


def prune_run_folders(
    runs_dir: Path,
    *,
    keep_runs: int | None,
    keep_bytes: int | None,
    protect: Collection[Path] = (),
    now: float | None = None,
) -> list[Path]:
    """Delete the oldest run folders in `runs_dir` beyond `keep_runs` folders or `keep_bytes`
    bytes in all (None: no such limit); return the deleted ones, oldest first.

    Only folders named as `new_run_folder` names them count; anything else is left alone. Never
    deleted: the folders in `protect` (the run just finished), and a folder without a
    summary.json changed within UNFINISHED_GRACE_S (a run in progress, maybe in another process);
    both still count toward the limits. Oldest means the earliest time stamp in the name.
    """
    now = time.time() if now is None else now
    keep = {Path(p).resolve() for p in protect}
    folders: list[tuple[str, float, Path, int]] = []
    try:
        entries = list(os.scandir(runs_dir))
    except OSError as exc:  # no runs folder yet, or one we may not read: nothing to delete
        if not isinstance(exc, FileNotFoundError):
            log.warning("cannot list the run folders", runs_dir=str(runs_dir), error=str(exc))
        return []
    for entry in entries:
        if RUN_FOLDER_NAME.fullmatch(entry.name) and entry.is_dir(follow_symlinks=False):
            size, newest = _folder_size_and_mtime(Path(entry.path))
            folders.append((entry.name[:15], newest, Path(entry.path), size))
    folders.sort()
    count, total = len(folders), sum(f[3] for f in folders)
    removed: list[Path] = []
    for _, newest, folder, size in folders:
        over_count = keep_runs is not None and count > keep_runs
        over_bytes = keep_bytes is not None and total > keep_bytes
        if not (over_count or over_bytes):
            break
        running = not (folder / "summary.json").exists() and now - newest < UNFINISHED_GRACE_S
        if folder.resolve() in keep or running:
            continue
        try:
            shutil.rmtree(folder)
        except OSError as exc:
            log.warning("cannot delete an old run folder", folder=str(folder), error=str(exc))
            continue
        removed.append(folder)
        count, total = count - 1, total - size
    return removed


def _folder_size_and_mtime(folder: Path) -> tuple[int, float]:
    """Bytes of the files under `folder` and the newest modification time there."""
    size, newest = 0, 0.0
    for parent, _, files in os.walk(folder):
        for name in [".", *files]:
            with contextlib.suppress(OSError):
                stat = os.lstat(os.path.join(parent, name))
                size += stat.st_size if name != "." else 0
                newest = max(newest, stat.st_mtime)
    return size, newest


def _cannot(path: Path, exc: OSError) -> str:
    # mkdir(exist_ok=True) says "File exists" when a file is in the way: say that instead
    why = "a file is in the way" if isinstance(exc, FileExistsError) else exc.strerror or exc
    where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(path) else ""
    return f"cannot write the run folder {path}: {why}{where}"


def _remove_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):
        folder.rmdir()


def write_json_atomic(path: Path, data: Any) -> None:
    """Write `data` as JSON to `path` whole or not at all: the old file (or none) survives a crash.

    The JSON goes to a temporary file in the same folder, is flushed to the disk, and then
    replaces `path` in one `os.replace`; on any error the temporary file is removed.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=2)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class RunRecorder:
    """Writes one execution's run folder; the runtime feeds it events and percepts.

    Opening checks the folder (RunFolderError: nothing is half-created); the folder must not hold
    another run's event log already. After a failed write (`RecordingError` from `write_event`,
    an exception from `record_loop`) it records nothing more, but `finish` still closes the video
    and tries to write the summary.
    """

    def __init__(self, run_dir: Path, config: Config) -> None:
        self.run_dir = Path(run_dir)
        self.events_path = self.run_dir / "events.jsonl"
        self.summary_path = self.run_dir / "summary.json"
        self.video_path: Path | None = None
        self.error: str | None = None  # why the event log stopped mid-run (then all recording)
        self.video_error: str | None = None  # why the video stopped mid-run
        self._config = config
        self._video: VideoWriter | None = None
        self._caption = ""
        self._task: TaskSpec | None = None
        self._world: WorldStart | None = None
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunFolderError(_cannot(self.run_dir, exc)) from None
        try:
            # "x": a second run never appends to another run's log; unbuffered: each event is
            # on the disk when write_event returns, and nothing is left to flush at close
            self._events: IO[bytes] = self.events_path.open("xb", buffering=0)
        except FileExistsError:
            raise RunFolderError(
                f"the run folder {self.run_dir} already holds a run; give each run a new folder"
            ) from None
        except OSError as exc:
            raise RunFolderError(_cannot(self.run_dir, exc)) from None
        self._logged = 0  # bytes of whole events in the log
        try:
            write_json_atomic(self.run_dir / "config.json", config.model_dump(mode="json"))
        except BaseException as exc:
            self._events.close()  # leave the folder as it was: no half-begun run in it
            with contextlib.suppress(OSError):
                self.events_path.unlink()
            if isinstance(exc, OSError):
                raise RunFolderError(_cannot(self.run_dir, exc)) from None
            raise
        if config.output.video:
            self.video_path = self.run_dir / f"video.{config.output.video_format}"
            self._video = VideoWriter(self.video_path, config.output.video_fps)

    def set_task(self, task: TaskSpec) -> None:
        self._task = task

    def set_world(self, world: WorldStart) -> None:
        """Which world the task starts in (reset or carried over); goes into the summary."""
        self._world = world

    def write_event(self, event: Event) -> None:
        """Append one event; a failed write stops recording and raises RecordingError once."""
        if self.error is not None:
            return
        line = (event.to_json() + "\n").encode("utf-8")
        try:
            self._append(line)
        except OSError as exc:
            self.error = f"writing {self.events_path} failed: {exc.strerror or exc}"
            log.error("recording stopped", error=self.error)
            with contextlib.suppress(OSError):  # drop a partly written line: the log parses
                os.ftruncate(self._events.fileno(), self._logged)  # to its last whole event
            raise RecordingError(f"{self.error}; recording stopped, the task goes on") from None
        self._logged += len(line)
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
        reader = percepts.watcher()  # a sink: neither demand for percepts nor their drop count
        while self.error is None and self.video_error is None:
            msg = await reader.next()
            caption = self._caption
            if self._task is not None and not caption:
                task = self._task
                caption = describe_task(task.skill.value, task.pick, task.place)
            await anyio.to_thread.run_sync(self._add_frame, msg.percept, caption)

    def _append(self, data: bytes) -> None:
        """The one place the event log is written: all of `data`, or OSError."""
        view = memoryview(data)
        while view:
            view = view[self._events.write(view) or 0 :]

    def _add_frame(self, percept: Percept, caption: str) -> None:
        assert self._video is not None
        try:
            self._video.add(draw_overlay(percept, caption))
        except Exception as exc:
            self.video_error = f"video: {type(exc).__name__}: {exc}"
            raise

    def finish(self, outcome: Outcome) -> None:
        """Close the video and write the summary; safe to call once at the end of the episode.

        Never raises: the episode has ended and its outcome is already on its way to the caller.
        """
        try:
            self._events.close()
        except OSError as exc:
            self.error = self.error or f"closing {self.events_path} failed: {exc.strerror or exc}"
        video_frames = 0
        if self._video is not None:
            video_frames = self._video.frames
            try:
                self._video.close()
            except Exception as exc:  # a broken encoder must not lose the summary
                log.error("video encoding failed; the unfinished video is removed", error=str(exc))
                self.video_error = self.video_error or f"video: {type(exc).__name__}: {exc}"
                video_frames = 0
                if self.video_path is not None:
                    with contextlib.suppress(OSError):  # never leave a truncated video
                        self.video_path.unlink(missing_ok=True)
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
            # None: every event and every frame drawn was written
            "recording_error": "; ".join(e for e in (self.error, self.video_error) if e) or None,
        }
        try:
            write_json_atomic(self.summary_path, summary)
        except Exception as exc:
            log.error("writing the summary failed", path=str(self.summary_path), error=str(exc))
