"""A dataset in memory for training: the arrays, whole-episode splits, frame repetition, the
random-shift and colour augmentations and seeded batches.

Kept apart from the store (`dataset.EpisodeStore`, which writes and repairs the zarr files)
because this side only reads: a training run holds every step in RAM (CPU-sized datasets are a
few hundred MB at most) and a batch is a fancy-indexing gather.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.tpm.dataset import DatasetError, EpisodeStore
from models.tpm.mask_codes import ROLE_VALUES_NEAR, decode_mask, masks_to_boxes, role_values
from models.tpm.positions import POSITION_WIDTH, episode_positions, unknown_positions
from models.types import MASK_CODING, MaskCoding, Skill


def step_role_values(store: EpisodeStore, coding: MaskCoding = MASK_CODING) -> np.ndarray:
    """(N, 3) float32: `role_values` of every step's episode skill (episodes without a skill in
    their metadata count as `place_near`)."""
    rows = [
        role_values(str(info.get("skill", Skill.PLACE_NEAR.value)), coding)
        for info in store.episodes
    ]
    return per_step(rows, store.episode_ends, 3)


def step_positions(episodes: Sequence[Mapping[str, Any]], episode_ends: np.ndarray) -> np.ndarray:
    """(N, 6) float32: each step's episode positions (`positions.episode_positions`: NaN for
    what an episode did not record)."""
    rows = [episode_positions(info) for info in episodes]
    return per_step(rows, episode_ends, POSITION_WIDTH)


def per_step(rows: Sequence[np.ndarray], episode_ends: np.ndarray, width: int) -> np.ndarray:
    """(N, width) float32: each episode's row repeated over the episode's steps."""
    if not rows:
        return np.zeros((0, width), dtype=np.float32)
    lengths = np.diff(np.concatenate([[0], episode_ends])).astype(np.int64)
    return np.repeat(np.stack(rows), lengths, axis=0)


@dataclass(frozen=True)
class Arrays:
    """A dataset (or a split of it) in memory; masks as role codes.

    `roles`: (N, 3) the mask value of each role code per step (`step_role_values`: the
    episode's skill); None decodes every step as `place_near`. `positions`: (N, 6) the
    episode's object positions (`models.tpm.positions`), NaN where none was recorded.
    """

    rgb: np.ndarray
    mask: np.ndarray
    proprio: np.ndarray
    action: np.ndarray
    phase: np.ndarray
    episode_ends: np.ndarray
    roles: np.ndarray | None = None
    positions: np.ndarray | None = None

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
        positions=step_positions(store.episodes, store.episode_ends),
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
        positions=np.concatenate(
            [p.positions if p.positions is not None else unknown_positions(len(p)) for p in parts]
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


#: Rec. 601 luma weights: the grey that saturation and contrast move towards
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def colour_jitter(
    rgb: np.ndarray, strength: float, rng: np.random.Generator, *, p: float = 0.8
) -> np.ndarray:
    """Photometric augmentation: each image of (B, V, S, S, 3) uint8, with probability `p`, gets
    its own hue rotation, saturation, brightness, contrast and per-channel (light colour) gains.

    Why: the policy needs only where the hand and the masked objects are, not what colour the
    table, the wall or the light is; on a few hundred scenes the RGB trunks learn those colours
    anyway and fail on a new background. All five changes are one 3x3 matrix and an offset per
    image (cheap next to a training step). `strength` scales every range: at 1 the hue turns by up
    to 180 degrees, saturation x0.2-2, brightness and contrast x0.67-1.5, channels x0.86-1.16;
    0 returns `rgb` unchanged. The colours of the objects change too, which is harmless: the
    targets are named by the mask, not by colour.
    """
    if strength <= 0:
        return rgb
    b, v = rgb.shape[:2]
    n = b * v
    k = float(strength)
    hue = rng.uniform(-np.pi, np.pi, n) * k
    sat = np.exp(rng.uniform(np.log(0.2), np.log(2.0), n) * k)
    bright = np.exp(rng.uniform(-0.4, 0.4, n) * k)
    contrast = np.exp(rng.uniform(-0.4, 0.4, n) * k)
    gains = np.exp(rng.uniform(-0.15, 0.15, (n, 3)) * k)
    keep = rng.random(n) >= p
    # hue: a rotation about the grey axis; saturation: a blend with the image's own luma
    axis = np.full(3, 1 / np.sqrt(3.0))
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    outer = np.outer(axis, axis)
    cos, sin = np.cos(hue)[:, None, None], np.sin(hue)[:, None, None]
    rot = cos * np.eye(3) + sin * cross + (1 - cos) * outer
    grey = np.broadcast_to(_LUMA, (3, 3))
    sat_m = sat[:, None, None] * np.eye(3) + (1 - sat[:, None, None]) * grey
    mats = (gains[:, :, None] * bright[:, None, None]) * (sat_m @ rot)
    mats[keep] = np.eye(3)
    x = rgb.reshape(n, -1, 3).astype(np.float32)
    y = x @ mats.astype(np.float32).transpose(0, 2, 1)
    # contrast about each image's mean luma (after the colour change)
    mean = (y @ _LUMA).mean(axis=1)[:, None, None]
    c = np.where(keep, 1.0, contrast).astype(np.float32)[:, None, None]
    y = c * (y - mean) + mean
    return np.clip(y, 0, 255).round().astype(np.uint8).reshape(rgb.shape)


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
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        """`features`: per-step frozen-trunk features (`models.tpm.features`), batched as
        "rgb_features" beside the pixels. `shard` (rank, world): data-parallel training, where
        every rank draws the same order and takes every world-th batch of it, the same number
        on each rank (`models.tpm.distributed`)."""
        if len(indices) == 0:
            raise DatasetError("no steps to load (empty split)")
        self.arrays = arrays
        self.features = features
        self.schedule = np.repeat(indices, counts) if counts is not None else np.asarray(indices)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self._rng = np.random.default_rng(seed)
        self.rank, self.world = shard
        if -(-len(self.schedule) // batch_size) < self.world:
            raise DatasetError(f"fewer batches than the {self.world} training processes")

    def __len__(self) -> int:
        return -(-len(self.schedule) // self.batch_size) // self.world

    def epoch(self) -> Iterator[dict[str, np.ndarray]]:
        order = self._rng.permutation(self.schedule) if self.shuffle else self.schedule
        for k in range(len(self)):
            i = (k * self.world + self.rank) * self.batch_size
            yield self.gather(np.sort(order[i : i + self.batch_size]))

    def gather(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        a = self.arrays
        extra = {} if self.features is None else {"rgb_features": self.features[idx]}
        if a.positions is not None:
            extra["positions"] = a.positions[idx]
        return {
            **extra,
            "rgb": a.rgb[idx],
            "mask": decode_mask(a.mask[idx], a.roles[idx] if a.roles is not None else None),
            "proprio": a.proprio[idx],
            "action": a.action[idx],
        }
