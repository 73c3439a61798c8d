"""Config loading: shipped profiles, user files, overrides, and one-line errors naming the key."""

from __future__ import annotations

import pytest

from agent.config import ConfigError, load_config, profiles


def test_default_profile_is_sim_and_valid():
    config = load_config()
    assert config.profile == "sim"
    assert "sim" in profiles()
    assert config.cameras.views == ["front", "side"]
    # the shipped TPM policy drives by default, found from any working folder
    assert config.models.policy == "tpm"
    assert config.policy.onnx.is_absolute() and config.policy.onnx.is_file()


def test_overrides_are_parsed_as_toml_values():
    config = load_config(
        "sim",
        [
            "runtime.control_hz=20",
            "models.tracker=kcf",
            'sim.objects=["apple", "bowl"]',
            "output.video=false",
        ],
    )
    assert config.runtime.control_hz == 20.0
    assert config.models.tracker == "kcf"
    assert config.sim.objects == ["apple", "bowl"]
    assert config.output.video is False


def test_user_file_refines_a_profile(tmp_path):
    path = tmp_path / "lab.toml"
    path.write_text('profile = "sim"\n[runtime]\ncontrol_hz = 15\n[sim]\nseed = 7\n')
    config = load_config(path)
    assert config.profile == "sim"
    assert config.runtime.control_hz == 15
    assert config.sim.seed == 7
    assert config.sim.objects == load_config("sim").sim.objects  # the rest comes from the profile


def test_mapping_source():
    config = load_config({"profile": "sim", "sim": {"seed": 3}})
    assert config.sim.seed == 3


@pytest.mark.parametrize(
    ("source", "overrides", "expected"),
    [
        ("nope", [], "unknown profile 'nope'; allowed: franka-sim, real, sim"),
        (
            "sim",
            ["models.tracker=foo"],
            "models.tracker: 'foo' is not allowed; allowed: 'csrt', 'kcf', 'mil'",
        ),
        (
            "sim",
            ["runtime.bogus=1"],
            "unknown config key 'runtime.bogus'; allowed here: control_hz",
        ),
        ("sim", ["runtime.control_hz=0"], "runtime.control_hz: Input should be greater than 0"),
        (
            "sim",
            ["models.policy=diffusion"],
            "models.policy: 'diffusion' is not allowed; allowed: 'expert', 'tpm' or 'none'",
        ),
        ("sim", ["runtime.when_busy=wait"], "runtime.when_busy: 'wait' is not allowed"),
        ("sim", ["nonsense"], "override 'nonsense' is not KEY=VALUE"),
        ("sim", ["sim.setting=outdoor"], "sim.setting: 'outdoor' is not allowed"),
        ("sim", ["sim.between_tasks=keep"], "sim.between_tasks: 'keep' is not allowed"),
        (
            "franka-sim",
            ["sim.between_tasks=reset"],
            "sim.between_tasks 'reset' is not possible with cameras.backend 'franka_sim'",
        ),
    ],
)
def test_errors_name_the_key_and_the_allowed_values(source, overrides, expected):
    with pytest.raises(ConfigError) as info:
        load_config(source, overrides)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[runtime\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_each_backend_section_is_the_backends_own_settings_class():
    """One definition per setting: the profile tree holds the drivers' and models' own classes,
    so a field added to one is a profile key, a --set key and the backend's setting at once."""
    from agent.config import CAMERA_DRIVERS, Config
    from drivers.cameras.azure_kinect import AzureKinectCamera, AzureKinectConfig
    from drivers.cameras.realsense import RealSenseConfig
    from drivers.franka import FrankaConfig, FrankaRobot
    from drivers.sim import SimSettings
    from models.tpm.onnx_policy import PolicyConfig

    sections = {name: field.annotation for name, field in Config.model_fields.items()}
    assert sections["franka"] is FrankaConfig and sections["sim"] is SimSettings
    assert sections["policy"] is PolicyConfig
    assert {"realsense": RealSenseConfig, "azure_kinect": AzureKinectConfig} == CAMERA_DRIVERS
    config = load_config("real", ["franka.max_velocity=0.1", "cameras.devices.side.fps=15"])
    assert FrankaRobot(config.franka).config is config.franka
    side = config.cameras.devices["side"]
    assert isinstance(side, AzureKinectConfig) and side.fps == 15
    assert AzureKinectCamera(side, name="side").config is side


def test_an_unknown_camera_key_names_the_view_not_the_driver_tag():
    with pytest.raises(ConfigError) as info:
        load_config("real", ["cameras.devices.front.fsp=30"])
    message = str(info.value)
    assert message.startswith(
        "unknown config key 'cameras.devices.front.fsp'; did you mean 'cameras.devices.front.fps'?"
        " allowed here: "
    )
    assert "reset_wait_s" in message and "\n" not in message


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("sim.objectz=[]", "unknown config key 'sim.objectz'; did you mean 'sim.objects'? "),
        ("runtim.control_hz=5", "unknown config key 'runtim'; did you mean 'runtime'? "),
        (
            "sim.objects=[apple, bowl]",
            "is not a TOML list: quote the names, and the whole override for the shell: "
            '--set \'sim.objects=["apple", "bowl"]\'',
        ),
        ("sim.randomise={on=}", "is not valid TOML (quote strings"),
    ],
)
def test_a_mistyped_key_or_unquoted_list_says_what_to_write(override: str, expected: str):
    """An unknown key gets the closest allowed one (difflib), bare words in a list the quoting."""
    with pytest.raises(ConfigError) as info:
        load_config("sim", [override])
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_with_overrides_validates_as_load_config_does():
    from agent.config import with_overrides

    config = load_config("sim")
    assert with_overrides(config, {}) == config
    changed = with_overrides(config, {"sim.seed": 4, "sim.objects": ["apple", "bowl"]})
    assert (changed.sim.seed, changed.sim.objects) == (4, ["apple", "bowl"])
    assert changed.models == config.models
    with pytest.raises(ConfigError, match=r"sim\.setting: 'moon' is not allowed"):
        with_overrides(config, {"sim.setting": "moon"})
