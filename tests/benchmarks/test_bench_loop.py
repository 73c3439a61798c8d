"""The loop benchmark: metering proxies, the bounds arithmetic, and a smoke run of both loops."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from agent.cli import main
from benchmarks.loop.meters import Meter, Meters, _Metered, frame_set_key
from benchmarks.loop.runs import LoopResult, bounds, latency_breakdown
from tests.conftest import make_config

pytest.importorskip("mujoco")


class Backend:
    name = "fake"

    def work(self, n: int) -> int:
        return sum(range(n))


def test_metered_proxy_times_listed_methods_and_passes_the_rest() -> None:
    meter = Meter("perceive")
    proxy = _Metered(Backend(), meter, ["work"])
    assert proxy.name == "fake"
    results: list[int] = []
    worker = threading.Thread(target=lambda: results.append(proxy.work(200_000)))
    worker.start()
    worker.join()
    assert results == [sum(range(200_000))]
    assert meter.calls == 1 and len(meter.wall_ms) == 1
    assert 0 < meter.cpu_s <= meter.wall_ms[0] / 1e3 + 0.01  # CPU of the worker thread only


def test_sleeping_costs_wall_time_but_no_cpu() -> None:
    meter = Meter("capture")
    meter.wrap(time.sleep)(0.05)
    assert meter.wall_ms[0] >= 45 and meter.cpu_s < 0.01


def _result(rate: float, stages: dict[str, float], render: dict[str, float]) -> LoopResult:
    return LoopResult(
        mode="x",
        steps=10,
        window_s=1.0,
        rate_hz=rate,
        latency_ms={},
        interval_ms={},
        jitter_ms={},
        stale=0,
        dropped={},
        stage_ms={k: {"median": v} for k, v in stages.items()},
        render_ms=render,
        cpu={},
    )


def test_bounds_use_the_slowest_stage_and_the_sum(tmp_path: Path) -> None:
    config = make_config(tmp_path, "runtime.control_hz=20", "sim.camera_fps=30")
    result = _result(2.0, {"perceive": 400.0, "act": 50.0, "command": 5.0}, {"front": 40.0})
    b = bounds(result, config, schedule="fixed_rate")
    assert b["slowest_stage"] == "perceive" and b["bound_slowest_hz"] == 2.5
    assert b["sum_ms"] == 40 + 400 + 50 + 10  # command: a state read and a move per step
    assert b["of_slowest"] == 0.8
    fast = _result(9.0, {"perceive": 1.0, "act": 1.0, "command": 0.1}, {"front": 20.0})
    assert bounds(fast, config, schedule="fixed_rate")["slowest_stage"] == "control period"
    assert bounds(fast, config, schedule="on_arrival")["slowest_stage"] == "camera period"


def test_pipeline_bound_takes_the_slowest_view_and_the_command_interval(tmp_path: Path) -> None:
    config = make_config(tmp_path, "sim.camera_fps=100", "runtime.min_command_interval_s=0.04")
    result = _result(10.0, {"perceive": 8.0, "act": 2.0, "command": 0.5}, {"a": 30.0, "b": 45.0})
    b = bounds(result, config, schedule="on_arrival")
    assert b["slowest_stage"] == "render" and b["slowest_ms"] == 45.0  # views render in parallel
    assert b["sum_ms"] == 45 + 8 + 2 + 1
    slow_render = _result(10.0, {"perceive": 8.0, "act": 2.0, "command": 0.5}, {"a": 20.0})
    assert bounds(slow_render, config, schedule="on_arrival")["slowest_stage"] == "command interval"


def test_latency_breakdown_chains_a_steps_parts_from_capture_to_command() -> None:
    """Known times (s) for two steps: set captured at 10.0, last view drawn at 10.050,
    perception 10.051-10.060, policy 10.062-10.066, command sent 70 ms after capture. The second
    step's parts are all 10 ms longer. Steps are matched to their set by capture time, a few ms
    off (events are stamped after the command); a step with no metered set is left out."""
    meters = Meters()
    meters.render_spans = {  # the side view draws after the front one: it completes each set
        "front": {1: (10.0, 10.03), 2: (10.1, 10.13)},
        "side": {1: (10.0005, 10.050), 2: (10.1005, 10.16)},
    }
    for seq, span in ((1, (10.051, 10.060)), (2, (10.171, 10.19))):
        frames = {
            view: SimpleNamespace(t_capture=spans[seq][0], seq=seq)
            for view, spans in meters.render_spans.items()
        }
        meters.stages["perceive"].keyed[frame_set_key(frames)] = span
    meters.stages["act"].keyed = {10.0: (10.062, 10.066), 10.1: (10.2, 10.214)}
    steps = [(10.0 + 0.002, 70.0), (10.1 + 0.003, 130.0), (10.5, 60.0)]
    b = latency_breakdown(meters, steps)
    assert b["steps"] == 2 and b["total"] == 100.0
    expected = {
        "render (set)": 55.0,
        "wait for perception": 6.0,
        "perceive": 14.0,
        "wait for policy": 6.0,
        "act": 9.0,
        "to command sent": 10.0,
    }
    assert {k: b[k] for k in expected} == pytest.approx(expected)
    assert latency_breakdown(Meters(), steps) == {}


def test_pipeline_render_stage_is_the_sets_when_views_draw_in_turn(tmp_path: Path) -> None:
    """With one GL context drawing at a time a set is complete after both draws: the measured
    set render (capture to last view drawn) is the stage, not the slowest single view."""
    config = make_config(tmp_path, "sim.camera_fps=10")
    result = _result(10.0, {"perceive": 8.0, "act": 2.0, "command": 0.5}, {"a": 40.0, "b": 45.0})
    result.breakdown = {"render (set)": 70.0}
    b = bounds(result, config, schedule="on_arrival")
    assert b["sum_ms"] == 70 + 8 + 2 + 1 and b["slowest_stage"] == "camera period"


def test_sequential_bound_is_the_sum_of_its_own_stages(tmp_path: Path) -> None:
    """Known stage times: two views read one after the other (20 ms each), perceive 30, act 25,
    command 2.5 twice: 100 ms, 10 Hz. A loop measured at 9 Hz is at 90% of it, never above 100%
    as the old bound (render instead of the loop's frame wait) allowed."""
    config = make_config(tmp_path, "sim.camera_fps=30")
    stages = {"capture": 20.0, "perceive": 30.0, "act": 25.0, "command": 2.5}
    b = bounds(_result(9.0, stages, {"front": 5.0, "side": 5.0}), config, schedule="sequential")
    assert b["sum_ms"] == 100.0 and b["bound_sum_hz"] == 10.0 and b["of_sum"] == 0.9
    assert b["slowest_stage"] == "capture" and b["slowest_ms"] == 40.0


def test_quick_smoke_run_of_both_loops(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "loop.json"
    assert main(["bench", "loop", "--quick", "--steps", "8", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "pipelined / sequential rate:" in printed
    result = json.loads(out.read_text())
    assert result["ratio"] > 0
    assert result["ratio_ceiling"] >= 1  # a stage sum over its slowest stage
    assert "ceiling for these stages" in printed
    for mode in ("pipelined", "fixed_rate", "sequential"):
        r = result[mode]
        assert r["steps"] >= 3 and r["rate_hz"] > 0, r
        assert r["latency_ms"]["median"] > 0
        assert {"perceive", "act", "command"} <= set(r["stage_ms"])
        assert r["cpu"]["process"]["cpu_s"] > 0 and r["bounds"]["bound_slowest_hz"] > 0
        # each step is found by its percept's capture time in the keyed perceive and act calls
        assert r["breakdown"]["steps"] >= r["steps"] - 2, r["breakdown"]
    assert "runtime overhead (event loop)" in result["pipelined"]["cpu"]
    assert set(result["pipelined"]["dropped"]) >= {"frames/front", "frames/side", "actions"}
    assert out.with_suffix(".md").exists()
    assert result["pipelined"]["mode"] == "pipelined, on arrival"
    timeline = result["pipelined"]["timeline"]
    assert timeline["perceive"] and timeline["act"] and timeline["render front"]
    picture = tmp_path / "loop-timeline.png"
    assert picture.stat().st_size > 5000


def test_heavy_config_runs_csrt_grabcut_and_a_random_tpm_file(tmp_path: Path) -> None:
    """The heavy run's wiring, on the small preset to keep it quick: the policy file it writes is
    one the runtime's ONNX Runtime backend loads and calls."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("torch")
    import numpy as np

    from benchmarks.loop.cli import heavy_config
    from models.tpm.onnx_policy import OnnxTPMPolicy
    from models.types import Observation

    config = heavy_config(make_config(tmp_path), tmp_path, preset_name="cpu")
    assert (config.models.tracker, config.models.segmenter) == ("csrt", "grabcut")
    assert config.models.policy == "tpm" and config.policy.onnx.is_file()
    assert config.sim.camera_fps == 6.0  # the pipelined loop (~5.3 Hz) is not bound by the camera
    # its actions arrive 0.6-0.9 s after capture: under the default deadline the arm only held
    assert config.runtime.action_deadline_s == 2.0 > make_config(tmp_path).runtime.action_deadline_s
    policy = OnnxTPMPolicy(config.policy.onnx, threads=1)
    image = np.zeros((64, 64, 3), np.uint8)
    views = ("front", "side")
    action = policy.act(
        Observation(
            images=dict.fromkeys(views, image),
            masks=dict.fromkeys(views, np.zeros((64, 64), np.float32)),
            proprio=np.array([0.45, 0.0, 0.3, 0.0], np.float32),
        )
    )
    assert action.move.shape == (3,) and np.isfinite(action.move).all()


def test_the_machine_bound_is_its_cores_over_the_cpu_a_step_costs(tmp_path: Path) -> None:
    """500 ms of CPU per step (stages, rendering, physics) on 2 cores: no schedule steps faster
    than 4 Hz, however its stages overlap; a loop at 3 Hz is at 75% of it."""
    config = make_config(tmp_path, "sim.camera_fps=30")
    result = _result(3.0, {"perceive": 200.0, "act": 250.0, "command": 1.0}, {"front": 30.0})
    result.cpu = {"process": {"ms_per_step": 500.0}}
    b = bounds(result, config, schedule="on_arrival", cores=2)
    assert b["bound_cpu_hz"] == 4.0 and b["of_cpu"] == 0.75
    assert b["slowest_stage"] == "act"  # the stage bound is still there, beside it
