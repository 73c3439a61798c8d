"""`python -m tests.agent.guiding_hand ARGS`: `python -m agent ARGS` with an operator's hand on
franky-sim's arm, for the hand-guiding tests (tests/agent/test_guiding.py).

The hand is the one thing faked, at the narrowest boundary there is: an external force on the
simulated arm's hand body (MuJoCo's `xfrc_applied`), as a person's hand pushes the flange. The
force pulls the hand towards a goal like a spring (capped at a few newtons, a light push) and
lets go once the hand is there (or has stopped just short of it: the simulated joints have
friction, which a real arm's guiding mode compensates and franky's impedance controller here
does not). Everything else runs as a lab runs it: the CLI, the runtime,
franky-control's libfranka, the compliant controller and franky-sim's physics. The test gives
the orders through a file (`TPM_TEST_HAND`): a JSON {"id": n, "offset": [dx, dy, dz]} asks the
hand to move that far from where it is when the order is read; once there, the hand lets go
and writes {"id": n, "moved": [dx, dy, dz]} (how far the hand really went, measured at the
fingertips) to the same path with `.done` appended.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

STIFFNESS, DAMPING = 1500.0, 60.0  # N/m towards the goal, Ns/m against the hand's speed
MAX_FORCE = 12.0  # N: a firm push, as people guide a Franka
THERE_M = 0.003  # the hand lets go this close to its goal, or when the arm stopped near it
NEAR_M, STUCK_S = 0.01, 0.5


def push(world: Any, orders: Path) -> None:
    """The operator's hand: follows the orders in `orders` until the world closes."""
    import mujoco

    from drivers.sim.franky_bridge import PREFIX
    from drivers.sim.scene_build import EE_SITE

    model, data = world.model, world.data
    body = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, f"{PREFIX}hand")
    site = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, f"{PREFIX}{EE_SITE}")
    done, goal, moved_at, last, start = None, None, 0.0, np.zeros(3), np.zeros(3)
    before, t_before = np.zeros(3), 0.0
    while not world.closed:
        time.sleep(0.005)
        try:
            order = json.loads(orders.read_text())
        except (OSError, ValueError):  # no order yet, or one half written
            order = {"id": done}
        with world.lock:
            here = data.site_xpos[site].copy()
            if order["id"] != done:
                done, start = order["id"], here
                goal = here + np.asarray(order["offset"], dtype=float)
            force, now, t = np.zeros(3), time.monotonic(), float(data.time)
            speed = (here - before) / (t - t_before) if t > t_before else np.zeros(3)
            before, t_before = here, t
            if np.linalg.norm(here - last) > 0.0005:
                moved_at, last = now, here
            off = np.inf if goal is None else float(np.linalg.norm(goal - here))
            stuck = off < NEAR_M and now - moved_at > STUCK_S  # joint friction holds it there
            if goal is not None and off > THERE_M and not stuck:
                force = STIFFNESS * (goal - here) - DAMPING * speed
                force *= min(1.0, MAX_FORCE / max(float(np.linalg.norm(force)), 1e-9))
            elif goal is not None:
                goal = None  # there: the hand lets go
                moved = (here - start).tolist()
                Path(f"{orders}.done").write_text(json.dumps({"id": done, "moved": moved}))
            data.xfrc_applied[body, :3] = force


def main() -> int:
    from agent.cli import main as agent_main
    from drivers.sim.franky_bridge import FrankySimWorld

    orders = Path(os.environ["TPM_TEST_HAND"])
    start = FrankySimWorld.start

    def start_with_a_hand(world: FrankySimWorld) -> None:
        start(world)
        threading.Thread(target=push, args=(world, orders), daemon=True).start()

    FrankySimWorld.start = start_with_a_hand  # type: ignore[method-assign]
    return agent_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
