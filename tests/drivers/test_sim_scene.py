"""Scene builder: required objects, distractor counts per setting, backgrounds, determinism."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np
import pytest
from pydantic import ValidationError

from drivers.sim.catalog import USER_NAME, CatalogError, load_catalog
from drivers.sim.scene import CAMERAS, HAND_HALF_X, HAND_HALF_Y, SceneSpec, plan_scene
from drivers.sim.scene_build import build_scene

CATALOG = load_catalog()


@pytest.mark.parametrize("seed", range(8))
def test_standard_plan_has_required_user_and_few_distractors(seed: int) -> None:
    layout = plan_scene(SceneSpec(seed=seed, objects=["sponge"]), CATALOG)
    assert layout.names[0] == "sponge"
    assert USER_NAME in layout.names
    assert 0 <= len(layout.distractors) <= 2
    assert layout.background.startswith("train-")


@pytest.mark.parametrize("seed", range(8))
def test_more_distractors_from_the_split(seed: int) -> None:
    spec = SceneSpec(
        seed=seed, objects=["sponge", "bowl"], setting="more_distractors", split="unseen"
    )
    layout = plan_scene(spec, CATALOG)
    assert 3 <= len(layout.distractors) <= 6
    assert all(CATALOG.get(name).split == "unseen" for name in layout.distractors)
    assert len(set(layout.names)) == len(layout.names)
    for i, a in enumerate(layout.placements):  # footprints do not overlap
        for b in layout.placements[i + 1 :]:
            gap = np.hypot(a.x - b.x, a.y - b.y)
            assert gap >= a.spec.footprint_radius + b.spec.footprint_radius


@pytest.mark.parametrize("setting", ["standard", "more_distractors"])
def test_nothing_taller_stands_where_the_hand_comes_down_over_a_required_object(
    setting: str,
) -> None:
    """The hand keeps its orientation: a taller neighbour inside its box along the finger axis
    would make the grasp (or the release over a container) impossible for anyone."""
    hits = 0
    for seed in range(60):
        spec = SceneSpec(seed=seed, objects=["juice box", "plate"], setting=setting)  # type: ignore[arg-type]
        layout = plan_scene(spec, CATALOG)
        for target in (p for p in layout.placements if p.required and p.name != USER_NAME):
            for other in layout.placements:
                ex, ey, ez = other.spec.extents
                near = (
                    abs(other.x - target.x) < HAND_HALF_X + ex / 2
                    and abs(other.y - target.y) < HAND_HALF_Y + ey / 2
                )
                hits += near and other is not target
                assert not (near and ez > target.spec.height), (seed, target.name, other.name)
    assert hits > 0  # lower neighbours may still stand there


def test_plan_is_deterministic_per_seed_and_varies_across_seeds() -> None:
    spec = SceneSpec(seed=3, objects=["apple"], setting="more_distractors")
    assert plan_scene(spec, CATALOG) == plan_scene(spec, CATALOG)
    plans = {plan_scene(SceneSpec(seed=s, objects=["apple"]), CATALOG) for s in range(6)}
    assert len(plans) == 6
    backgrounds = {plan_scene(SceneSpec(seed=s), CATALOG).background for s in range(20)}
    assert backgrounds == {"train-0", "train-1", "train-2"}


def test_user_can_be_left_out_and_unknown_objects_fail() -> None:
    layout = plan_scene(SceneSpec(seed=0, objects=["sponge"], include_user=False), CATALOG)
    assert USER_NAME not in layout.names
    with pytest.raises(CatalogError, match="no object 'unicorn'"):
        plan_scene(SceneSpec(objects=["unicorn"]), CATALOG)
    with pytest.raises(ValidationError, match="setting"):
        SceneSpec(setting="underwater")  # type: ignore[arg-type]


def test_built_model_has_cameras_objects_and_contact_settings() -> None:
    import mujoco

    built = build_scene(SceneSpec(seed=1, objects=["sponge", "bowl"]), CATALOG)
    model = built.model
    for camera in CAMERAS:
        assert mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera) >= 0
    for name in built.layout.names:
        assert mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, f"obj/{name}") >= 0
    sponge = model.geom("obj/sponge")
    assert sponge.condim[0] == 6  # with rolling friction: round things come to rest
    np.testing.assert_allclose(sponge.friction, [1.0, 0.02, 2e-3])
    assert model.opt.cone == mujoco.mjtCone.mjCONE_ELLIPTIC
    assert model.opt.impratio == pytest.approx(10.0)
    assert model.vis.quality.offsamples == 0
    assert not model.light_castshadow.any()
    assert model.body_jntnum[model.body("obj/sponge").id] == 1  # free body


def test_new_background_differs_in_table_texture_and_light() -> None:
    standard = build_scene(SceneSpec(seed=0, objects=["sponge"]), CATALOG)
    new = build_scene(SceneSpec(seed=0, objects=["sponge"], setting="new_background"), CATALOG)
    assert new.layout.background == "new"
    assert standard.layout.background != "new"
    tex = "table_tex"
    assert not np.array_equal(_texture(standard.model, tex), _texture(new.model, tex))
    assert new.model.nlight > standard.model.nlight or not np.allclose(
        new.model.light_diffuse[0], standard.model.light_diffuse[0]
    )


def _texture(model: object, name: str) -> np.ndarray:
    tex = model.texture(name)  # type: ignore[attr-defined]
    start, size = int(tex.adr[0]), int(tex.height[0] * tex.width[0] * tex.nchannel[0])
    return np.asarray(model.tex_data[start : start + size])  # type: ignore[attr-defined]
