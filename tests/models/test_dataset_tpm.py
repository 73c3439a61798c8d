"""The demonstration dataset: crash safety (SIGKILL mid-episode and mid-commit), append, loader."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("zarr")

from models.tpm.arrays import BatchLoader, load_arrays, repetition_counts, split_episodes
from models.tpm.dataset import DatasetError, EpisodeStore
from models.tpm.mask_codes import decode_mask, encode_mask, masks_to_boxes

VIEWS = ("front", "side")
SIZE = 16
ROOT = Path(__file__).resolve().parents[2]


def _step(i: int) -> tuple[np.ndarray, ...]:
    rgb = np.full((2, SIZE, SIZE, 3), i % 256, dtype=np.uint8)
    mask = np.zeros((2, SIZE, SIZE), dtype=np.float32)
    mask[:, 2:5, 2:6] = 1.0
    mask[:, 9:12, 8:14] = 0.5
    proprio = np.array([0.4, 0.0, 0.3, float(i % 2)], dtype=np.float32)
    action = np.array([0.001 * i, 0.0, -0.005, float(i >= 5)], dtype=np.float32)
    return rgb, mask, proprio, action


def _episode(store: EpisodeStore, seed: int, steps: int) -> None:
    store.begin_episode({"seed": seed})
    for i in range(steps):
        store.add_step(*_step(i), phase=i)
    assert store.end_episode(success=True)


WRITER = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {root!r})
    from tests.models.test_dataset_tpm import _episode, _step, EpisodeStore, VIEWS, SIZE
    store = EpisodeStore({path!r}, views=VIEWS, image_size=SIZE, create=True)
    _episode(store, 0, 7)
    _episode(store, 1, 9)
    store.begin_episode({{"seed": 2}})
    for i in range(4):
        store.add_step(*_step(i))
    {extra}
    print("READY", flush=True)
    time.sleep(60)
    """
)


def _kill_writer(path: Path, extra: str = "") -> None:
    code = WRITER.format(root=str(ROOT), path=str(path), extra=extra)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "READY"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def test_sigkill_mid_episode_loses_only_that_episode(tmp_path: Path) -> None:
    path = tmp_path / "demos.zarr"
    _kill_writer(path)
    peek = EpisodeStore(path, read_only=True)  # reading never repairs
    assert peek.n_episodes == 2 and "incomplete" in (peek.recovered or "")
    store = EpisodeStore(path)
    assert store.n_episodes == 2 and store.n_steps == 16
    assert "seed 2" in (store.recovered or "") and "incomplete" in store.recovered
    assert store.attrs["incomplete"] == 1
    np.testing.assert_array_equal(store.episode_ends, [7, 16])
    np.testing.assert_array_equal(store.array("phase")[7:], np.arange(9))
    _episode(store, 3, 5)  # appending after the crash continues cleanly
    again = EpisodeStore(path)
    assert again.recovered is None and again.n_episodes == 3 and again.n_steps == 21
    assert [e["seed"] for e in again.episodes] == [0, 1, 3]


def test_sigkill_mid_commit_drops_uncommitted_steps(tmp_path: Path) -> None:
    # the data arrays grew, the commit (episode_ends) did not happen
    extra = "store._data['action'].append(store._data['action'][:3], axis=0)"
    path = tmp_path / "demos.zarr"
    _kill_writer(path, extra)
    store = EpisodeStore(path)
    assert store.n_episodes == 2 and store.n_steps == 16
    assert "uncommitted steps" in (store.recovered or "")
    assert store._data["action"].shape[0] == 16


def test_a_grown_but_unwritten_commit_entry_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "demos.zarr"
    store = EpisodeStore(path, views=VIEWS, image_size=SIZE, create=True)
    _episode(store, 0, 6)
    store._ends.resize((2,))
    reopened = EpisodeStore(path)
    assert reopened.n_episodes == 1 and reopened.n_steps == 6


def test_append_loader_split_and_repetition(tmp_path: Path) -> None:
    path = tmp_path / "demos.zarr"
    store = EpisodeStore(path, views=VIEWS, image_size=SIZE, create=True)
    for seed in range(5):
        _episode(store, seed, 10)
    store.begin_episode({"seed": 99})
    store.add_step(*_step(0))
    assert not store.end_episode(keep=False)  # an expert failure is counted, not stored
    store = EpisodeStore(path, read_only=True)
    assert store.n_episodes == 5 and store.attrs["discarded"] == 1
    with pytest.raises(DatasetError, match="read-only"):
        store.begin_episode({"seed": 5})
    arrays = load_arrays(store)
    train, val = split_episodes(arrays, 0.2, seed=0)
    assert len(val) == 10 and len(train) == 40 and not set(train) & set(val)
    counts = repetition_counts(arrays, train, repeat=3, around_grasp=1, tail=2)
    # per episode: grasp at step 5 -> steps 4, 5, 6 and the last two steps are tripled
    assert counts.sum() == 40 + 4 * 5 * 2
    loader = BatchLoader(arrays, train, 8, seed=0, counts=counts)
    batches = list(loader.epoch())
    assert sum(len(b["action"]) for b in batches) == len(loader.schedule) == 80
    first = batches[0]
    assert first["rgb"].shape == (8, 2, SIZE, SIZE, 3) and first["rgb"].dtype == np.uint8
    assert first["mask"].dtype == np.float32 and set(np.unique(first["mask"])) == {0.0, 0.5, 1.0}
    again = next(BatchLoader(arrays, train, 8, seed=0, counts=counts).epoch())
    np.testing.assert_array_equal(first["action"], again["action"])  # seeded


def test_mask_codes_and_boxes() -> None:
    mask = np.zeros((6, 6), np.float32)
    mask[1, 1] = mask[3, 2] = 1.0
    mask[5, 4] = 0.5
    codes = encode_mask(mask)
    np.testing.assert_array_equal(decode_mask(codes), mask)
    boxes = masks_to_boxes(codes[None])[0]
    assert (boxes[1:4, 1:3] == 2).all() and boxes[5, 4] == 1 and boxes.sum() == 6 * 2 + 1


def test_wrong_shapes_and_missing_store(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="collect"):
        EpisodeStore(tmp_path / "none.zarr")
    store = EpisodeStore(tmp_path / "d.zarr", views=VIEWS, image_size=SIZE, create=True)
    store.begin_episode({"seed": 0})
    rgb, mask, proprio, action = _step(0)
    with pytest.raises(DatasetError, match="do not fit"):
        store.add_step(rgb[:, :8], mask, proprio, action)
    with pytest.raises(DatasetError, match="px"):
        EpisodeStore(tmp_path / "d.zarr", image_size=32)


def test_random_shift_moves_rgb_and_mask_together_within_the_pad() -> None:
    from models.tpm.arrays import random_shift

    rgb = np.zeros((16, 2, 20, 20, 3), np.uint8)
    mask = np.zeros((16, 2, 20, 20), np.float32)
    rgb[:, :, 10, 10] = 255
    mask[:, :, 10, 10] = 1.0
    rng = np.random.default_rng(0)
    out_rgb, out_mask = random_shift(rgb, mask, 3, rng)
    assert out_rgb.shape == rgb.shape and out_mask.shape == mask.shape
    moves = set()
    for i in range(16):
        for j in range(2):
            ((y, x),) = np.argwhere(out_mask[i, j] == 1.0)
            assert out_rgb[i, j, y, x, 0] == 255 and out_rgb[i, j].sum() == 3 * 255
            assert abs(y - 10) <= 3 and abs(x - 10) <= 3
            moves.add((y, x))
    assert len(moves) > 5  # images of one batch move independently
    same_rgb, same_mask = random_shift(rgb, mask, 0, rng)
    assert same_rgb is rgb and same_mask is mask


def test_colour_jitter_changes_each_images_colours_within_its_ranges_and_repeats_per_seed() -> None:
    """A pure red image must come out in many hues (the rotation spans the whole circle at
    strength 1), each image of a batch with its own draw, the same draws for the same seed, and
    unchanged when the strength is 0 or no image is picked."""
    from models.tpm.arrays import colour_jitter

    red = np.zeros((64, 2, 8, 8, 3), np.uint8)
    red[..., 0] = 200
    out = colour_jitter(red, 1.0, np.random.default_rng(1), p=1.0)
    assert out.dtype == np.uint8 and out.shape == red.shape
    assert (out == out[:, :, :1, :1]).all()  # one transform per image: flat stays flat
    dominant = np.bincount(out[:, :, 0, 0].reshape(-1, 3).argmax(axis=1), minlength=3)
    assert (dominant >= 10).all(), dominant  # red, green and blue each dominate some images
    assert len({tuple(px) for px in out[:, :, 0, 0].reshape(-1, 3)}) > 120  # (some clip alike)
    again = colour_jitter(red, 1.0, np.random.default_rng(1), p=1.0)
    assert np.array_equal(out, again)
    weak = colour_jitter(red, 0.1, np.random.default_rng(1), p=1.0)
    assert (weak[..., 0] > weak[..., 1] + 100).all()  # a small strength keeps red red
    assert colour_jitter(red, 0.0, np.random.default_rng(1)) is red
    assert np.array_equal(colour_jitter(red, 1.0, np.random.default_rng(1), p=0.0), red)


def test_a_second_writer_is_refused_while_the_first_holds_the_dataset(tmp_path: Path) -> None:
    """Two collectors appending to one store would interleave their steps: the second one gets a
    clear error naming the holder; readers are never blocked; the lock dies with its process."""
    root = tmp_path / "demos.zarr"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import sys, time
            sys.path.insert(0, {str(ROOT)!r})
            from models.tpm.dataset import EpisodeStore
            store = EpisodeStore({str(root)!r}, views=("front", "side"), image_size=16,
                                 create=True)
            print("open", flush=True)
            time.sleep(60)
        """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(DatasetError, match=re.escape(f"another process (pid {holder.pid})")):
            EpisodeStore(root, create=True)
        assert EpisodeStore(root, read_only=True).n_episodes == 0
    finally:
        holder.kill()
        holder.wait()
    EpisodeStore(root).begin_episode({"seed": 1})  # the killed holder's lock went with it


NONSTOP_WRITER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {root!r})
    from tests.models.test_dataset_tpm import _step, EpisodeStore, VIEWS, SIZE
    store = EpisodeStore({path!r}, views=VIEWS, image_size=SIZE, create=True)
    seed = 0
    while True:  # nothing but writes: a kill at any moment lands inside one
        store.begin_episode({{"seed": seed}})
        for i in range(5 + seed % 4):
            store.add_step(*_step(i), phase=i)
        store.end_episode(success=True)
        print("ENDED", seed, flush=True)
        seed += 1
    """
)


@pytest.mark.parametrize("delay_ms", [0, 3, 11, 29])
def test_a_writer_killed_inside_a_write_leaves_every_ended_episode(
    tmp_path: Path, delay_ms: int
) -> None:
    """Scenario 9 of issue 12: a child process writing episodes without pause is SIGKILLed
    `delay_ms` after its second episode ended (inside a step's write or a commit, not between
    steps). Reopened, the store holds every episode that ended, each whole (zarr >= 3.1.3 writes
    every chunk and metadata file atomically, which the commit protocol relies on), and the ones
    that ended after the last line was read, whole too; the one being written is gone; new
    episodes append."""
    path = tmp_path / "demos.zarr"
    code = NONSTOP_WRITER.format(root=str(ROOT), path=str(path))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        ended = [proc.stdout.readline().split() for _ in range(2)]
        assert ended == [["ENDED", "0"], ["ENDED", "1"]]
        time.sleep(delay_ms / 1000)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    store = EpisodeStore(path)
    assert store.n_episodes >= 2, store.recovered
    assert [e["seed"] for e in store.episodes] == list(range(store.n_episodes))
    lengths = np.diff(store.episode_ends, prepend=0)
    assert list(lengths) == [5 + seed % 4 for seed in range(store.n_episodes)]
    phase = store.array("phase")
    for start, length in zip(store.episode_ends - lengths, lengths, strict=True):
        np.testing.assert_array_equal(phase[start : start + length], np.arange(length))
    _episode(store, 99, 5)
    assert EpisodeStore(path).n_episodes == store.n_episodes
