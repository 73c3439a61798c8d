"""`python -m agent collect`: one real expert episode through the perception pipeline, stored."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("zarr")
pytest.importorskip("onnxruntime")

from agent.cli import main
from agent.collection import EarlyClose, draw_trial, episode_seed
from drivers.sim import load_catalog
from drivers.sim.expert import PHASES, REACH
from models.tpm.dataset import EpisodeStore
from models.tpm.mask_codes import decode_mask
from models.tpm.onnx_policy import OnnxTPMPolicy
from models.types import Observation, Skill

#: small renders and the rule reasoner: what every collect test here runs with
SMALL_SIM = ["--set", "sim.image_width=96", "--set", "sim.image_height=96"]
RULES = ["--set", "models.reasoner=rules"]


def _collect(out: Path, seed: int, *extra: str) -> list[str]:
    """`collect` arguments for one episode into `out`."""
    return ["collect", "--episodes", "1", "--out", str(out), "--seed", str(seed), *extra]


def test_collect_records_a_successful_expert_episode(tmp_path: Path, capsys) -> None:
    out = tmp_path / "demos.zarr"
    args = _collect(out, 3, *SMALL_SIM, *RULES)
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "recorded 1 of 1 episodes" in printed and "expert succeeded in 1" in printed
    # not a terminal (a log file): a plain line per episode, since the bar shows only at the end
    assert "collect 1/1 episodes" in printed and "expert success 1/1 (100%)" in printed
    store = EpisodeStore(out, read_only=True)
    assert store.n_episodes == 1 and store.image_size == 96 and store.views == ("front", "side")
    meta = store.episodes[0]
    assert meta["seed"] == episode_seed(3, 0) and meta["success"] is True
    assert {"pick", "place", "skill", "background", "distractors", "request"} <= set(meta)
    look = meta["look"]  # collect randomises the look by default and records what it drew
    assert look["randomised"] is True and look["name"] == meta["background"]
    assert {"table", "wall", "lights", "cameras", "objects"} <= set(look)
    mask = store.array("mask")
    assert (mask == 2).any(axis=(1, 2, 3)).mean() > 0.5  # the pick object is seen most steps
    action = store.array("action")
    assert np.linalg.norm(action[:, :3], axis=1).max() <= 0.0101
    assert action[:, 3].min() == 0.0 and action[:, 3].max() == 1.0  # it grasped and released
    np.testing.assert_allclose(store.array("proprio")[0, :3], [0.45, 0.0, 0.32], atol=0.01)
    # the positions training may predict (models.tpm.positions): the expert closes the hand
    # where the recorded pick object is
    closes = int(np.argmax(action[:, 3] > 0.5))
    pick = np.asarray(meta["positions"]["pick"])
    np.testing.assert_allclose(store.array("proprio")[closes, :2], pick[:2], atol=0.02)
    assert len(meta["positions"]["place"]) == 3


def test_dagger_collect_records_the_pilots_states_with_expert_labels(
    tmp_path: Path, capsys
) -> None:
    """The shipped TPM file drives (a real ONNX Runtime session) and the expert labels each step;
    the episode is kept whatever its outcome, and says who drove."""
    out = tmp_path / "dagger.zarr"
    pilot = ["--pilot", "policies/tpm_cpu.onnx", "--max-steps", "25"]
    args = _collect(out, 5, *pilot, *SMALL_SIM, *RULES)
    assert main(args) == 0
    assert "pilot (0% expert) succeeded in" in capsys.readouterr().out
    store = EpisodeStore(out, read_only=True)
    assert store.n_episodes == 1
    meta = store.episodes[0]
    assert meta["pilot"] == "tpm" and meta["expert_share"] == 0.0
    action = store.array("action")
    assert 1 <= len(action) <= 25
    proprio = store.array("proprio")
    assert np.abs(np.diff(proprio[:, :3], axis=0)).max() > 0  # the arm moved
    # the labels are the expert's: the pilot itself answers something else on the same inputs
    pilot = OnnxTPMPolicy("policies/tpm_cpu.onnx")
    rgb, mask = store.array("rgb"), decode_mask(store.array("mask"))
    differs = 0
    for i in range(len(action)):
        views = store.views
        obs = Observation(
            {v: rgb[i, j] for j, v in enumerate(views)},
            {v: mask[i, j] for j, v in enumerate(views)},
            proprio[i],
        )
        differs += not np.allclose(pilot.act(obs).move, action[i, :3], atol=1e-4)
    assert differs >= len(action) // 2


def test_collect_latency_lets_physics_run_before_each_command(tmp_path: Path, capsys) -> None:
    """`--latency-ms`: each command reaches the arm that long after its frame, so the arm has
    had less of the period to follow the first command when the second frame is taken. The
    expert drives every step (`--expert-share 1`); the pilot is there to keep a short episode."""
    first_moves = {}
    for latency in (0, 80):
        out = tmp_path / f"lag{latency}.zarr"
        extra = ["--pilot", "policies/tpm_cpu.onnx", "--expert-share", "1", "--max-steps", "3"]
        args = _collect(out, 5, *extra, "--latency-ms", str(latency), *SMALL_SIM, *RULES)
        assert main(args) == 0
        store = EpisodeStore(out, read_only=True)
        assert store.episodes[0]["latency_ms"] == latency
        proprio = store.array("proprio")
        first_moves[latency] = float(np.linalg.norm(proprio[1, :3] - proprio[0, :3]))
    assert first_moves[0] > 0.002  # the arm followed the first command for the whole period
    assert first_moves[80] < 0.6 * first_moves[0]  # 20 of the 100 ms
    capsys.readouterr()
    assert main(_collect(tmp_path / "bad.zarr", 5, "--latency-ms", "150")) == 2
    err = capsys.readouterr().err.strip()
    assert "--latency-ms must be between 0 and one control period (100 ms" in err
    assert len(err.splitlines()) == 1


def test_early_close_closes_the_hand_in_the_reach_and_the_labels_say_open(
    tmp_path: Path,
) -> None:
    """`--early-close 1`: in the reach to the grasp the executed action closes the hand for the
    drawn steps (the recorded proprioception then shows it closed), while the expert's labels for
    those states say "open"; the draw is in the metadata and follows from the seed. The expert
    drives (`--expert-share 1`; the pilot keeps the episode whatever its end)."""
    out = tmp_path / "early.zarr"
    extra = ["--pilot", "policies/tpm_cpu.onnx", "--expert-share", "1", "--max-steps", "60"]
    assert main(_collect(out, 3, *extra, "--early-close", "1", *SMALL_SIM, *RULES)) == 0
    store = EpisodeStore(out, read_only=True)
    meta = store.episodes[0]
    early = EarlyClose.draw(meta["seed"], 1.0)
    assert early is not None and meta["early_close"] == [early.start, early.steps]
    phase, proprio, action = store.array("phase"), store.array("proprio"), store.array("action")
    reach = np.flatnonzero(np.isin(phase, [PHASES.index(name) for name in REACH]))
    assert len(reach) > early.start + early.steps, "the scene's reach is long enough"
    assert (proprio[reach[: early.start + 1], 3] == 0.0).all()  # open until the perturbation
    closed_on_nothing = reach[(proprio[reach, 3] == 1.0) & (action[reach, 3] == 0.0)]
    assert len(closed_on_nothing) >= early.steps - 1, (reach, proprio[reach, 3])
    assert EarlyClose.draw(meta["seed"], 0.0) is None  # the default: no perturbation


def test_collect_refuses_a_pilot_of_another_size(tmp_path: Path, capsys) -> None:
    args = _collect(tmp_path / "x.zarr", 0, "--pilot", "policies/tpm_cpu.onnx", "--preset", "paper")
    assert main(args) == 2
    assert "96 px" in capsys.readouterr().err


def test_trials_are_seeded_and_use_the_split() -> None:
    catalog = load_catalog()
    trials = [draw_trial(catalog, s, split="unseen") for s in range(40)]
    assert trials == [draw_trial(catalog, s, split="unseen") for s in range(40)]
    unseen = {o.name for o in catalog.split("unseen")}
    assert all(t.pick in unseen for t in trials)
    assert {t.skill for t in trials} == {Skill.PLACE_NEAR, Skill.PLACE_INSIDE, Skill.PLACE_ON}
    near = next(t for t in trials if t.place == "user")
    assert near.request == f"give me the {near.pick}" and near.objects == [near.pick]


@pytest.mark.parametrize("split", ["seen", "unseen"])
def test_near_tasks_go_to_the_user_or_next_to_an_object_of_the_split(split: str) -> None:
    """An unseen cell's near-object task has an unseen A and an unseen B, and the rule reasoner
    reads every drawn request back as the drawn task (never as a hand-over to the user)."""
    from models.reasoning import RuleReasoner

    catalog = load_catalog()
    names = {o.name for o in catalog.split(split)}  # type: ignore[arg-type]
    near = [
        t
        for t in (draw_trial(catalog, s, split=split) for s in range(200))
        if t.skill == Skill.PLACE_NEAR
    ]
    beside = [t for t in near if t.place != "user"]
    assert 0.3 < len(beside) / len(near) < 0.7  # NEAR_USER_SHARE of them to the user
    assert all(t.place in names and t.place != t.pick for t in beside)
    assert len({t.place for t in beside}) > 5  # any kind of object, not one favourite
    reasoner = RuleReasoner()
    for t in beside:
        assert t.objects == [t.pick, t.place]
        assert t.request == f"put the {t.pick} next to the {t.place}"
        task = reasoner.reason(t.request, sorted(names | {"user"}))
        assert (task.skill, task.pick, task.place) == (t.skill, t.pick, t.place), t.request


def test_collect_stopped_by_sigterm_keeps_what_it_recorded_and_says_so(tmp_path: Path) -> None:
    """SIGTERM (a `timeout`, `docker stop`) mid-collection: the episode under way is dropped,
    the finished ones stay, the summary is printed, and the exit code is 143. A real process."""
    out = tmp_path / "demos.zarr"
    command = [sys.executable, "-m", "agent", *_collect(out, 3, *SMALL_SIM, *RULES)]
    command[command.index("1")] = "5"  # --episodes 5: far more than it will get to
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    ) as proc:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:  # a plain line per finished episode (not a terminal)
            lines.append(line)
            if line.startswith("collect 1/5 episodes"):
                proc.send_signal(signal.SIGTERM)
                break
        else:
            pytest.fail(f"collect ended before its first episode: {''.join(lines)}")
        rest, _ = proc.communicate(timeout=120)
    printed = "".join(lines) + rest
    assert proc.returncode == 143, printed
    assert "terminated by SIGTERM: the episode under way was dropped" in printed
    assert "recorded 1 of 1 episodes" in printed, printed
    store = EpisodeStore(out, read_only=True)
    assert store.n_episodes == 1
