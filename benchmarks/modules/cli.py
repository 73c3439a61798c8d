"""`python -m agent bench modules` and `python -m benchmarks.modules`: render the scene,
measure the selected entries, print the table, write the results (see the package docstring).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
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
from benchmarks.machine import machine_info, preload_torch
from benchmarks.modules.core import (
    Bench,
    Entry,
    Scene,
    Settings,
    caption,
    format_table,
    run_entries,
)
from benchmarks.modules.registry import REGISTRY
from benchmarks.table4 import PAPER_MS, WEIGHTS_NOTE, Row, select_keys


def render_scene(config: Config, size: int, n_frames: int) -> Scene:
    """Frames of the first camera while the scripted expert moves the arm (apple into bowl).

    Uses the tracking benchmark's lockstep recorder, so the frames are the runtime's: the same
    world, camera and renderer, at `size` x `size`.
    """
    from benchmarks.tracking_iou import EPISODES, expert_frames
    from models.detection.ground_truth import GroundTruthDetector

    episode = EPISODES[1]
    view = config.cameras.views[0]
    recorded = expert_frames(episode, views=[view], size=size, max_steps=n_frames)
    frames = [views[view] for views in recorded[:n_frames]]
    phrases = [episode.pick, episode.place]
    found = {
        d.label: d.box for d in GroundTruthDetector().detect(frames[0].rgb, phrases, frames[0])
    }
    missing = [p for p in phrases if p not in found]
    if missing:
        raise RuntimeError(f"{missing} not visible in view {view!r} at {size} px")
    return Scene(frames=frames, phrases=phrases, boxes=[found[p] for p in phrases], size=size)


def select(entries: Sequence[Entry], only: Sequence[str], heavy: bool) -> list[Entry]:
    """Entries whose key contains one of `only` (all if empty); heavy ones only when asked."""
    return [e for e in select_keys(entries, only) if heavy or not e.heavy]


def run_benchmark(
    config: Config,
    entries: Sequence[Entry],
    settings: Settings,
    *,
    threads: int,
    log: Any = None,
) -> dict[str, Any]:
    """Render the scene, measure every entry; returns the result document (JSON-ready)."""
    preload_torch()  # before rendering: see its docstring
    pin_math_threads(threads)
    before = machine_info()
    t0 = time.perf_counter()
    scene = render_scene(config, settings.size, settings.frames)
    with tempfile.TemporaryDirectory(prefix="bench-modules-") as folder:
        bench = Bench(config=config, scene=scene, workdir=Path(folder), threads=threads)
        rows = run_entries(entries, bench, settings, log=log)
    info = machine_info()  # the load after the run too: the slow rows ran under it
    info["load_average_before"] = before["load_average"]
    return {
        "benchmark": "modules",
        "machine": info,
        "threads": threads,
        "settings": asdict(settings),
        "weights": WEIGHTS_NOTE,
        "paper_ms": PAPER_MS,
        "duration_s": round(time.perf_counter() - t0, 1),
        "caption": caption(info, settings, threads),
        "rows": [r.to_dict(omit=("variant", "speedup")) for r in rows],
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The benchmark's own arguments (the CLI's `bench modules` adds the config arguments)."""
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 1 warm-up, 2-3 runs, 96 px frames (numbers are not for reading)",
    )
    parser.add_argument(
        "--no-heavy",
        action="store_true",
        help="leave out modules taking seconds per call on a CPU (Grounding DINO, SAM, MobileSAM, "
        "TPM paper)",
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="KEY",
        help="only entries whose key contains KEY, repeatable (e.g. tracker, segmenter/sam)",
    )
    parser.add_argument("--list", action="store_true", help="list the entries and exit")
    parser.add_argument("--runs", type=int, help="most timed runs per row (default 200)")
    parser.add_argument("--budget", type=float, help="seconds of timed runs per row (default 20)")
    parser.add_argument("--size", type=int, help="frame side in px (default: sim.image_width)")
    add_threads_argument(parser)
    add_json_argument(parser, "modules", "table")


def _settings(args: argparse.Namespace, config: Config) -> Settings:
    size = args.size or config.sim.image_width
    base = Settings.quick(args.size or 96) if args.quick else Settings(size=size)
    updates = {k: v for k, v in (("runs", args.runs), ("budget_s", args.budget)) if v is not None}
    return Settings(**{**asdict(base), **updates})


def run(args: argparse.Namespace, config: Any, out: Any = None) -> int:
    """Run the benchmark as the arguments say; prints the table; returns the exit code."""
    out = out or sys.stdout
    if args.list:
        for e in REGISTRY:
            print(f"{e.key:<34} {e.family:<10} {'heavy' if e.heavy else ''}", file=out)
        return 0
    entries = select(REGISTRY, args.only, heavy=not args.no_heavy)
    if not entries:
        print(f"error: no entry matches {args.only} (see --list)", file=sys.stderr)
        return 2
    threads = args.threads or config.runtime.torch_threads
    settings = _settings(args, config)
    config = config.model_copy(
        update={"runtime": config.runtime.model_copy(update={"torch_threads": threads})}
    )
    print(f"modules: {len(entries)} entries, {threads} thread(s), {WEIGHTS_NOTE}", file=out)
    result = run_benchmark(config, entries, settings, threads=threads, log=out)
    table = format_table([Row.from_dict(r) for r in result["rows"]])
    print(f"\n{result['caption']}\n\n{table}", file=out)
    save_results("modules", result, table, args.json_path, args.quick, out)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    doc = sys.modules["benchmarks.modules"].__doc__
    return standalone_main("python -m benchmarks.modules", doc, add_arguments, run, argv)
