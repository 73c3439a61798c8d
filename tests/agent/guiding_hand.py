"""`python -m tests.agent.guiding_hand ARGS`: `python -m agent ARGS` with an operator's hand on
franky-sim's arm, for the hand-guiding tests (tests/agent/test_guiding.py).

The hand is the one thing faked, at the narrowest boundary there is: an external force on the
simulated arm's hand body (MuJoCo's `xfrc_applied`), as a person's hand pushes the flange. The
force pulls the hand towards a goal like a spring (capped at a few newtons, a light push) and
lets go once the hand is there. Everything else runs as a lab runs it: the CLI, the runtime,
franky-control's libfranka, the compliant controller and franky-sim's physics. The test gives
the orders through a file (`TPM_TEST_HAND`): a JSON {"id": n, "offset": [dx, dy, dz]} asks the
hand to move that far from where it is when the order is read; once there, the hand lets go
and writes the order's id to the same path with `.done` appended.
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

STIFFNESS = 150.0  # N/m towards the goal
MAX_FORCE = 6.0  # N: a light push (~7 cm/s against the arm's damping at real time)
THERE_M = 0.002  # the hand lets go this close to its goal


def push(world: Any, orders: Path) -> None:
    """The operator's hand: follows the orders in `orders` until the world closes."""
    import mujoco

    from drivers.sim.franky_bridge import PREFIX
    from drivers.sim.scene_build import EE_SITE

    model, data = world.model, world.data
    body = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, f"{PREFIX}hand")
    site = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, f"{PREFIX}{EE_SITE}")
    done, goal = None, None
    while not world.closed:
        time.sleep(0.005)
        try:
            order = json.loads(orders.read_text())
        except (OSError, ValueError):  # no order yet, or one half written
            order = {"id": done}
        with world.lock:
            here = data.site_xpos[site].copy()
            if order["id"] != done:
                done, goal = order["id"], here + np.asarray(order["offset"], dtype=float)
            force = np.zeros(3)
            if goal is not None and np.linalg.norm(goal - here) > THERE_M:
                force = STIFFNESS * (goal - here)
                force *= min(1.0, MAX_FORCE / max(float(np.linalg.norm(force)), 1e-9))
            elif goal is not None:
                goal = None  # there: the hand lets go
                Path(f"{orders}.done").write_text(str(done))
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
