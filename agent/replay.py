"""`record --replay N`: drive a recorded episode's actions back on the arm, open loop.

For an operator checking a demonstration before training on it: the hand first goes to where the
episode started (in steps of at most the driver's max step, the gripper as it was), then every
recorded action is sent at the control rate, as the runtime's command loop would, through the same
driver limits. Nothing is perceived or recorded. At the end it says how far the hand ended from
where the demonstration's last action aimed (on a real table objects are not put back, so the
scene may differ; the arm's path is what is checked). Ctrl-C stops the arm first, as in `run`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from agent.config import Config
from agent.teleop import episode_source
from models.tpm.dataset import DatasetError, EpisodeStore

#: how close to the episode's start the hand must come before the replay begins (m)
START_TOLERANCE_M = 0.005
START_STEPS = 200


def episode_actions(root: Path, index: int) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(actions (T, 4), proprio (T, 4), info) of committed episode `index`; DatasetError if none."""
    store = EpisodeStore(root, read_only=True)
    n = store.n_episodes
    if index >= n:
        raise DatasetError(f"{root} holds {n} episodes (0..{n - 1}); there is no episode {index}")
    ends = store.episode_ends
    start = int(ends[index - 1]) if index else 0
    stop = int(ends[index])
    return (
        store.array("action")[start:stop],
        store.array("proprio")[start:stop],
        store.episodes[index],
    )


def replay_episode(root: Path, index: int, config: Config) -> int:
    """Replay episode `index` of `root` on the configured arm; prints what happened."""
    actions, proprio, info = episode_actions(root, index)
    source = episode_source(info)
    print(
        f"replaying episode {index} ({source}, {info.get('request', '?')!r}, "
        f"{len(actions)} steps) at {config.runtime.control_hz:g} Hz",
        flush=True,
    )
    parts = _arm_parts(config)
    try:
        parts.open()
        robot = parts.robot
        period = 1.0 / config.runtime.control_hz
        _go_to(robot, proprio[0], period)
        next_tick = time.monotonic()
        for action in actions:
            robot.move(np.asarray(action[:3], float), bool(action[3] > 0.5))
            next_tick += period
            time.sleep(max(0.0, next_tick - time.monotonic()))
        time.sleep(period * 5)  # let the last motion finish before measuring it
        aim = proprio[-1][:3].astype(float) + actions[-1][:3].astype(float)
        off = float(np.linalg.norm(robot.state().ee_pos - aim))
        print(
            f"replayed {len(actions)} steps; the hand ended {off * 100:.1f} cm from where the "
            "demonstration's last action aimed",
            flush=True,
        )
    finally:
        try:
            parts.robot.stop()
        finally:
            parts.close()
    return 0


def _go_to(robot: Any, start: np.ndarray, period: float) -> None:
    """Move the hand to the episode's start pose and gripper state, one limited step a tick."""
    target = np.asarray(start[:3], float)
    closed = bool(start[3] > 0.5)
    for _ in range(START_STEPS):
        gap = target - robot.state().ee_pos
        if float(np.linalg.norm(gap)) < START_TOLERANCE_M:
            break
        robot.move(gap, closed)  # the driver shortens it to its max step
        time.sleep(period)
    robot.move(np.zeros(3), closed)


def _arm_parts(config: Config) -> Any:
    """The arm (with its simulated world, where there is one) and nothing else: replaying
    perceives nothing, so no camera is opened and no model loaded on real hardware."""
    from agent.backends import Parts, build_parts, build_robot

    if config.cameras.backend != "hardware":
        from agent.config import with_overrides

        # the rule reasoner: the configured one may load a language model nobody asks here
        light = with_overrides(config, {"models.reasoner": "rules"})
        parts = build_parts(light, policy=lambda: _NoPolicy())
        parts.cameras = {}
        return parts

    def unused() -> Any:
        raise RuntimeError("replay perceives nothing")

    return Parts(
        cameras={},
        robot=build_robot(config),
        reasoner=unused,  # type: ignore[arg-type]
        new_pipeline=unused,
        policy=_NoPolicy(),
        judge=None,
        scene_objects=list,
    )


class _NoPolicy:
    """Replay drives recorded actions itself; the parts need a policy all the same."""

    name = "replay"

    def reset(self, task: Any) -> None:
        pass

    def act(self, observation: Any) -> Any:
        raise RuntimeError("replay drives the recorded actions itself")
