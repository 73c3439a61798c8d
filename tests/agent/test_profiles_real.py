"""The `real` profile and the example lab config: they load and validate, and bad values or missing
devices stop with one line naming the key or the device.

No camera or arm is attached to this machine, so "building without hardware" is exactly what runs
here: the cameras are looked up through the vendor SDKs' own device lists (pyrealsense2 finds
none; pyk4a is not installable without Microsoft's SDK), and the arm's connection is refused on a
loopback address where nothing listens. What cannot run here: streaming from a real RealSense /
Azure Kinect and moving a real FR3 (the drivers' own tests cover those against fakes of the SDK
objects and against franky-sim).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from agent.backends import BackendError, Parts, build_parts, build_robot
from agent.cli import EXIT_USAGE, main
from agent.config import ConfigError, load_config, profiles

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "lab_real.toml"


def _one_line(message: str) -> str:
    assert "\n" not in message and "Traceback" not in message, message
    return message


def test_real_profile_and_example_load_and_validate() -> None:
    assert {"real", "franka-sim"} <= set(profiles())
    real = load_config("real")
    assert (real.cameras.backend, real.robot.backend, real.models.policy) == (
        "hardware",
        "franka",
        "none",
    )
    assert real.franka.realtime == "enforce"
    lab = load_config(EXAMPLE)
    front, side = lab.cameras.devices["front"], lab.cameras.devices["side"]
    assert (front.driver, front.serial) == ("realsense", "123622270301")
    assert (side.driver, side.image_size) == ("azure_kinect", (1280, 720))
    assert side.intrinsics is not None and side.intrinsics.fx == pytest.approx(605.9)
    assert front.pose is not None and front.pose.position == pytest.approx((1.04, 0.02, 0.56))
    assert lab.table.objects[-1] == "user"


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            'cameras.devices.front.serial="12-34"',
            "cameras.devices.front.serial: String should match pattern",
        ),
        (
            'franka.hots="172.16.0.2"',
            "unknown config key 'franka.hots'; did you mean 'franka.host'? allowed here: host, ",
        ),
        ('franka.host="172.16.0.2; rm"', "franka.host: '172.16.0.2; rm' is not an IP address"),
        ("franka.dynamics_factor=1.5", "franka: dynamics_factor must be in (0, 1]"),
        ("cameras.devices.side.height=480", "azure_kinect height must be one of"),
        ('models.policy="expert"', "models.policy 'expert' needs simulator truth"),
        ('models.detector="ground_truth"', "models.detector 'ground_truth' needs simulator"),
        ('cameras.views=["front", "top"]', "cameras.devices has no entry for view 'top'"),
        ("table.objects=[]", "table.objects is empty"),
        ('robot.backend="sim"', "cameras.backend 'hardware' and robot.backend 'sim' do not fit"),
    ],
)
def test_bad_values_give_one_line_naming_the_key(override: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(EXAMPLE, [override])
    assert expected in _one_line(str(info.value))


def test_building_without_cameras_names_the_missing_device() -> None:
    """The front RealSense is looked up by serial in the SDK's device list: none is attached."""
    with pytest.raises(BackendError) as info:
        build_parts(load_config(EXAMPLE))
    message = _one_line(str(info.value))
    assert message.startswith("camera 'front': ")
    if importlib.util.find_spec("pyrealsense2") is not None:
        assert "no RealSense with serial 123622270301 is connected (found: none)" in message


@pytest.mark.skipif(importlib.util.find_spec("franky") is None, reason="franky-control missing")
def test_opening_an_unreachable_arm_names_the_robot() -> None:
    """Nothing listens on 127.0.0.4: libfranka's connection is refused, the driver says so."""
    config = load_config(
        EXAMPLE,
        ['franka.host="127.0.0.4"', "franka.connect_timeout_s=5", 'franka.realtime="ignore"'],
    )
    robot = build_robot(config)
    parts = Parts(
        cameras={},
        robot=robot,
        reasoner=None,
        new_pipeline=None,  # type: ignore[arg-type]
        policy=None,
        judge=None,
        scene_objects=list,
    )  # type: ignore[arg-type]
    try:
        with pytest.raises(BackendError) as info:
            parts.open()
    finally:
        robot.close()
    message = _one_line(str(info.value))
    assert message.startswith("cannot open the robot: ") and "127.0.0.4" in message


def test_cli_run_on_the_real_profile_fails_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "--config", str(EXAMPLE), "--no-video", "I spilled the milk"])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_USAGE
    assert err.startswith("error: camera 'front': ") and "\n" not in err
