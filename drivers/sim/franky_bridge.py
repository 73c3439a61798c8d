"""`FrankySimWorld`: the sim world's scene inside franky-sim, served over the libfranka protocol.

The `franka-sim` profile runs the whole pipeline with the real Franka driver (`FrankaRobot`, i.e.
franky-control's libfranka) against franky-sim instead of our own MuJoCo controller. For that, the
table, the objects, the user figure and the two cameras must be part of franky-sim's MuJoCo model:
franky-sim compiles its scene from an XML tree it owns, so the scene builder's props (everything
but the arm, `drivers.sim.scene_build.props_xml`) are merged into that tree before the server
starts.

Why in-process: the cameras render from the very `MjData` the server steps, so physics and
rendering must share one process and one lock (a server subprocess would leave us nothing to
render). franky's client works against an in-process server (FINDINGS; panda-python's gripper
does not: it holds the GIL while it waits, which is one more reason the profile uses franky).

Why our own loop rather than `SimulationServer.run_forever`: franky-sim's loop sleeps a fixed
1 ms after each tick and falls behind real time (0.6-0.9x, FINDINGS); this loop sleeps to
wall-clock deadlines (1.0x when the CPU allows) and releases the lock between ticks, so the camera
threads get in between ticks and never stall physics for longer than one `update_scene`.

Differences from our `World` that the profile's config accounts for: franky-sim's hand drives its
fingers towards the commanded width with at most the commanded force (so a grasp commands width 0
and relies on the force limit), and it raises no reflexes.
"""

from __future__ import annotations

import logging
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import Any

from drivers.base import DriverError, TaskStart, require_sdk
from drivers.sim.catalog import load_catalog
from drivers.sim.config import SceneSpec
from drivers.sim.scene import SceneError, plan_scene
from drivers.sim.scene_build import EE_SITE, EE_SITE_OFFSET, HOME_JOINTS, BuiltScene, props_xml
from drivers.sim.state import SceneState

log = logging.getLogger(__name__)

PREFIX = "robot0_"  # franky-sim's name prefix for its first (only) robot
HAND_OPEN = 0.08  # m, the Franka Hand's full opening
TICK_S = 0.001  # franky-sim's physics step and libfranka's control period
LATCH_EVERY = 10  # ticks between grasp bookkeeping (100 Hz, as in World)
_MAX_LAG = 0.1  # s behind wall-clock before the loop gives up catching up
_INSTALL = "the franka-sim profile needs franky-sim and mujoco: pip install 'tpm-agent[sim]'"


class FrankySimWorld(SceneState):
    """One franky-sim FR3 with the world's scene, serving libfranka clients on `host`.

    `start()` binds the robot (TCP 1337, UDP) and gripper (TCP 1338) servers on `host`, compiles the
    merged scene and starts the physics thread; `close()` stops it and frees the ports. The object
    and hand queries of `SceneState` work on franky-sim's model, so `SimCamera`, `SimJudge` and
    `ScriptedExpert` take this world as they take a `World`.
    """

    def __init__(
        self,
        spec: SceneSpec,
        *,
        host: str = "127.0.0.1",
        initial_joints: Sequence[float] = HOME_JOINTS,
    ) -> None:
        require_sdk("franky_sim", "franky_sim.mujoco_simulator", error=SceneError, hint=_INSTALL)
        from franky_sim import SimulationServer
        from franky_sim.mujoco_simulator import MujocoSimulator

        catalog = load_catalog(spec.catalog)
        layout = plan_scene(spec, catalog)
        self.host = host
        self._sim: Any = MujocoSimulator(enable_visualization=False)
        self._sim.init()
        # The hand starts open, as a real hand after homing (franky-sim's homing returns the
        # fingers to their start width, and its default start is half open: 4 cm).
        self._sim.add_robot(initial_q=tuple(initial_joints), initial_hand_width=HAND_OPEN)
        _merge_props(self._sim.scene, self._sim.worldbody, ET.fromstring(props_xml(layout)))
        self._server: Any = SimulationServer(self._sim, hostname_candidates=[host])
        try:
            self._server.init()  # binds the sockets, then compiles the merged scene
        except OSError as exc:
            self._cleanup()
            raise DriverError(
                f"franky-sim cannot listen on {host} (ports 1337/1338): {exc}; is "
                "another franky-sim or franka-sim run using it?"
            ) from exc
        except ValueError as exc:  # MuJoCo compile errors
            self._cleanup()
            raise SceneError(f"franky-sim scene failed to compile: {exc}") from exc
        built = BuiltScene(
            model=self._sim.model,
            layout=layout,
            spec=spec,
            catalog=catalog,
            object_specs={p.name: p.spec for p in layout.placements},
        )
        super().__init__(built, self._sim.data, threading.Lock(), prefix=PREFIX)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.realtime_factor = 0.0  # sim seconds per wall second, measured by the loop

    def start(self) -> None:
        """Start the physics thread (idempotent); clients may connect from now on."""
        if self._closed:
            raise DriverError("the franky-sim world is closed")
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="franky-sim", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop physics and free the server's ports (idempotent). Close clients first."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        self._cleanup()

    @property
    def closed(self) -> bool:
        return self._closed

    def begin_task(self, reset: bool = False) -> TaskStart:
        """A task begins: the scene carries over (as on a real table); the grasp flags start afresh.

        franky-sim's arm belongs to the connected libfranka client, which would see a reset arm
        as a jump (and objects put back could land in a closed hand), so this world only keeps
        its scene (`sim.between_tasks = "carry_over"`, which the franka-sim profile sets).
        """
        if self._closed:
            raise DriverError("the franky-sim world is closed")
        if reset:
            raise DriverError(
                "franky-sim cannot reset its scene under a connected libfranka client; "
                'set sim.between_tasks = "carry_over"'
            )
        self.clear_grasps()
        scene = self.describe_scene().replace("MuJoCo scene", "franky-sim scene")
        return TaskStart(reset=False, scene=scene, seed=self.spec.seed, t=time.monotonic())

    def _cleanup(self) -> None:
        try:
            self._server.cleanup()
        finally:
            if self._sim.is_initialized and not self._sim.is_cleaned_up:
                self._sim.cleanup()

    def _run(self) -> None:
        """One franky-sim tick per millisecond: commands in, physics, state out; lock per tick."""
        server = self._server
        wall0 = deadline = time.monotonic()
        sim0 = float(self.data.time)
        tick = 0
        try:
            while not self._stop.is_set():
                with self.lock:
                    server.run_once(realtime=False)
                    tick += 1
                    if tick % LATCH_EVERY == 0:
                        self._latch_grasps()
                deadline += TICK_S
                delay = deadline - time.monotonic()
                if delay > 0:
                    time.sleep(delay)  # the lock is free while we sleep
                else:
                    if -delay > _MAX_LAG:
                        deadline = time.monotonic()  # behind: slow down rather than burst
                    time.sleep(0)  # let camera and driver threads take the lock and the GIL
                if tick % 1000 == 0:
                    wall = time.monotonic() - wall0
                    self.realtime_factor = (float(self.data.time) - sim0) / wall if wall else 0.0
        except Exception:  # the clients see the link drop and fault; the reason goes to the log
            log.exception("franky-sim: physics loop failed")


def _merge_props(scene: ET.Element, worldbody: ET.Element, props: ET.Element) -> None:
    """Merge the props' MJCF into franky-sim's tree so that it looks and grasps like `World`.

    franky-sim's ground plane and lights go (our table top is z = 0 and our lights are the
    training lighting); its shadows and multisampling go (10x cheaper frames, FINDINGS); our
    contact options (elliptic cones, impratio) make grasps hold. The arm gets our `ee` site
    between the fingertip pads, so that `SceneState.ee_position` means the same point.
    """
    for child in list(worldbody):
        if child.tag == "light" or (child.tag == "geom" and child.get("name") == "ground"):
            worldbody.remove(child)
    asset = scene.find("asset")
    assert asset is not None  # franky-sim always writes one (its meshes)
    for tag, into in (("worldbody", worldbody), ("asset", asset)):
        section = props.find(tag)
        into.extend(list(section) if section is not None else [])
    for tag in ("option", "visual", "statistic"):
        ours, theirs = props.find(tag), scene.find(tag)
        if ours is None:
            continue
        if tag == "option" and theirs is not None:
            theirs.attrib.update(ours.attrib)  # keep franky-sim's integrator, add our contacts
            continue
        if theirs is not None:
            scene.remove(theirs)
        scene.insert(1, ours)
    hand = next((b for b in worldbody.iter("body") if b.get("name") == f"{PREFIX}hand"), None)
    if hand is None:
        raise SceneError(f"franky-sim's arm has no body {PREFIX}hand")
    ET.SubElement(
        hand,
        "site",
        name=f"{PREFIX}{EE_SITE}",
        pos=f"0 0 {EE_SITE_OFFSET}",
        size="0.004",
        group="4",
    )
