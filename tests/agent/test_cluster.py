"""`collect --ray` and `eval --ray` against a real Ray cluster started here on 127.0.0.1.

The cluster is `ray start --head` with two CPUs and no dashboard, in its own temporary folder,
stopped when the module ends by killing its processes (found by that folder, and their
children), which are then checked gone. Nothing is faked: the
episodes and trials are the real lockstep collection and the real Runtime with the shipped
policy, the killed worker is a real `kill -9` of the Ray worker process running the trial.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray")
pytest.importorskip("zarr")
pytest.importorskip("onnxruntime")

from agent.cli import main
from models.tpm.dataset import EpisodeStore

ROOT = Path(__file__).resolve().parents[2]
RAY = Path(sys.executable).with_name("ray")
SMALL_SIM = ["--set", "sim.image_width=96", "--set", "sim.image_height=96"]
#: the Ray worker's process title while it runs a task of `agent.cluster.run_ordered`
TASK_TITLE = "ray::_call"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cluster_pids(temp_dir: str) -> set[int]:
    """The cluster's processes: those naming its folder (gcs, raylet, agents, monitors) and
    their descendants (the workers). By process id: other Ray instances on the machine (another
    test run's) are left alone, which `ray stop --force` would not do."""
    out = subprocess.run(["ps", "-ww", "-eo", "pid=,ppid=,args="], capture_output=True,
                         text=True).stdout  # fmt: skip
    rows = [line.split(None, 2) for line in out.splitlines() if line.strip()]
    rows = [(int(r[0]), int(r[1]), r[2] if len(r) > 2 else "") for r in rows]
    pids = {pid for pid, _, args in rows if temp_dir in args}
    grown = True
    while grown:
        more = {pid for pid, ppid, _ in rows if ppid in pids} - pids
        pids |= more
        grown = bool(more)
    return pids - {os.getpid()}


def _alive(pid: int) -> bool:
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


def _stop_cluster(temp_dir: str) -> set[int]:
    """SIGTERM, then SIGKILL, to the cluster's processes; those still alive after both."""
    pids = _cluster_pids(temp_dir)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 5
        while any(map(_alive, pids)) and time.monotonic() < deadline:
            time.sleep(0.2)
        pids = {pid for pid in pids if _alive(pid)} | _cluster_pids(temp_dir)
        if not pids:
            break
    return pids


@dataclass(frozen=True)
class Cluster:
    address: str
    temp_dir: str


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A two-CPU Ray head on 127.0.0.1. Stopped (and checked gone) afterwards."""
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    port = _free_port()
    # Ray's token authentication, with this cluster's own token: the drivers (this process and
    # the commands it starts) find it through the same two variables
    token = Path(temp_dir) / "auth_token"
    token.write_text(secrets.token_hex(32))
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    saved = {key: os.environ.get(key) for key in auth}
    os.environ.update(auth)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "RAY_USAGE_STATS_ENABLED": "0",
        "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"),
    }
    start = [str(RAY), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
             "--num-cpus", "2", "--num-gpus", "0", "--include-dashboard", "false",
             "--temp-dir", temp_dir, "--object-store-memory", str(200 * 2**20),
             "--disable-usage-stats"]  # fmt: skip
    proc = subprocess.run(start, capture_output=True, text=True, env=env, timeout=120)
    try:
        assert proc.returncode == 0, proc.stdout + proc.stderr
        yield Cluster(f"127.0.0.1:{port}", temp_dir)
    finally:
        left = _stop_cluster(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        assert not left, f"processes of the test's Ray cluster survived: {sorted(left)}"


def _agent(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """`python -m agent ARGS` in its own process, as a user runs it (Ray reads its token
    settings when it is imported, so every driver here is a fresh process)."""
    return subprocess.run([sys.executable, "-m", "agent", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip


def _episodes(path: Path) -> tuple[list[dict], dict[str, np.ndarray]]:
    store = EpisodeStore(path, read_only=True)
    arrays = {name: store.array(name) for name in ("rgb", "mask", "proprio", "action", "phase")}
    return store.episodes, arrays


def test_collect_on_ray_writes_the_episodes_the_local_path_writes(
    cluster: Cluster, tmp_path: Path, capsys
) -> None:
    """Lockstep collection is deterministic per seed: two episodes recorded by two Ray workers
    land in one store, in seed order, equal step for step to the local path's."""
    args = ["collect", "--episodes", "2", "--seed", "3", *SMALL_SIM, "--max-steps", "200"]
    local, remote = tmp_path / "local.zarr", tmp_path / "ray.zarr"
    assert main([*args, "--out", str(local)]) == 0
    done = _agent(*args, "--out", str(remote), "--ray", cluster.address)
    assert done.returncode == 0, done.stderr
    assert "recorded" in done.stdout
    meta_local, data_local = _episodes(local)
    meta_ray, data_ray = _episodes(remote)
    assert [m["seed"] for m in meta_ray] == [m["seed"] for m in meta_local]
    assert len(meta_ray) >= 1  # the expert succeeds on these seeds
    for a, b in zip(meta_local, meta_ray, strict=True):
        assert {k: v for k, v in a.items()} == {k: v for k, v in b.items()}
    for name, values in data_local.items():
        np.testing.assert_array_equal(values, data_ray[name], err_msg=name)
    attrs_local = EpisodeStore(local, read_only=True).attrs
    attrs_ray = EpisodeStore(remote, read_only=True).attrs
    for key in ("discarded", "expert_failures", "incomplete"):
        assert attrs_local.get(key, 0) == attrs_ray.get(key, 0), key


def _quick_eval(out: Path, *extra: str) -> list[str]:
    return ["eval", "--quick", "--eval-out", str(out), *SMALL_SIM, *extra]


def _run_killing_workers(
    cluster: Cluster, cmd: list[str], *, kills: int | None
) -> tuple[list[int], int, str]:
    """Run `cmd` and `kill -9` the cluster's task workers 2 s into a task (mid-trial), `kills`
    times (None: every one, until the command ends). The pids killed, the exit code, the
    output."""
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)  # fmt: skip
    killed: list[int] = []
    seen: dict[int, float] = {}  # worker pid -> when it was first seen running the task
    try:
        deadline = time.monotonic() + 180
        while (kills is None or len(killed) < kills) and time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            listing = subprocess.run(["ps", "-ww", "-eo", "pid,args"], capture_output=True,
                                     text=True).stdout  # fmt: skip
            for line in listing.splitlines()[1:]:
                pid, _, args = line.strip().partition(" ")
                if not args.strip().startswith(TASK_TITLE) or int(pid) in killed:
                    continue
                if int(pid) not in _cluster_pids(cluster.temp_dir):
                    continue  # another Ray instance's worker
                first = seen.setdefault(int(pid), time.monotonic())
                if time.monotonic() - first >= 2.0:  # inside the task, mid-trial
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
                    killed.append(int(pid))
                    break
            time.sleep(0.2)
        output, _ = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return killed, proc.returncode, output


def test_a_worker_killed_mid_trial_is_retried_and_the_results_are_complete(
    cluster: Cluster, tmp_path: Path
) -> None:
    """A `--quick` evaluation on the cluster, and `kill -9` of the Ray worker running its trial
    2 s into it: Ray runs the trial again, the report is whole."""
    out = tmp_path / "eval"
    cmd = [sys.executable, "-m", "agent", *_quick_eval(out, "--ray", cluster.address)]
    killed, returncode, output = _run_killing_workers(cluster, cmd, kills=1)
    assert killed, "no Ray worker ran the trial"
    assert returncode == 0, output
    report = json.loads((out / "eval.json").read_text())
    (cell,) = report["cells"]
    assert report["ray"] == cluster.address and report["crashed"] == 0 and cell["trials"] == 1
    assert cell["outcomes"][0]["status"] in ("success", "failure")


def test_an_episode_whose_worker_dies_on_every_try_is_lost_reported_and_skipped(
    cluster: Cluster, tmp_path: Path
) -> None:
    """`collect --ray` while every worker running its episode is killed with `kill -9`: after
    Ray's retries the episode is lost; the command names its seed, exits with 1, counts it in
    the store, and the store's next seed is past it (a crash that repeats with one seed cannot
    stall collection into that store)."""
    from agent.cluster import MAX_RETRIES
    from agent.collection import next_episode_index

    demos = tmp_path / "lost.zarr"
    cmd = [sys.executable, "-m", "agent", "collect", "--episodes", "1", "--max-steps", "200",
           "--out", str(demos), "--seed", "5", "--ray", cluster.address, *SMALL_SIM]  # fmt: skip
    killed, returncode, output = _run_killing_workers(cluster, cmd, kills=None)
    assert len(killed) == MAX_RETRIES + 1, (killed, output)
    assert returncode == 1, output
    assert "lost: episode seed" in output and "1 episode(s) lost" in output, output
    assert "Traceback" not in output
    store = EpisodeStore(demos, read_only=True)
    assert store.n_episodes == 0 and store.attrs.get("lost") == 1
    assert next_episode_index(store) == 1


def test_ray_options_are_checked_before_anything_runs(tmp_path: Path, capsys) -> None:
    out = tmp_path / "eval"
    assert main(_quick_eval(out, "--ray-gpus", "0.5")) == 2
    assert "--ray-gpus needs --ray" in capsys.readouterr().err
    assert main(_quick_eval(out, "--ray", "--ray-gpus", "2")) == 2
    assert "not between 0 and 1" in capsys.readouterr().err
    port = _free_port()  # nothing listens there
    assert main(_quick_eval(out, "--ray", f"127.0.0.1:{port}")) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"--ray 127.0.0.1:{port}: no Ray head answers there" in err
    assert not out.exists()
    demos = tmp_path / "demos.zarr"
    args = ["collect", "--episodes", "1", "--out", str(demos), "--ray", f"127.0.0.1:{port}"]
    assert main(args) == 2 and not demos.exists()  # checked before the dataset is created
    assert "no Ray head answers there" in capsys.readouterr().err
