"""The simulated world: one MjModel/MjData, a Cartesian controller, grasp bookkeeping, and time.

Threading: every read or write of `data` happens under `World.lock` (a plain `threading.Lock`).
Physics advances either in lockstep (`step(n)`, from the caller's thread: tests, data collection)
or in a background thread (`start_realtime()`) that steps in 10 ms chunks and sleeps to wall-clock
deadlines *without* holding the lock, so camera threads and the robot driver get in between
chunks. The two modes are exclusive: `step` refuses while the realtime thread runs.

Control: a target end-effector position (site `ee`, between the fingertip pads) with the hand
pointing down at one fixed orientation. At 100 Hz a damped-least-squares IK step on `mj_jacSite`
moves a *commanded* joint vector (solved kinematically on a shadow `MjData`, so servo lag does not
wind up the command) and the arm's position servos track it. The gripper is binary.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import mujoco
import numpy as np

from drivers.base import TaskStart
from drivers.sim.config import SceneSpec
from drivers.sim.scene_build import ARM_JOINTS, HOME_JOINTS, BuiltScene, build_scene
from drivers.sim.state import SceneState

CONTROL_EVERY = 5  # physics steps per controller tick: 100 Hz at dt = 2 ms
WORKSPACE_LOW = np.array([0.22, -0.38, 0.012])
WORKSPACE_HIGH = np.array([0.78, 0.38, 0.55])
HOME_EE = np.array([0.45, 0.0, 0.32])
MAX_EE_SPEED = 0.4  # m/s: how fast the internal setpoint chases a far target
GRIPPER_OPEN_CTRL = 255.0
GRIPPER_CLOSED_CTRL = 0.0
_IK_DAMPING = 0.02
_IK_NULLSPACE_GAIN = 0.05
_IK_MAX_STEP = 0.03
_REALTIME_CHUNK = CONTROL_EVERY
_MAX_LAG = 0.1  # s behind wall-clock before the realtime loop gives up catching up


class WorldClosedError(RuntimeError):
    """The world was closed; its model and threads are gone."""


@dataclass(frozen=True, slots=True)
class RealtimeStats:
    """How well the realtime thread keeps up: sim seconds per wall second and catch-up resets."""

    running: bool
    sim_time: float
    realtime_factor: float
    overruns: int


class World(SceneState):
    """Owns the MuJoCo model and data; see the module docstring for the threading rules.

    The object and hand queries (bounds, contacts, grasps) come from `SceneState`; this class adds
    the Cartesian controller, the gripper command and the clock.
    """

    def __init__(self, built: BuiltScene) -> None:
        super().__init__(built, mujoco.MjData(built.model), threading.Lock())
        m = self.model
        self._arm_q = np.array([m.jnt_qposadr[m.joint(j).id] for j in ARM_JOINTS])
        self._arm_v = np.array([m.jnt_dofadr[m.joint(j).id] for j in ARM_JOINTS])
        self._arm_range = np.array([m.jnt_range[m.joint(j).id] for j in ARM_JOINTS])
        self._hand_act = m.actuator("hand").id
        self._arm_act = np.array([m.actuator(j).id for j in ARM_JOINTS])
        self._ik = mujoco.MjData(m)
        self._jac = np.zeros((6, m.nv))

        self._q_home, self._orientation = self._solve_home()
        self._initial_qpos = self.data.qpos.copy()
        self._rest_z = {n: self.built.object_specs[n].height / 2 for n in self._objects}

        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._closed = False
        self._wall_start = 0.0
        self._sim_start = 0.0
        self._overruns = 0
        self._tick = 0
        self.home()

    @classmethod
    def build(cls, spec: SceneSpec) -> World:
        """Plan, compile and initialise a scene (~0.7 s, most of it loading the arm's meshes)."""
        return cls(build_scene(spec))

    # ------------------------------------------------------------------ controller state

    def ee_target(self) -> np.ndarray:
        with self.lock:
            return self._target.copy()

    def joint_positions(self) -> np.ndarray:
        with self.lock:
            return self.data.qpos[self._arm_q].copy()

    @property
    def gripper_closed(self) -> bool:
        return self._gripper_closed

    # ------------------------------------------------------------------ commands

    def set_target(self, position: np.ndarray, gripper_closed: bool) -> np.ndarray:
        """Set the end-effector target (clipped to the workspace box) and gripper; returns it."""
        target = np.clip(
            np.asarray(position, dtype=float).reshape(3), WORKSPACE_LOW, WORKSPACE_HIGH
        )
        with self.lock:
            self._target = target
            self._gripper_closed = bool(gripper_closed)
        return target.copy()

    def teleport(self, name: str, position: np.ndarray, quat: np.ndarray | None = None) -> None:
        """Put a free object at `position` (body origin) at rest; for tests and scripted setups."""
        self._check_name(name)
        if name not in self._qadr:
            raise ValueError(f"{name!r} is static and cannot be moved")
        qadr, dadr = self._qadr[name]
        with self.lock:
            self.data.qpos[qadr : qadr + 3] = position
            self.data.qpos[qadr + 3 : qadr + 7] = quat if quat is not None else (1.0, 0.0, 0.0, 0.0)
            self.data.qvel[dadr : dadr + 6] = 0.0
            mujoco.mj_forward(self.model, self.data)

    def home(self) -> None:
        """Arm to its home pose, gripper open, target at home; objects stay where they are."""
        with self.lock:
            self._home_locked()

    def reset(self) -> None:
        """Objects back to their initial placement, arm home, grasp flags cleared.

        One step under the lock, so neither the physics thread nor a camera sees half a reset;
        the clock runs on (sim time stays monotonic for the realtime thread and frame stamps).
        """
        with self.lock:
            now = float(self.data.time)
            mujoco.mj_resetData(self.model, self.data)
            self.data.qpos[:] = self._initial_qpos
            self.data.time = now
            self._grasped = set()
            self._tick = 0
            self._home_locked()

    def begin_task(self, reset: bool = True) -> TaskStart:
        """A task begins: reset the scene to its layout (or keep it) and clear the grasp flags.

        The runtime calls this before each task (`drivers.base.TaskWorld`), so that every task
        starts from a known world (`reset=True`) or, when told to keep the scene, is still judged
        only by what happens in it.
        """
        self._check_open()
        if reset:
            self.reset()
        else:
            self.clear_grasps()
        return TaskStart(
            reset=reset, scene=self.describe_scene(), seed=self.spec.seed, t=time.monotonic()
        )

    def _home_locked(self) -> None:
        d = self.data
        d.qpos[self._arm_q] = self._q_home
        d.qvel[self._arm_v] = 0.0
        d.qpos[self._finger_q] = 0.04
        d.ctrl[self._arm_act] = self._q_home
        d.ctrl[self._hand_act] = GRIPPER_OPEN_CTRL
        self._q_cmd = self._q_home.copy()
        mujoco.mj_forward(self.model, d)
        self._target = d.site_xpos[self._site].copy()
        self._setpoint = self._target.copy()
        self._gripper_closed = False

    # ------------------------------------------------------------------ time

    def step(self, n: int = 1) -> None:
        """Advance `n` physics steps (2 ms each) in the caller's thread (lockstep mode)."""
        self._check_open()
        if self.realtime_running:
            raise RuntimeError("step() while the realtime thread runs; stop_realtime() first")
        with self.lock:
            self._advance(n)

    def step_seconds(self, seconds: float) -> None:
        self.step(max(1, round(seconds / self.model.opt.timestep)))

    @property
    def realtime_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start_realtime(self) -> None:
        """Start the physics thread (idempotent): sim time follows wall-clock time."""
        self._check_open()
        if self.realtime_running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run_realtime, name="sim-physics", daemon=True)
        self._thread.start()

    def stop_realtime(self) -> None:
        """Stop the physics thread and wait for it (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None

    def realtime_stats(self) -> RealtimeStats:
        running = self.realtime_running
        wall = time.monotonic() - self._wall_start if running else 0.0
        sim = self.sim_time
        factor = (sim - self._sim_start) / wall if wall > 0 else 0.0
        return RealtimeStats(running, sim, factor, self._overruns)

    def close(self) -> None:
        """Stop the physics thread; further use raises WorldClosedError (idempotent)."""
        self.stop_realtime()
        self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> World:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def realtime(self) -> Iterator[World]:
        """`with world.realtime(): ...` runs the physics thread for the block."""
        self.start_realtime()
        try:
            yield self
        finally:
            self.stop_realtime()

    # ------------------------------------------------------------------ internals

    def _run_realtime(self) -> None:
        dt = self.model.opt.timestep * _REALTIME_CHUNK
        with self.lock:
            sim0 = float(self.data.time)
        wall0 = time.monotonic()
        self._wall_start, self._sim_start, self._overruns = wall0, sim0, 0
        deadline = wall0
        while not self._stop.is_set():
            with self.lock:
                self._advance(_REALTIME_CHUNK)
            deadline += dt
            delay = deadline - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)  # the lock is free while we sleep
            elif -delay > _MAX_LAG:
                deadline = time.monotonic()  # give up catching up rather than burst-stepping
                self._overruns += 1

    def _advance(self, n: int) -> None:
        """Step physics `n` times, running the controller every CONTROL_EVERY steps. Lock held."""
        m, d = self.model, self.data
        while n > 0:
            phase = self._tick % CONTROL_EVERY
            if phase == 0:
                self._control()
            k = min(n, CONTROL_EVERY - phase)
            mujoco.mj_step(m, d, nstep=k)  # one C call per tick: ~3x faster than a Python loop
            self._tick += k
            n -= k

    def _control(self) -> None:
        d = self.data
        control_dt = self.model.opt.timestep * CONTROL_EVERY
        delta = self._target - self._setpoint
        dist = float(np.linalg.norm(delta))
        max_move = MAX_EE_SPEED * control_dt
        self._setpoint = (
            self._target.copy() if dist <= max_move else self._setpoint + delta * (max_move / dist)
        )
        self._q_cmd = self._ik_step(self._q_cmd, self._setpoint)
        d.ctrl[self._arm_act] = self._q_cmd
        d.ctrl[self._hand_act] = GRIPPER_CLOSED_CTRL if self._gripper_closed else GRIPPER_OPEN_CTRL
        self._update_grasps()

    def _ik_step(self, q: np.ndarray, target: np.ndarray, iterations: int = 2) -> np.ndarray:
        """Damped least squares on the shadow data: joint vector that puts the site at `target`."""
        m, ik = self.model, self._ik
        q = q.copy()
        for _ in range(iterations):
            ik.qpos[self._arm_q] = q
            mujoco.mj_kinematics(m, ik)
            mujoco.mj_comPos(m, ik)
            err = np.empty(6)
            err[:3] = target - ik.site_xpos[self._site]
            norm = float(np.linalg.norm(err[:3]))
            if norm > _IK_MAX_STEP:  # linearisation holds only for small steps
                err[:3] *= _IK_MAX_STEP / norm
            current = np.empty(4)
            rot = ik.site_xmat[self._site]
            mujoco.mju_mat2Quat(current, rot)
            local = np.empty(3)
            mujoco.mju_subQuat(local, self._orientation, current)  # in the site frame
            err[3:] = rot.reshape(3, 3) @ local  # the Jacobian is in the world frame
            mujoco.mj_jacSite(m, ik, self._jac[:3], self._jac[3:], self._site)
            jac = self._jac[:, self._arm_v]
            jjt = jac @ jac.T + (_IK_DAMPING**2) * np.eye(6)
            dq = jac.T @ np.linalg.solve(jjt, err)
            pinv = jac.T @ np.linalg.solve(jjt, np.eye(6))
            dq += (np.eye(7) - pinv @ jac) @ (_IK_NULLSPACE_GAIN * (self._q_home - q))
            q = np.clip(q + dq, self._arm_range[:, 0], self._arm_range[:, 1])
        return q

    def _solve_home(self) -> tuple[np.ndarray, np.ndarray]:
        m, ik = self.model, self._ik
        q = np.array(HOME_JOINTS)
        ik.qpos[self._arm_q] = q
        mujoco.mj_kinematics(m, ik)
        orientation = np.empty(4)
        mujoco.mju_mat2Quat(orientation, ik.site_xmat[self._site])
        self._orientation, self._q_home = orientation, q
        for _ in range(50):
            q = self._ik_step(q, HOME_EE, iterations=1)
        return q, orientation

    def _update_grasps(self) -> None:
        if self._gripper_closed:
            self._latch_grasps()

    def _check_open(self) -> None:
        if self._closed:
            raise WorldClosedError("the world is closed")
