"""Backgrounds as data and domain randomisation: the file, its one-line errors, the drawn looks,
the held-out guarantee, and real renders (small images, collision meshes for speed)."""

from __future__ import annotations

import colorsys
import json
import math
from pathlib import Path

import mujoco
import numpy as np
import pytest

from drivers.sim.backgrounds import BackgroundsError, Randomisation, load_backgrounds
from drivers.sim.catalog import CatalogError, load_catalog
from drivers.sim.look import draw_look, is_held_out
from drivers.sim.render import GL_LOCK
from drivers.sim.scene import CAMERAS, SceneSpec, plan_scene
from drivers.sim.scene_build import build_scene, props_xml
from drivers.sim.scene_props import CAMERA_POSES, add_props, look_at
from drivers.sim.textures import encode_png

CATALOG = load_catalog()
LOOKS = load_backgrounds()
ON = Randomisation(enabled=True)


def _render(spec: SceneSpec, camera: str = "front", size: int = 64) -> np.ndarray:
    built = build_scene(spec, CATALOG)
    data = mujoco.MjData(built.model)
    mujoco.mj_forward(built.model, data)
    with GL_LOCK:  # no other test's camera may draw meanwhile (see drivers/sim/render.py)
        renderer = mujoco.Renderer(built.model, size, size)
        try:
            renderer.update_scene(data, camera=camera)
            return renderer.render().copy()
        finally:
            renderer.close()


def _spec(seed: int, **kw: object) -> SceneSpec:
    return SceneSpec(seed=seed, objects=["sponge"], robot_meshes="collision", **kw)  # type: ignore[arg-type]


# ---------------------------------------------------------------- the packaged file


def test_packaged_file_has_three_training_looks_and_one_held_out() -> None:
    assert LOOKS.training == ["train-0", "train-1", "train-2"]
    assert LOOKS.held_out == ["new"]
    assert len(LOOKS.textures) == 1 and LOOKS.textures[0].endswith("wood.png")
    assert LOOKS["new"].table.pattern == "checker" and len(LOOKS["new"].lights) == 2


def test_without_randomisation_the_look_is_the_entry_as_written() -> None:
    layout = plan_scene(_spec(4), CATALOG)
    entry = LOOKS[layout.background]
    look = layout.look
    assert not look.randomised and look.cameras == () and look.objects == ()
    assert (look.table, look.wall, look.lights) == (entry.table, entry.wall, entry.lights)
    new = plan_scene(_spec(4, setting="new_background"), CATALOG)
    assert new.background == "new" and is_held_out(new.look, LOOKS)


# ---------------------------------------------------------------- randomised looks


def test_randomised_look_repeats_for_a_seed_and_differs_across_seeds() -> None:
    a = plan_scene(_spec(11, randomise=ON), CATALOG)
    assert a == plan_scene(_spec(11, randomise=ON), CATALOG)
    assert a.look.randomised
    records = {
        json.dumps(plan_scene(_spec(s, randomise=ON), CATALOG).look.record()) for s in range(12)
    }
    assert len(records) == 12
    json.dumps(a.look.record())  # plain JSON


def test_randomisation_moves_no_object() -> None:
    for seed in range(6):
        off = plan_scene(_spec(seed, setting="more_distractors"), CATALOG)
        on = plan_scene(_spec(seed, setting="more_distractors", randomise=ON), CATALOG)
        assert on.placements == off.placements and on.background == off.background


def test_randomised_frames_repeat_for_a_seed_and_differ_across_seeds() -> None:
    first = _render(_spec(21, randomise=ON))
    again = _render(_spec(21, randomise=ON))
    other = _render(_spec(22, randomise=ON))
    plain = _render(_spec(21))
    np.testing.assert_array_equal(first, again)
    assert np.abs(first.astype(int) - other.astype(int)).mean() > 5
    assert np.abs(first.astype(int) - plain.astype(int)).mean() > 5


def test_camera_jitter_stays_within_bounds() -> None:
    shift = turn = 0.0
    for seed in range(300):
        look = draw_look(LOOKS, "train-0", seed, ON, ["sponge"], CAMERAS)
        assert [c.camera for c in look.cameras] == list(CAMERAS)
        for offset in look.cameras:
            shift = max(shift, float(np.linalg.norm(offset.shift_m)))
            turn = max(turn, float(np.linalg.norm(offset.turn_deg)))
    assert 0.007 < shift <= 0.01 + 1e-9
    assert 0.7 < turn <= 1.0 + 1e-9
    # in the compiled model: the camera moved by the drawn shift and turned by the drawn angle
    layout = plan_scene(_spec(5, randomise=ON), CATALOG)
    mj = mujoco.MjSpec()
    add_props(mj, layout)
    model = mj.compile()
    for name, (pos, target) in CAMERA_POSES.items():
        offset = layout.look.camera(name)
        assert offset is not None
        cam = model.camera(name)
        np.testing.assert_allclose(cam.pos - np.array(pos), offset.shift_m, atol=1e-9)
        assert np.linalg.norm(cam.pos - np.array(pos)) <= 0.01 + 1e-9
        dot = abs(float(np.dot(cam.quat, look_at(pos, target))))
        angle = math.degrees(2 * math.acos(min(1.0, dot)))
        assert angle == pytest.approx(np.linalg.norm(offset.turn_deg), abs=1e-4)
        assert angle <= 1.0 + 1e-6


def test_camera_jitter_is_configurable() -> None:
    wide = Randomisation(enabled=True, camera_shift_m=0.03, camera_turn_deg=3.0)
    still = Randomisation(enabled=True, camera_shift_m=0.0, camera_turn_deg=0.0)
    shifts = [
        np.linalg.norm(c.shift_m)
        for s in range(100)
        for c in draw_look(LOOKS, "train-1", s, wide).cameras
    ]
    assert 0.01 < max(shifts) <= 0.03 + 1e-9
    assert all(
        np.linalg.norm(c.shift_m) == 0 and np.linalg.norm(c.turn_deg) == 0
        for c in draw_look(LOOKS, "train-1", 3, still).cameras
    )


def test_held_out_look_is_never_drawn_over_500_seeds() -> None:
    patterns: set[str] = set()
    for seed in range(500):
        for name in LOOKS.training:
            look = draw_look(LOOKS, name, seed, ON, ["sponge", "bowl"])
            assert not is_held_out(look, LOOKS), (seed, name, look.table)
            patterns.add(look.table.pattern)
            # the default ranges keep far from the packaged held-out look anyway
            assert look.wall.pattern == "flat"
            for light in look.lights:
                elevation = math.degrees(
                    math.asin(-light.direction[2] / np.linalg.norm(light.direction))
                )
                assert 45 - 1e-6 <= elevation <= 85 + 1e-6
    assert patterns == {"flat", "checker", "gradient", "stripes", "noise", "image"}
    # a held-out look itself is shown as written, never randomised
    new = draw_look(LOOKS, "new", 3, ON, ["sponge"])
    assert (new.table, new.wall, new.lights) == (
        LOOKS["new"].table,
        LOOKS["new"].wall,
        LOOKS["new"].lights,
    )


def test_held_out_region_holds_for_a_user_file_close_to_the_randomiser(tmp_path: Path) -> None:
    """A user's held-out look (a plain grey-blue flat table) lies where the randomiser draws
    often: without it in the file some draws land in its region, with it none do."""
    held = (
        '[held]\nheld_out = true\ntable = { pattern = "flat", colours = [[0.5, 0.52, 0.6]] }\n'
        "wall = { colours = [[0.4, 0.4, 0.4]] }\nlights = [{ direction = [0, 0, -1] }]\n"
    )
    train = (
        '[plain]\ntable = { pattern = "flat", colours = [[0.9, 0.8, 0.6]] }\n'
        "wall = { colours = [[0.8, 0.8, 0.8]] }\nlights = [{ direction = [0, 0, -1] }]\n"
    )
    (tmp_path / "with.toml").write_text(train + held)
    (tmp_path / "without.toml").write_text(train)
    with_held = load_backgrounds(tmp_path / "with.toml")
    without = load_backgrounds(tmp_path / "without.toml")
    hits = sum(is_held_out(draw_look(without, "plain", s, ON), with_held) for s in range(500))
    assert hits > 0  # the region is reachable by plain draws...
    assert not any(
        is_held_out(draw_look(with_held, "plain", s, ON), with_held) for s in range(500)
    )  # ...and the randomiser keeps out of it


def test_randomised_colours_stay_muted() -> None:
    for seed in range(200):
        look = draw_look(LOOKS, "train-2", seed, ON)
        if look.table.pattern in ("flat", "stripes", "noise") and look.table.image is None:
            for rgb in look.table.colours:
                assert colorsys.rgb_to_hsv(*rgb)[1] <= ON.saturation_max + 1e-6


# ---------------------------------------------------------------- the file's errors

TRAIN = (
    '[t]\ntable = { pattern = "flat", colours = [[0.8, 0.7, 0.6]] }\n'
    "wall = { colours = [[0.8, 0.8, 0.8]] }\nlights = [{ direction = [0, 0, -1] }]\n"
)


def _png(path: Path) -> Path:
    stripes = np.zeros((32, 32, 3), np.uint8)
    stripes[:, ::8] = (200, 40, 40)
    path.write_bytes(encode_png(stripes))
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[t\n", "not valid TOML"),
        (TRAIN.replace("wall =", "colour = 1\nwall ="), "[t].colour is not a known key"),
        (TRAIN.replace("[0.8, 0.7, 0.6]", "[0.8, 1.7, 0.6]"), "[t].table.colours[0] must be"),
        (TRAIN.replace("[0.8, 0.7, 0.6]", '"#zz0000"'), "[t].table.colours[0] must be [r, g, b]"),
        (
            TRAIN.replace('pattern = "flat", colours = [[0.8, 0.7, 0.6]]', 'image = "gone.png"'),
            "[t].table.image: image file not found",
        ),
        (TRAIN.replace("0.6]] }", "0.6]], scale = -1 }", 1), "[t].table.scale must be > 0, got -1"),
        (TRAIN.replace('"flat"', '"marble"'), "[t].table.pattern must be one of"),
        (
            TRAIN.replace("lights = [{ direction = [0, 0, -1] }]", "lights = []"),
            "[t].lights must have at least 1 item",
        ),
        (TRAIN.replace("[0, 0, -1]", "[0, 0, 0]"), "[t].lights[0].direction must not be zero"),
        (TRAIN.replace("wall = { colours = [[0.8, 0.8, 0.8]] }\n", ""), "[t].wall is missing"),
        ('textures = ["nope.png"]\n' + TRAIN, "textures: image file not found"),
        ('textures = ["fake.png"]\n' + TRAIN, "fake.png is not a PNG file"),
        (
            TRAIN + TRAIN.replace("[t]", "[h]\nheld_out = true").replace("0.7, 0.6", "0.75, 0.6"),
            "[t].table lies in the held-out region of [h]",
        ),
        ("x = 3\n" + TRAIN, "top-level key 'x' must be a [table]"),
        ("", "expected one or more [name] tables"),
    ],
)
def test_backgrounds_file_errors_are_one_line(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "fake.png").write_text("not an image")
    path = tmp_path / "looks.toml"
    path.write_text(text)
    with pytest.raises(BackgroundsError) as info:
        load_backgrounds(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path)), message
    assert expected in message, message
    assert isinstance(info.value, CatalogError)  # reported as the other data file's errors are


def test_missing_file_and_missing_held_out_entry_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(BackgroundsError, match="backgrounds file not found"):
        load_backgrounds(tmp_path / "none.toml")
    path = tmp_path / "train_only.toml"
    path.write_text(TRAIN)
    looks = load_backgrounds(path)
    assert looks.choices("standard") == ["t"]
    with pytest.raises(BackgroundsError) as info:
        looks.choices("new_background")
    assert "\n" not in str(info.value) and "no held-out entry" in str(info.value)
    with pytest.raises(BackgroundsError, match="no held-out entry"):
        plan_scene(SceneSpec(seed=0, setting="new_background", backgrounds=path), CATALOG)


def test_cli_reports_a_bad_backgrounds_file_in_one_line(tmp_path: Path, capsys) -> None:
    from agent.cli import main

    path = tmp_path / "looks.toml"
    path.write_text(TRAIN.replace("[0, 0, -1]", "[0, 0, 0]"))
    assert main(["config", "--backgrounds", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "[t].lights[0].direction must not be zero" in err
    assert main(["config", "--backgrounds", str(tmp_path / "none.toml")]) == 2
    assert "--backgrounds: file not found" in capsys.readouterr().err
    path.write_text(TRAIN)
    assert main(["config", "--backgrounds", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["sim"]["backgrounds"] == str(path)


def test_eval_needs_a_held_out_entry_for_the_new_background_cells(tmp_path: Path, capsys) -> None:
    from agent.cli import main

    path = tmp_path / "train_only.toml"
    path.write_text(TRAIN)
    code = main(
        [
            "eval",
            "--quick",
            "--cells",
            "new_background:seen",
            "--backgrounds",
            str(path),
            "--eval-out",
            str(tmp_path / "eval"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no held-out entry" in err
    assert not (tmp_path / "eval").exists()


# ---------------------------------------------------------------- user files render


def test_user_file_with_an_image_table_renders(tmp_path: Path) -> None:
    image = _png(tmp_path / "red_lines.png")
    (tmp_path / "looks.toml").write_text(
        f'[striped]\ntable = {{ image = "{image.name}", scale = 3 }}\n'
        'wall = { pattern = "stripes", colours = [[0.3, 0.3, 0.35], [0.6, 0.6, 0.6]] }\n'
        'lights = [{ direction = [0.2, 0.1, -1], colour = "#ffeedd", intensity = 0.7 }]\n'
        "[other]\nheld_out = true\n"
        'table = { pattern = "noise", colours = [[0.1, 0.4, 0.1], [0.2, 0.2, 0.2]], scale = 4 }\n'
        "wall = { colours = [[0.5, 0.5, 0.5]] }\nlights = [{ direction = [0, 0, -1] }]\n"
    )
    spec = _spec(2, backgrounds=tmp_path / "looks.toml")
    layout = plan_scene(spec, CATALOG)
    assert layout.background == "striped" and layout.look.table.image == str(image.resolve())
    user, default = _render(spec), _render(_spec(2))
    assert np.abs(user.astype(int) - default.astype(int)).mean() > 5
    held = _render(_spec(2, backgrounds=tmp_path / "looks.toml", setting="new_background"))
    assert np.abs(held.astype(int) - user.astype(int)).mean() > 5
    # franky-sim builds from MJCF text: pixel textures travel as PNG files
    xml = props_xml(
        plan_scene(_spec(2, backgrounds=tmp_path / "looks.toml", setting="new_background"), CATALOG)
    )
    assert ".png" in xml
    mujoco.MjModel.from_xml_string(xml)
