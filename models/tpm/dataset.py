"""Demonstration dataset: a zarr store in diffusion_policy's ReplayBuffer layout, made crash-safe.

Why zarr in this layout: it is what diffusion_policy (and robomimic-derived tools) read, it is
chunked and compressed per array (Blosc zstd), it appends along time without rewriting what is
there, and zarr's local store writes every chunk and metadata file atomically (temporary file,
then rename), so a killed writer leaves each file either old or new, never torn. HDF5 is not
safe against a killed writer (one file, in-place metadata), and a LeRobot dataset encodes video
per episode with ffmpeg: heavier to write and lossy for the masks.

Layout::

    root.zarr/
      data/rgb      (N, V, S, S, 3) uint8   the views, resized to the policy's input size
      data/mask     (N, V, S, S)    uint8   role codes: 0 background, 1 place, 2 pick (the values
                                            are the episode skill's in `MASK_CODING`, see
                                            `mask_codes`)
      data/proprio  (N, 4)          float32 [x, y, z, gripper_closed] before the action
      data/action   (N, 4)          float32 [dx, dy, dz, gripper_closed] (metres, {0, 1})
      data/phase    (N,)            uint8   the expert's phase index (for frame repetition)
      meta/episode_ends (E,)        int64   exclusive end step of each episode: the commit point
      attrs: views, image_size, episodes (one dict per committed episode: task, scene, seed),
             open_episode (set while an episode is being recorded), counts of discarded episodes

Crash safety: an episode is buffered in memory, then its steps are appended, its metadata added,
and finally `episode_ends` grows by one (the commit). Opening the store truncates every data
array to the last committed end and drops metadata beyond the committed count, so a crash at any
point loses at most the episode in progress; `open_episode` left behind says which one it was.
Reading it for training is `arrays`; the role codes are `mask_codes`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models._loading import require
from models.tpm.mask_codes import encode_mask

FORMAT = "tpm-replay-buffer/1"
CHUNK_STEPS = 64


class DatasetError(ValueError):
    """The dataset is missing, of another format, or does not fit what is asked of it."""


@dataclass
class _Buffer:
    rgb: list[np.ndarray] = field(default_factory=list)
    mask: list[np.ndarray] = field(default_factory=list)
    proprio: list[np.ndarray] = field(default_factory=list)
    action: list[np.ndarray] = field(default_factory=list)
    phase: list[int] = field(default_factory=list)


def _writer_lock(root: Path) -> None:
    """An exclusive lock on `root` for this process's lifetime: one writer per dataset.

    Two writers appending at once would interleave their steps (each computes the same append
    offset); the second one is refused with the holder's pid instead. `flock` dies with its
    process, so a crashed writer never leaves a stale lock behind. Within one process the lock
    is shared (a store reopened by the same program, as after a recovery, is not a second writer).
    """
    import fcntl
    import os

    root.mkdir(parents=True, exist_ok=True)
    key = str(root.resolve())
    if key in _HELD_LOCKS:
        return
    handle = (root / ".writer.lock").open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "?"
        handle.close()
        raise DatasetError(
            f"{root} is being written by another process (pid {holder}); one writer at a time "
            "(collect into another --out and train on both with --data A --data B)"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    _HELD_LOCKS[key] = handle


_HELD_LOCKS: dict[str, Any] = {}


def _zarr() -> Any:
    return require("zarr", "tpm", error=DatasetError)


class EpisodeStore:
    """Open (or create) a dataset for reading and appending; see the module docstring.

    `recovered` tells what opening found and repaired: None for a clean store, else one line (an
    episode left incomplete by a crash, with its metadata).
    """

    def __init__(
        self,
        root: str | Path,
        *,
        views: Sequence[str] | None = None,
        image_size: int | None = None,
        create: bool = False,
        read_only: bool = False,
    ) -> None:
        zarr = _zarr()
        self.root = Path(root)
        self.read_only = read_only
        exists = (self.root / "zarr.json").is_file()
        if not exists and (not create or read_only):
            raise DatasetError(f"no dataset at {self.root} (run `python -m agent collect` first)")
        if not read_only:
            _writer_lock(self.root)  # held (module-level) for the rest of this process
        self._group = zarr.open_group(str(self.root), mode="r" if read_only else "a")
        if not exists:
            if views is None or image_size is None:
                raise DatasetError("a new dataset needs its views and image size")
            self._create(tuple(views), int(image_size))
        attrs = self._group.attrs
        if attrs.get("format") != FORMAT:
            raise DatasetError(f"{self.root} is not a {FORMAT} dataset")
        self.views: tuple[str, ...] = tuple(attrs["views"])
        self.image_size: int = int(attrs["image_size"])
        if views is not None and tuple(views) != self.views:
            raise DatasetError(f"dataset views are {self.views}, asked for {tuple(views)}")
        if image_size is not None and int(image_size) != self.image_size:
            raise DatasetError(f"dataset images are {self.image_size} px, asked for {image_size}")
        self._data = self._group["data"]
        self._ends = self._group["meta/episode_ends"]
        self.recovered = self._recover()
        self._buffer: _Buffer | None = None
        self._info: dict[str, Any] = {}

    def _create(self, views: tuple[str, ...], size: int) -> None:
        zarr = _zarr()
        from zarr.codecs import BloscCodec

        blosc = BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle")
        v = len(views)
        data = self._group.create_group("data")
        specs: dict[str, tuple[tuple[int, ...], str]] = {
            "rgb": ((v, size, size, 3), "uint8"),
            "mask": ((v, size, size), "uint8"),
            "proprio": ((4,), "float32"),
            "action": ((4,), "float32"),
            "phase": ((), "uint8"),
        }
        for name, (shape, dtype) in specs.items():
            data.create_array(
                name,
                shape=(0, *shape),
                chunks=(CHUNK_STEPS, *shape),
                dtype=dtype,
                compressors=blosc,
                fill_value=0,
            )
        meta = self._group.create_group("meta")
        meta.create_array("episode_ends", shape=(0,), chunks=(4096,), dtype="int64", fill_value=0)
        del zarr
        self._group.attrs.update(
            {
                "format": FORMAT,
                "views": list(views),
                "image_size": size,
                "episodes": [],
                "open_episode": None,
                "discarded": 0,
                "created": time.time(),
            }
        )

    # ------------------------------------------------------------------ integrity

    def _committed_ends(self) -> np.ndarray:
        ends = np.asarray(self._ends[:], dtype=np.int64)
        # a crash between growing the array and writing its chunk leaves a fill value (0) at the
        # end: only a strictly increasing prefix is committed
        ok = len(ends)
        for i in range(len(ends)):
            if ends[i] <= (ends[i - 1] if i else 0):
                ok = i
                break
        return ends[:ok]

    def _recover(self) -> str | None:
        """Cut everything back to the last commit (only in memory when read-only); say what."""
        ends = self._committed_ends()
        self._n_episodes = len(ends)
        self._n_steps = int(ends[-1]) if len(ends) else 0
        notes = []
        attrs = self._group.attrs
        open_episode = attrs.get("open_episode")
        if open_episode is not None:
            seed = open_episode.get("seed") if isinstance(open_episode, dict) else None
            state = "is being recorded or was" if self.read_only else "was"
            notes.append(f"the last episode (seed {seed}) {state} incomplete; not in the data")
        for name in ("rgb", "mask", "proprio", "action", "phase"):
            arr = self._data[name]
            if arr.shape[0] > self._n_steps:
                notes.append(f"{arr.shape[0] - self._n_steps} uncommitted steps ignored")
                break
        if not self.read_only:
            if len(ends) != self._ends.shape[0]:
                self._ends.resize((len(ends),))
            for name in ("rgb", "mask", "proprio", "action", "phase"):
                arr = self._data[name]
                if arr.shape[0] != self._n_steps:
                    arr.resize((self._n_steps, *arr.shape[1:]))
            episodes = list(attrs.get("episodes", []))
            if len(episodes) != len(ends):
                attrs["episodes"] = episodes[: len(ends)]
            if open_episode is not None:
                attrs.update(
                    {"open_episode": None, "incomplete": int(attrs.get("incomplete", 0)) + 1}
                )
        return "; ".join(notes) or None

    # ------------------------------------------------------------------ reading

    @property
    def episode_ends(self) -> np.ndarray:
        return np.asarray(self._ends[: self._n_episodes], dtype=np.int64)

    @property
    def n_episodes(self) -> int:
        return self._n_episodes

    @property
    def n_steps(self) -> int:
        return self._n_steps

    @property
    def episodes(self) -> list[dict[str, Any]]:
        return list(self._group.attrs.get("episodes", []))[: self._n_episodes]

    @property
    def attrs(self) -> Mapping[str, Any]:
        return dict(self._group.attrs)

    def array(self, name: str) -> np.ndarray:
        """A whole data array in memory (the loader keeps the small CPU datasets in RAM)."""
        return np.asarray(self._data[name][: self._n_steps])

    # ------------------------------------------------------------------ writing

    def begin_episode(self, info: Mapping[str, Any]) -> None:
        """Start buffering an episode; `info` (task, seed, scene) is stored when it commits."""
        if self.read_only:
            raise DatasetError(f"{self.root} was opened read-only")
        if self._buffer is not None:
            raise RuntimeError("begin_episode while another episode is open")
        self._buffer = _Buffer()
        self._info = dict(info)
        self._group.attrs["open_episode"] = self._info

    def add_step(
        self,
        rgb: np.ndarray,
        mask: np.ndarray,
        proprio: np.ndarray,
        action: np.ndarray,
        phase: int = 0,
    ) -> None:
        """One control step: rgb (V, S, S, 3) uint8, float role masks (V, S, S), proprio, action."""
        if self._buffer is None:
            raise RuntimeError("add_step before begin_episode")
        v, s = len(self.views), self.image_size
        if rgb.shape != (v, s, s, 3) or mask.shape != (v, s, s):
            raise DatasetError(f"step shapes {rgb.shape} / {mask.shape} do not fit {v} x {s} px")
        self._buffer.rgb.append(np.asarray(rgb, dtype=np.uint8))
        self._buffer.mask.append(encode_mask(mask))
        self._buffer.proprio.append(np.asarray(proprio, dtype=np.float32).reshape(4))
        self._buffer.action.append(np.asarray(action, dtype=np.float32).reshape(4))
        self._buffer.phase.append(int(phase))

    def end_episode(self, keep: bool = True, **extra: Any) -> bool:
        """Commit the buffered episode (keep=True and it has steps) or discard it; returns kept."""
        buf, self._buffer = self._buffer, None
        if buf is None:
            raise RuntimeError("end_episode without begin_episode")
        attrs = self._group.attrs
        if not keep or not buf.action:
            attrs.update({"open_episode": None, "discarded": int(attrs.get("discarded", 0)) + 1})
            return False
        columns = {
            "rgb": np.stack(buf.rgb),
            "mask": np.stack(buf.mask),
            "proprio": np.stack(buf.proprio),
            "action": np.stack(buf.action),
            "phase": np.asarray(buf.phase, dtype=np.uint8),
        }
        for name, values in columns.items():
            self._data[name].append(values, axis=0)
        end = self._n_steps + len(buf.action)
        episodes = [*self.episodes, {**self._info, **extra, "length": len(buf.action)}]
        attrs["episodes"] = episodes
        self._ends.append(np.array([end], dtype=np.int64))  # the commit point
        self._n_episodes, self._n_steps = self._n_episodes + 1, end
        attrs["open_episode"] = None
        return True

    def abort_episode(self) -> None:
        """Drop the episode being recorded, if any (counted as discarded)."""
        if self._buffer is not None:
            self.end_episode(keep=False)

    def bump(self, key: str, by: int = 1) -> None:
        """Increment a counter in the attributes (e.g. expert failures)."""
        self._group.attrs[key] = int(self._group.attrs.get(key, 0)) + by
