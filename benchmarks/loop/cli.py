"""`python -m agent bench loop` and `python -m benchmarks.loop`: run both loops, print the
report, write the results (see the package docstring).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from agent.config import Config
from agent.threads import pin_math_threads
from benchmarks._cli import (
    add_json_argument,
    add_threads_argument,
    save_results,
    standalone_main,
)
from benchmarks.loop.report import format_report, models_line, plot_timeline
from benchmarks.loop.runs import REQUEST, LoopResult, run_pipelined, run_sequential
from benchmarks.machine import describe, machine_info
from drivers.sim import offscreen_gl


def run_benchmark(config: Config, steps: int, *, threads: int) -> dict[str, Any]:
    """Both loops on the same config; returns the result document (JSON-ready)."""
    offscreen_gl()
    pin_math_threads(threads)
    config = config.model_copy(
        update={"runtime": config.runtime.model_copy(update={"torch_threads": threads})}
    )
    before = machine_info()
    pipelined = run_pipelined(config, steps, mode="on_arrival")
    fixed_rate = run_pipelined(config, steps, mode="fixed_rate")
    sequential = run_sequential(config, steps)
    info = machine_info()
    info["load_average_before"] = before["load_average"]
    ratio = pipelined.rate_hz / sequential.rate_hz if sequential.rate_hz else None
    seq = sequential.bounds
    ceiling = seq["sum_ms"] / seq["slowest_ms"] if seq.get("slowest_ms") else None
    return {
        "benchmark": "loop",
        "machine": info,
        "threads": threads,
        "models": models_line(config),
        "request": REQUEST,
        "steps": steps,
        "ratio": round(ratio, 3) if ratio else None,
        # what overlapping these stages can give at best, each on a core of its own: the
        # sequential loop's stage sum over its slowest stage
        "ratio_ceiling": round(ceiling, 3) if ceiling else None,
        "caption": (
            f"{steps} control steps of {REQUEST!r} in sim: {models_line(config)}; "
            f"{threads} model thread(s); on {describe(info)}"
        ),
        "pipelined": asdict(pipelined),
        "fixed_rate": asdict(fixed_rate),
        "sequential": asdict(sequential),
    }


def loop_results(result: Mapping[str, Any]) -> list[LoopResult]:
    """The result document's loops in report order (the sequential baseline last)."""
    return [LoopResult(**result[k]) for k in ("pipelined", "fixed_rate", "sequential")]


HEAVY_MODELS = {"tracker": "csrt", "segmenter": "grabcut", "policy": "tpm"}
HEAVY_CAMERA_FPS = 6.0
HEAVY_DEADLINE_S = 2.0


def random_policy(preset_name: str, folder: Path) -> Path:
    """A random-weight TPM of `preset_name` written by export's own path (latency depends on the
    architecture and input size, not on the weights)."""
    import dataclasses

    import torch

    from models.tpm.checkpoint import Normaliser
    from models.tpm.config import preset
    from models.tpm.export import PolicyGraph, write_policy_onnx
    from models.tpm.network import TPMNet

    config = preset(preset_name)
    identity = Normaliser([0.0] * 3, [1.0] * 3, [0.0] * 4, [1.0] * 4)
    graph = PolicyGraph(TPMNet(config), identity).eval()
    v, size = len(config.views), config.image_size
    rgb = torch.zeros(1, v, size, size, 3, dtype=torch.uint8)  # as `prepare_views` gives it
    example = (rgb, torch.zeros(1, v, size, size), torch.zeros(1, 4))
    path = folder / f"tpm_{preset_name}_random.onnx"
    write_policy_onnx(graph, example, path, {"config": dataclasses.asdict(config)})
    return path


def heavy_config(config: Config, folder: Path, preset_name: str = "paper") -> Config:
    """Stages heavy enough that pipelining can pay on this CPU: CSRT tracking, GrabCut masks and
    the `paper` TPM (ResNet-50 + ResNet-18, two 224 px views) on ONNX Runtime.

    The cameras run at `HEAVY_CAMERA_FPS`: every frame the simulator renders costs the CPU the
    stages share (a real camera's frames cost the host next to nothing; measured: at 10 fps
    rendering took 160 ms of CPU per step, at 5 fps 65), but the camera must not be the slowest
    stage either, or the pipelined loop measures the camera. At 5 fps it did on 2026-12-03
    (pipelined at 101% of the camera's 5 Hz, 1.28x and 1.37x the sequential loop, whose stages
    ran faster that day); at 6 fps the pipelined loop is bound by the policy and the CPU (95-97%
    of 1 / the policy's time, 94% of the 2 cores, 1.47x-1.60x in four runs).
    The action deadline is `HEAVY_DEADLINE_S`: these stages make every action 0.6-0.9 s old
    when it arrives, so the default 0.6 s refused nearly all of them (the arm held through the
    whole run, 99 and 100 of 100 steps refused), and the loop measured was not one that moves.
    """
    onnx = random_policy(preset_name, folder)
    return config.model_copy(
        update={
            "models": config.models.model_copy(update=HEAVY_MODELS),
            "policy": config.policy.model_copy(update={"onnx": onnx}),
            "sim": config.sim.model_copy(update={"camera_fps": HEAVY_CAMERA_FPS}),
            "runtime": config.runtime.model_copy(update={"action_deadline_s": HEAVY_DEADLINE_S}),
        }
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The benchmark's own arguments (the CLI's `bench loop` adds the config arguments)."""
    parser.add_argument("--steps", type=int, default=100, help="control steps per loop (100)")
    parser.add_argument(
        "--heavy",
        action="store_true",
        help="heavy stages that run here: CSRT tracking, GrabCut masks and a random-weight "
        "`paper` TPM (ResNet-50 + ResNet-18, two 224 px views) on ONNX Runtime; cameras at 6 fps",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 12 steps, 64 px frames, rules reasoner"
    )
    add_threads_argument(parser)
    add_json_argument(parser, "loop", "report")


def run(args: argparse.Namespace, config: Any, out: Any = None) -> int:
    """Run both loops as the arguments say; prints the report; returns the exit code."""
    out = out or sys.stdout
    steps = args.steps
    if args.quick:
        steps = min(steps, 12)
        sim = config.sim.model_copy(update={"image_width": 64, "image_height": 64})
        models = config.models.model_copy(update={"reasoner": "rules"})
        config = config.model_copy(update={"sim": sim, "models": models})
    if steps < 3:
        print("error: --steps must be at least 3", file=sys.stderr)
        return 2
    threads = args.threads or config.runtime.torch_threads
    with tempfile.TemporaryDirectory(prefix="bench-loop-") as folder:
        if args.heavy:
            print("loop: writing a random-weight paper TPM for the heavy run", file=out, flush=True)
            config = heavy_config(config, Path(folder))
        print(f"loop: {steps} steps, {models_line(config)}", file=out, flush=True)
        result = run_benchmark(config, steps, threads=threads)
    result["heavy"] = bool(args.heavy)
    results = loop_results(result)
    report = format_report(results)
    print(f"\n{result['caption']}\n\n{report}", file=out)
    ratio, ceiling = result["ratio"], result["ratio_ceiling"]
    line = f"pipelined / sequential rate: {ratio:.2f}x" if ratio else "ratio: n/a"
    if ratio and ceiling:
        line += f" (ceiling for these stages, the sequential loop's sum / slowest: {ceiling:.2f}x)"
    print(line, file=out)
    bench = "loop-heavy" if args.heavy else "loop"
    json_path = save_results(bench, result, report, args.json_path, args.quick, out)
    if json_path is not None:
        picture = json_path.with_name(json_path.stem + "-timeline.png")
        if plot_timeline(results, picture):
            print(f"wrote {picture}", file=out)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    doc = sys.modules["benchmarks.loop"].__doc__
    return standalone_main("python -m benchmarks.loop", doc, add_arguments, run, argv)
