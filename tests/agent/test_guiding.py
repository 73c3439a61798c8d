"""Hand-guiding as `record`'s input (agent/guiding.py): the Franka moved by hand while the runtime
only reads its state.

The first tests check the policy's rules with a scripted stand-in for the terminal's keys (the
keys have their own tests in tests/drivers/test_input.py). The last two run `python -m agent record
--device guiding` on the franka-sim profile in a child process on a real pseudo-terminal: the
CLI, the runtime, franky-control's libfranka putting the arm in franky's compliant impedance
controller, and franky-sim's physics are all real. Only the operator's hand is faked, at the
narrowest boundary: an external force on the simulated hand body (tests/agent/guiding_hand.py).
What cannot run here: libfranka's own guiding mode (`set_guiding_mode`, the guiding buttons at a
real arm's flange), which franky-sim does not serve.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from agent.guiding import GuidingPolicy, LeftWorkspace
from agent.teleop import InputSilent
from drivers.input import GuidingSettings
from models.tpm.dataset import EpisodeStore
from tests.agent.teleop_helpers import Terminal
from tests.agent.test_record import SMALL, agent, needs_franky_sim
from tests.agent.test_teleop import LIMITS, TASK, Scripted, observe

HOST = "127.0.0.7"  # clear of the other Franka tests' loopback addresses (.1-.6)


def test_the_moving_hand_counts_as_input_and_leaving_the_box_ends_the_episode():
    """No key and no motion for deadman_s: InputSilent; a hand that moved more than still_m
    restarts the count; the hand outside the workspace box: LeftWorkspace at once. The action
    sends no move (the hand moves the arm), only the gripper the keys toggle."""
    keys = Scripted()
    keys.t_heard = 0.0  # no key ever
    policy = GuidingPolicy(keys, LIMITS, deadman_s=0.3, settings=GuidingSettings())
    policy.reset(TASK)
    keys.toggle = True
    action = policy.act(observe((0.5, 0.0, 0.3), 1.0))
    assert np.all(action.move == 0.0) and action.gripper_closed
    time.sleep(0.2)
    policy.act(observe((0.5, 0.001, 0.3), 2.0))  # 1 mm: still
    time.sleep(0.2)
    policy.act(observe((0.5, 0.01, 0.3), 3.0))  # 1 cm: the hand moves the arm
    time.sleep(0.2)
    policy.act(observe((0.5, 0.01, 0.3), 4.0))
    time.sleep(0.2)
    with pytest.raises(InputSilent, match="not moved and no key came"):
        policy.act(observe((0.5, 0.01, 0.3), 5.0))
    policy.reset(TASK)
    with pytest.raises(LeftWorkspace, match=r"left the workspace box at \(0.500, 0.450, 0.300\)"):
        policy.act(observe((0.5, 0.45, 0.3), 6.0))


def test_guiding_is_refused_in_one_line_where_no_franka_can_be_guided(capsys):
    """Our own MuJoCo arm (the sim profile) cannot be guided; franky-sim has no guiding buttons."""
    from agent.cli import main

    cases = [
        (["--profile", "sim"], "hand-guiding needs a Franka driven by franky"),
        (
            ["--profile", "franka-sim", "--set", "teleop.guiding.mode=buttons"],
            "franky-sim has no guiding buttons",
        ),
    ]
    for extra, message in cases:
        assert main(["record", "give me the sponge", "--device", "guiding", *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and "\n" not in err, err


class Hand:
    """The operator's hand in the `record` child (tests/agent/guiding_hand.py), given its orders
    through the file `orders`."""

    def __init__(self, orders: Path) -> None:
        self.orders = orders
        self.term: Terminal | None = None

    def record(self, out: Path, *extra: str) -> Terminal:
        """`record --device guiding` on franka-sim, with this hand on the arm."""
        self.term = Terminal(
            "record", "give me the sponge", "--out", str(out), "--device", "guiding",
            "--profile", "franka-sim", *SMALL, "--set", f'franka.host="{HOST}"', *extra,
            env={"TPM_TEST_HAND": str(self.orders)}, module="tests.agent.guiding_hand",
        )  # fmt: skip
        return self.term

    def order(self, n: int, offset: tuple[float, float, float], wait_s: float = 0.0) -> np.ndarray:
        """The hand moves the arm by `offset`; waits up to `wait_s` until it is there and says
        how far it went."""
        self.orders.write_text(json.dumps({"id": n, "offset": offset}))
        done, deadline = Path(f"{self.orders}.done"), time.monotonic() + wait_s
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                report = json.loads(done.read_text())
                if report["id"] == n:
                    return np.array(report["moved"])
            time.sleep(0.05)
        text = self.term.text[-3000:] if self.term is not None else ""
        assert not wait_s, f"the hand did not get there in {wait_s} s:\n{text}"
        return np.zeros(3)


@needs_franky_sim
@pytest.mark.timeout(150)
def test_an_arm_moved_by_hand_on_franka_sim_is_recorded_until_it_leaves_the_box(tmp_path):
    """Episode 1: the hand pulls the arm 4 cm right and 5 cm down, the operator closes the
    gripper (space) and ends it (Enter), keeps it. The store holds it as `guiding`, each recorded
    move is the hand's move between two readings, and they add up to where the hand went;
    `record --replay 0` drives it back on the arm and the hand ends where it was guided to.
    Episode 2: the hand pushes the arm out of the workspace box (narrowed to 5 cm left of the
    start): one line says so, the episode ends as a fault, the operator discards it and `record`
    exits 1."""
    out = tmp_path / "guided.zarr"
    hand = Hand(tmp_path / "hand.json")
    term = hand.record(out, "--episodes", "2", "--set", "franka.workspace_high=[0.78, 0.05, 0.55]")
    order = hand.order
    try:
        at = term.expect("recording at", timeout=120)
        time.sleep(1.0)  # the first actions put the arm in guiding mode
        went = order(1, (0.0, -0.04, -0.05), wait_s=30.0)
        term.type(" ")
        time.sleep(1.0)
        term.type("\n")
        at = term.expect("[k/d/r]", after=at)
        term.type("k\n")
        at = term.expect("recording at", after=at, timeout=60)
        time.sleep(1.0)
        order(2, (0.0, 0.12, 0.0))
        at = term.expect("fault (act): the hand left the workspace box at", after=at, timeout=30)
        at = term.expect("[k/d/r]", after=at)
        term.type("d\n")
        assert term.wait(30) == 1, term.text[-2000:]
    finally:
        term.close()
    assert "recorded: 1 kept, 1 discarded" in term.text, term.text[-2000:]

    store = EpisodeStore(out, read_only=True)
    assert store.n_episodes == 1
    info = store.episodes[0]
    assert (info["source"], info["device"], info["verdict"]) == ("guiding", "guiding", "keep")
    actions, proprio = store.array("action"), store.array("proprio")
    assert len(actions) > 20  # ~5 s at 10 Hz
    # each move is the hand's, from one reading to the next
    assert np.allclose(actions[:-1, :3], np.diff(proprio[:, :3], axis=0), atol=1e-6)
    moved = actions[:, :3].sum(axis=0)
    print(f"hand-guided: {len(actions)} steps recorded {np.round(moved * 100, 2)} cm, the hand "
          f"went {np.round(went * 100, 2)} cm")  # fmt: skip
    assert np.allclose(went, [0.0, -0.04, -0.05], atol=0.01), went  # about where it was asked
    assert np.allclose(moved, went, atol=0.003), (moved, went)  # all of it recorded
    assert actions[0, 3] == 0.0 and actions[-1, 3] == 1.0  # the gripper closed on the way
    fast = int((np.linalg.norm(actions[:, :3], axis=1) > 0.02 + 1e-5).sum())
    assert (f"{fast} of {len(actions)} steps moved the hand more than 2 cm" in term.text) == (
        fast > 0
    ), fast  # a hand faster than a policy may move is told to slow down
    assert info["fast_steps"] == fast

    # the hand-guided demonstration driven back on the arm (open loop, the driver's limits)
    replay = agent("record", "--replay", "0", "--out", str(out), "--profile", "franka-sim",
                   *SMALL, "--set", f'franka.host="{HOST}"')  # fmt: skip
    assert replay.returncode == 0, replay.stderr[-2000:]
    line = next(x for x in replay.stdout.splitlines() if x.startswith("replayed"))
    print(line)
    assert float(line.split("the hand ended ")[1].split(" cm")[0]) < 1.5


@needs_franky_sim
@pytest.mark.timeout(120)
def test_ctrl_c_while_the_hand_moves_the_arm_stops_it_and_keeps_nothing(tmp_path):
    """Ctrl-C (SIGINT, what the terminal sends) while the hand is pushing the arm: `record`
    stops the arm (the guiding ends), closes the drivers and exits 130; the episode in progress
    is not kept."""
    out = tmp_path / "guided.zarr"
    hand = Hand(tmp_path / "hand.json")
    term = hand.record(out)
    try:
        term.expect("recording at", timeout=120)
        time.sleep(1.0)
        hand.order(1, (0.0, -0.15, 0.0))  # a long push, still going when Ctrl-C comes
        time.sleep(1.0)
        os.killpg(term.proc.pid, signal.SIGINT)
        assert term.wait(30) == 130, term.text[-2000:]
    finally:
        term.close()
    assert "error: interrupted: the arm was stopped and the drivers closed" in term.text
    assert EpisodeStore(out, read_only=True).n_episodes == 0
