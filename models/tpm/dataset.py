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
                                            are the episode skill's in `MASK_CODING`)
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
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models._loading import require
from models.types import MASK_CODING, PICK_MASK_VALUE, PLACE_MASK_VALUE, MaskCoding, Skill

FORMAT = "tpm-replay-buffer/1"
ROLE_CODES = {0: 0.0, 1: PLACE_MASK_VALUE, 2: PICK_MASK_VALUE}
ROLE_VALUES_NEAR = np.array([ROLE_CODES[c] for c in range(3)], dtype=np.float32)
CHUNK_STEPS = 64


class DatasetError(ValueError):
    """The dataset is missing, of another format, or does not fit what is asked of it."""


def encode_mask(mask: np.ndarray, coding: MaskCoding = MASK_CODING) -> np.ndarray:
    """Float role mask painted with `coding` -> uint8 role codes (0 / 1 place / 2 pick).

    The codes keep the role only: the skill is the episode's (its metadata), and `decode_mask`
    with `role_values` of that skill gives the values back. Storing roles keeps datasets recorded
    before masks carried the skill (place 0.5 for every skill) readable with today's coding.
    """
    m = np.asarray(mask, dtype=np.float32)
    codes = np.zeros(m.shape, dtype=np.uint8)
    codes[np.isin(m, np.array(list(coding.place.values()), dtype=np.float32))] = 1
    codes[np.isin(m, np.array([coding.pick, coding.drawer], dtype=np.float32))] = 2
    return codes


def role_values(skill: Skill | str, coding: MaskCoding = MASK_CODING) -> np.ndarray:
    """(3,) float32: the mask value of role code 0 / 1 / 2 in a task of `skill`."""
    place = 0.0 if Skill(skill) is Skill.OPEN_DRAWER else coding.value("place", skill)
    return np.array([0.0, place, coding.value("pick", skill)], dtype=np.float32)


def decode_mask(codes: np.ndarray, values: np.ndarray | None = None) -> np.ndarray:
    """uint8 role codes -> float32 role mask, as the policy receives it at run time.

    `values`: `role_values` of each sample's skill, shape (3,) or (N, 3) for codes (N, ...);
    None: `place_near`'s (pick 1.0, place 0.5).
    """
    if values is None:
        values = ROLE_VALUES_NEAR
    values = np.asarray(values, dtype=np.float32)
    if values.ndim == 1:
        return values[codes]
    flat = codes.reshape(len(codes), -1)
    return np.take_along_axis(values, flat.astype(np.int64), axis=1).reshape(codes.shape)


def step_role_values(store: EpisodeStore, coding: MaskCoding = MASK_CODING) -> np.ndarray:
    """(N, 3) float32: `role_values` of every step's episode skill (episodes without a skill in
    their metadata count as `place_near`)."""
    lengths = np.diff(np.concatenate([[0], store.episode_ends])).astype(np.int64)
    rows = [
        role_values(str(info.get("skill", Skill.PLACE_NEAR.value)), coding)
        for info in store.episodes
    ]
    if not rows:
        return np.zeros((0, 3), dtype=np.float32)
    return np.repeat(np.stack(rows), lengths, axis=0)


def masks_to_boxes(codes: np.ndarray) -> np.ndarray:
    """The 'box instead of mask' ablation: each role's pixels replaced by their filled bounding box.

    Works on role codes of any leading shape (..., H, W); place is painted first, then pick, as the
    perception pipeline paints them.
    """
    out = np.zeros_like(codes)
    flat_in = codes.reshape(-1, *codes.shape[-2:])
    flat_out = out.reshape(-1, *codes.shape[-2:])
    for i, frame in enumerate(flat_in):
        for code in (1, 2):
            ys, xs = np.nonzero(frame == code)
            if len(ys):
                flat_out[i, ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] = code
    return out


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


@dataclass(frozen=True)
class Arrays:
    """A dataset (or a split of it) in memory; masks as role codes.

    `roles`: (N, 3) the mask value of each role code per step (`step_role_values`: the
    episode's skill); None decodes every step as `place_near`.
    """

    rgb: np.ndarray
    mask: np.ndarray
    proprio: np.ndarray
    action: np.ndarray
    phase: np.ndarray
    episode_ends: np.ndarray
    roles: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.action)

    def episode_starts(self) -> np.ndarray:
        return np.concatenate([[0], self.episode_ends[:-1]]).astype(np.int64)


def load_arrays(store: EpisodeStore, *, mask_mode: str = "mask") -> Arrays:
    """Everything in RAM (CPU-sized datasets are a few hundred MB at most); boxes if asked."""
    mask = store.array("mask")
    if mask_mode == "box":
        mask = masks_to_boxes(mask)
    return Arrays(
        rgb=store.array("rgb"),
        mask=mask,
        proprio=store.array("proprio"),
        action=store.array("action"),
        phase=store.array("phase"),
        episode_ends=store.episode_ends,
        roles=step_role_values(store),
    )


def concat_arrays(parts: Sequence[Arrays]) -> Arrays:
    """Several datasets as one (e.g. expert demonstrations and DAgger rounds kept apart on disk)."""
    if len(parts) == 1:
        return parts[0]
    offsets = np.cumsum([0] + [len(p) for p in parts[:-1]])
    return Arrays(
        rgb=np.concatenate([p.rgb for p in parts]),
        mask=np.concatenate([p.mask for p in parts]),
        proprio=np.concatenate([p.proprio for p in parts]),
        action=np.concatenate([p.action for p in parts]),
        phase=np.concatenate([p.phase for p in parts]),
        episode_ends=np.concatenate(
            [p.episode_ends + off for p, off in zip(parts, offsets, strict=True)]
        ).astype(np.int64),
        roles=np.concatenate(
            [
                p.roles if p.roles is not None else np.tile(ROLE_VALUES_NEAR, (len(p), 1))
                for p in parts
            ]
        ),
    )


def split_episodes(arrays: Arrays, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Step indices of the training and validation episodes (whole episodes, seeded)."""
    n = len(arrays.episode_ends)
    order = np.random.default_rng(seed).permutation(n)
    n_val = round(n * val_fraction) if n > 1 else 0
    n_val = min(max(n_val, 1 if val_fraction > 0 and n > 1 else 0), n - 1) if n > 1 else 0
    val = set(order[:n_val].tolist())
    starts, ends = arrays.episode_starts(), arrays.episode_ends
    train_idx: list[np.ndarray] = []
    val_idx: list[np.ndarray] = []
    for e in range(n):
        steps = np.arange(starts[e], ends[e])
        (val_idx if e in val else train_idx).append(steps)
    cat = lambda parts: np.concatenate(parts) if parts else np.zeros(0, np.int64)  # noqa: E731
    return cat(train_idx), cat(val_idx)


def repetition_counts(
    arrays: Arrays, indices: np.ndarray, *, repeat: int = 3, around_grasp: int = 5, tail: int = 5
) -> np.ndarray:
    """How often each step in `indices` appears per epoch (released code: 3-4x around the grasp).

    Steps within `around_grasp` of an episode's first gripper closing and its last `tail` steps
    appear `repeat` times: they are rare but decide success (when to close, when to stop).
    """
    counts = np.ones(len(arrays), dtype=np.int64)
    closed = arrays.action[:, 3] > 0.5
    for start, end in zip(arrays.episode_starts(), arrays.episode_ends, strict=True):
        hits = np.nonzero(closed[start:end])[0]
        if len(hits):
            g = start + int(hits[0])
            counts[max(start, g - around_grasp) : min(end, g + around_grasp + 1)] = repeat
        counts[max(start, end - tail) : end] = repeat
    return counts[indices]


def random_shift(
    rgb: np.ndarray, mask: np.ndarray, pad: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """DrQ-style augmentation: each image of (B, V, S, S, ...) moved by up to `pad` pixels.

    Edges are replicated, and an image's RGB and mask move together. With a few hundred
    demonstrations a pixel policy memorises where things are in the frame; small shifts keep the
    relation that matters (the hand to the masked objects) and break the memorised one.
    """
    if pad <= 0:
        return rgb, mask
    b, v, s = rgb.shape[:3]
    widths = ((0, 0), (0, 0), (pad, pad), (pad, pad))
    rgb_p = np.pad(rgb, (*widths, (0, 0)), mode="edge")
    mask_p = np.pad(mask, widths, mode="edge")
    out_rgb, out_mask = np.empty_like(rgb), np.empty_like(mask)
    offsets = rng.integers(0, 2 * pad + 1, size=(b, v, 2))
    for i in range(b):
        for j in range(v):
            y, x = offsets[i, j]
            out_rgb[i, j] = rgb_p[i, j, y : y + s, x : x + s]
            out_mask[i, j] = mask_p[i, j, y : y + s, x : x + s]
    return out_rgb, out_mask


class BatchLoader:
    """Seeded shuffled batches of step indices (with repetition) -> numpy batches.

    The arrays stay in RAM and a batch is a fancy-indexing gather, so the loader costs
    milliseconds next to a training step; no worker processes (they would compete for the core).
    """

    def __init__(
        self,
        arrays: Arrays,
        indices: np.ndarray,
        batch_size: int,
        *,
        seed: int,
        counts: np.ndarray | None = None,
        shuffle: bool = True,
        features: np.ndarray | None = None,
    ) -> None:
        """`features`: per-step frozen-trunk features (`models.tpm.features`), batched as
        "rgb_features" beside the pixels."""
        if len(indices) == 0:
            raise DatasetError("no steps to load (empty split)")
        self.arrays = arrays
        self.features = features
        self.schedule = np.repeat(indices, counts) if counts is not None else np.asarray(indices)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self._rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return -(-len(self.schedule) // self.batch_size)

    def epoch(self) -> Iterator[dict[str, np.ndarray]]:
        order = self._rng.permutation(self.schedule) if self.shuffle else self.schedule
        for i in range(0, len(order), self.batch_size):
            yield self.gather(np.sort(order[i : i + self.batch_size]))

    def gather(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        a = self.arrays
        extra = {} if self.features is None else {"rgb_features": self.features[idx]}
        return {
            **extra,
            "rgb": a.rgb[idx],
            "mask": decode_mask(a.mask[idx], a.roles[idx] if a.roles is not None else None),
            "proprio": a.proprio[idx],
            "action": a.action[idx],
        }
