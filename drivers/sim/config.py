"""Settings of the simulated world, defined once: `SceneSpec` (what a scene holds) and
`SimSettings` (the `[sim]` section of a profile: the scene plus the sim cameras, arm and resets).

Plain pydantic with no MuJoCo import, so the runtime's config can compose `SimSettings` as its
`[sim]` section and validate a profile on a machine without the `sim` extra; the world, cameras
and robot take the validated object as it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from drivers.base import Settings
from drivers.sim.backgrounds import Randomisation, load_backgrounds

Setting = Literal["standard", "new_background", "more_distractors"]
SETTINGS: tuple[str, ...] = ("standard", "new_background", "more_distractors")


class SceneSpec(Settings):
    """What a scene must contain; everything random is drawn from `seed`.

    `objects` are names that must be present (from either split of the catalog); distractors come
    from `split`. `camera_fps` and the image size are read by the camera drivers, not here.
    `robot_meshes="collision"` renders the arm with its coarse collision meshes (about 4x cheaper
    frames, FINDINGS) for fast data collection; policies must be trained and run on the same choice.
    `backgrounds` replaces the packaged backgrounds file; `randomise` (enabled) randomises the
    look per seed (`drivers.sim.look`): off, a scene shows its entry exactly as written.
    """

    seed: int = Field(0, ge=0, description="Scene seed (scene layout, objects, task draws).")
    objects: list[str] | None = Field(default_factory=lambda: ["sponge"])
    split: Literal["seen", "unseen"] = "seen"
    setting: Setting = "standard"
    include_user: bool = True
    catalog: Path | None = Field(None, description="Replacement object catalog (TOML).")
    image_width: int = Field(224, ge=32, le=1920)
    image_height: int = Field(224, ge=32, le=1080)
    camera_fps: float = Field(10.0, gt=0, le=120)
    robot_meshes: Literal["visual", "collision"] = "visual"
    backgrounds: Path | None = Field(
        None, description="Replacement backgrounds file (TOML): tables, walls and lights."
    )
    randomise: Randomisation | None = Field(
        default_factory=Randomisation,
        description="Domain randomisation of the look per seed (off; collect turns it on).",
    )


class SimSettings(SceneSpec):
    """The `[sim]` section: the scene, plus how the sim cameras, arm and task resets behave."""

    between_tasks: Literal["reset", "carry_over"] = Field(
        "reset",
        description="Before each task: reset the scene to its seed's layout (objects back, arm "
        "home), or carry it over from the last task as a real table does. Either way the success "
        "check judges only what happens in the task itself.",
    )
    depth: bool = Field(False, description="Also render depth (costs ~30% more per frame).")
    max_step_m: float = Field(0.02, gt=0, le=0.1, description="Largest move per command.")

    @field_validator("backgrounds")
    @classmethod
    def _backgrounds_file(cls, value: Path | None) -> Path | None:
        """A bad file is one line at load time, not a failure when the world is built."""
        if value is not None:
            load_backgrounds(value)  # one-line BackgroundsError (a ValueError) for a bad file
        return value
