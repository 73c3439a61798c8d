"""The skill in the mask: one coding shared by perception, collection, training and the ONNX file.

Real parts only: the shipped `policies/tpm_cpu.onnx` in ONNX Runtime (its metadata rewritten with
the `onnx` package to stand for files exported with another coding), a real zarr dataset.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from models.types import (
    LEGACY_MASK_CODING,
    MASK_CODING,
    ModelError,
    Observation,
    Skill,
    TaskSpec,
)

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "policies" / "tpm_cpu.onnx"
PLACE_SKILLS = (Skill.PLACE_NEAR, Skill.PLACE_INSIDE, Skill.PLACE_ON)


def test_every_skill_has_its_own_place_value_and_the_pick_keeps_one() -> None:
    values = [MASK_CODING.value("place", s) for s in PLACE_SKILLS]
    assert len(set(values)) == len(values) and 0.0 not in values
    assert MASK_CODING.value("pick", Skill.OPEN_DRAWER) not in {*values, MASK_CODING.pick}
    assert {MASK_CODING.value("pick", s) for s in PLACE_SKILLS} == {MASK_CODING.pick}
    with pytest.raises(ValueError, match="place"):
        MASK_CODING.value("place", Skill.OPEN_DRAWER)


def test_the_coding_round_trips_through_json() -> None:
    text = MASK_CODING.to_json()
    assert type(MASK_CODING).from_json(text) == MASK_CODING
    assert type(MASK_CODING).from_json(LEGACY_MASK_CODING.to_json()) == LEGACY_MASK_CODING
    with pytest.raises(ValueError, match="not a mask coding"):
        type(MASK_CODING).from_json('{"pick": 1.0}')


@pytest.mark.parametrize("skill", PLACE_SKILLS)
def test_recoding_to_the_legacy_coding_gives_one_place_value(skill: Skill) -> None:
    mask = np.zeros((4, 4), np.float32)
    mask[0] = MASK_CODING.value("place", skill)
    mask[1] = MASK_CODING.value("pick", skill)
    legacy = MASK_CODING.recode(mask, skill, LEGACY_MASK_CODING)
    assert set(np.unique(legacy[0])) == {0.5} and set(np.unique(legacy[1])) == {1.0}
    assert not legacy[2:].any()


# ------------------------------------------------------------------ dataset


def test_the_dataset_keeps_roles_and_decodes_the_episode_skill(tmp_path: Path) -> None:
    pytest.importorskip("zarr")
    from models.tpm.arrays import BatchLoader, load_arrays
    from models.tpm.dataset import EpisodeStore

    store = EpisodeStore(tmp_path / "d.zarr", views=("front",), image_size=8, create=True)
    for skill in PLACE_SKILLS:
        store.begin_episode({"skill": skill.value})
        mask = np.zeros((1, 8, 8), np.float32)
        mask[0, :2] = MASK_CODING.value("place", skill)
        mask[0, 6:] = MASK_CODING.pick
        for _ in range(3):
            store.add_step(
                np.zeros((1, 8, 8, 3), np.uint8), mask, np.zeros(4, np.float32), np.zeros(4)
            )
        store.end_episode()
    codes = store.array("mask")
    assert set(np.unique(codes)) == {0, 1, 2}  # roles only: the skill is the episode's
    arrays = load_arrays(store)
    batch = BatchLoader(arrays, np.arange(9), 9, seed=0, shuffle=False).gather(np.arange(9))
    for i, skill in enumerate(PLACE_SKILLS):
        for step in batch["mask"][3 * i : 3 * i + 3, 0]:
            assert set(np.unique(step[:2])) == {MASK_CODING.value("place", skill)}
            assert set(np.unique(step[6:])) == {MASK_CODING.pick}
            assert not step[2:6].any()


# ------------------------------------------------------------------ ONNX files


def _with_coding(tmp_path: Path, text: str | None, name: str = "policy.onnx") -> Path:
    """A copy of the shipped policy whose `mask_coding` metadata is `text` (None: no entry)."""
    onnx = pytest.importorskip("onnx")
    path = tmp_path / name
    shutil.copyfile(SHIPPED, path)
    model = onnx.load(str(path))
    kept = [(p.key, p.value) for p in model.metadata_props if p.key != "mask_coding"]
    del model.metadata_props[:]
    for key, value in [*kept, *([("mask_coding", text)] if text is not None else [])]:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def policy_class() -> type:
    pytest.importorskip("onnxruntime")
    from models.tpm.onnx_policy import OnnxTPMPolicy

    return OnnxTPMPolicy


def test_a_policy_with_this_coding_loads(policy_class: type, tmp_path: Path) -> None:
    policy = policy_class(_with_coding(tmp_path, MASK_CODING.to_json()), providers=["cpu"])
    assert policy.mask_coding == MASK_CODING


def test_a_policy_with_another_coding_is_refused_in_one_line(
    policy_class: type, tmp_path: Path
) -> None:
    other = json.loads(MASK_CODING.to_json())
    other["place"]["place_inside"] = 0.125
    path = _with_coding(tmp_path, json.dumps(other))
    with pytest.raises(ModelError, match="another mask coding") as info:
        policy_class(path, providers=["cpu"])
    assert "\n" not in str(info.value) and "place_inside 0.125" in str(info.value)
    with pytest.raises(ModelError, match="unreadable mask_coding"):
        policy_class(_with_coding(tmp_path, "[1, 2]"), providers=["cpu"])


def test_a_policy_without_a_coding_reads_as_the_legacy_one_and_sees_legacy_masks(
    policy_class: type, tmp_path: Path
) -> None:
    """A file without the entry (exported before the coding was stored) acts on today's masks
    exactly as on the masks it was trained on."""
    shipped = policy_class(_with_coding(tmp_path, None, "legacy.onnx"), providers=["cpu"])
    assert shipped.mask_coding == LEGACY_MASK_CODING
    reference = policy_class(_with_coding(tmp_path, MASK_CODING.to_json()), providers=["cpu"])
    rng = np.random.default_rng(0)
    images = {v: rng.integers(0, 256, (96, 96, 3), dtype=np.uint8) for v in shipped.views}
    task = TaskSpec("put the apple in the bowl", Skill.PLACE_INSIDE, "apple", "bowl")
    masks, legacy = {}, {}
    for view in shipped.views:
        mask = np.zeros((96, 96), np.float32)
        mask[10:30, 10:30] = MASK_CODING.value("place", task.skill)
        mask[50:60, 50:60] = MASK_CODING.pick
        masks[view] = mask
        legacy[view] = MASK_CODING.recode(mask, task.skill, LEGACY_MASK_CODING)
    proprio = np.array([0.45, 0.0, 0.3, 0.0])
    shipped.reset(task)
    reference.reset(task)
    got = shipped.act(Observation(images, masks, proprio))
    # the same network fed the legacy masks directly (its coding is this one: no recoding)
    want = reference.act(Observation(images, legacy, proprio))
    np.testing.assert_allclose(got.move, want.move, rtol=1e-6, atol=1e-7)
    assert got.gripper_closed == want.gripper_closed
    assert set(np.unique(legacy[shipped.views[0]])) == {0.0, 0.5, 1.0}
