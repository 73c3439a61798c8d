"""The `collect` command (`python -m agent collect`): its arguments, checks and progress display.

Everything the user gave is read and checked (catalog, preset, pilot, perception, the seeds)
before the dataset is created or opened for writing; then `agent.collection.collect` records the
episodes while a progress bar shows episodes per minute and the driver's success rate. Kept apart
from the recording itself, which needs no command line and is used by the benchmarks too.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from agent.cli import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_TERMINATED
from agent.cluster import precheck, spec_from_args
from agent.collection import CollectSettings, EpisodeResult, collect, next_episode_index
from agent.interrupts import Terminated, sigterm_interrupts
from agent.seeds import SeedRangeError, check_collection_seeds
from models.tpm.dataset import EpisodeStore


def add_collect_arguments(parser: argparse.ArgumentParser) -> None:
    from agent.cluster import add_ray_arguments
    from models.tpm.cli_args import fraction, positive_int
    from models.tpm.config import PRESETS

    parser.add_argument("--episodes", type=positive_int, required=True, help="episodes to record")
    parser.add_argument(
        "--out", type=Path, default=Path("data/demos.zarr"), help="dataset (created or appended)"
    )
    parser.add_argument("--split", choices=["seen", "unseen"], default="seen")
    parser.add_argument(
        "--setting", choices=["standard", "new_background", "more_distractors"], default="standard"
    )
    parser.add_argument(
        "--preset", default="cpu", choices=list(PRESETS), help="TPM preset (its input size)"
    )
    parser.add_argument(
        "--randomise",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="domain randomisation of each episode's look (table, wall, lights, object colours, "
        "camera pose), drawn from the episode seed (default: on; ranges: sim.randomise.*)",
    )
    parser.add_argument(
        "--pilot",
        type=Path,
        default=None,
        help="DAgger: a TPM policy (ONNX) that drives while the expert labels every step",
    )
    parser.add_argument(
        "--expert-share",
        type=fraction,
        default=0.0,
        help="with --pilot: share of steps the expert drives instead (0..1, default 0)",
    )
    parser.add_argument(
        "--early-close",
        type=fraction,
        default=0.0,
        help="share of episodes (0..1, default 0) in which the hand is closed on nothing for 2-6 "
        "steps of the reach to the grasp, whoever drives; the expert's labels teach the "
        "recovery (agent.collection.EarlyClose)",
    )
    parser.add_argument(
        "--max-steps", type=positive_int, default=400, help="step budget per episode"
    )
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="each step's command reaches the arm this long after its frame, physics running on "
        "under the previous command meanwhile, as in the realtime runtime (its capture-to-command "
        "time; `bench loop`); 0 to one control period, default 0",
    )
    add_ray_arguments(parser)


def run_collect(args: argparse.Namespace, config: Any) -> int:
    """`python -m agent collect`: record, show progress (episodes / min, expert success rate).

    Everything the user gave is read and checked (catalog, preset, pilot, perception) before the
    dataset is created or opened for writing.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from agent.backends import BackendError, pipeline_factory
    from drivers.sim import load_catalog
    from models.tpm.config import preset

    ray = spec_from_args(args)  # ClusterError: --ray-gpus without --ray
    if ray is not None:
        precheck(ray)  # Ray installed, the head reachable: before the dataset is created
    if args.episodes < 1 or args.max_steps < 1:
        raise BackendError("--episodes and --max-steps must be at least 1")
    if not 0.0 <= args.expert_share <= 1.0:
        raise BackendError("--expert-share must be between 0 and 1")
    period_ms = 1000.0 / config.runtime.control_hz
    if not 0.0 <= args.latency_ms <= period_ms:  # NaN fails both
        raise BackendError(
            f"--latency-ms must be between 0 and one control period ({period_ms:g} ms at "
            f"runtime.control_hz {config.runtime.control_hz:g}), got {args.latency_ms:g}"
        )
    try:  # the first episodes' seeds; collect() checks again once the store's count is known
        check_collection_seeds(config.sim.seed, 0, args.episodes)
    except SeedRangeError as exc:
        raise BackendError(str(exc)) from None
    catalog = load_catalog(config.sim.catalog)  # CatalogError: one line, nothing created
    try:
        policy = preset(args.preset)
    except ValueError as exc:
        raise BackendError(str(exc)) from None
    pilot = None
    if args.pilot is not None:
        from models.tpm.onnx_policy import OnnxTPMPolicy
        from models.types import ModelError

        try:
            pilot = OnnxTPMPolicy(args.pilot, providers=config.policy.providers)
        except ModelError as exc:
            raise BackendError(str(exc)) from None
        if pilot.image_size != policy.image_size:
            raise BackendError(
                f"--pilot {args.pilot} runs at {pilot.image_size} px, preset "
                f"{args.preset!r} records {policy.image_size} px"
            )
    # the perception `run` uses, as configured, but in lockstep: re-detection inside each step,
    # on every lost frame (no back-off), so recorded data depends on no thread timing
    new_pipeline = pipeline_factory(config, lockstep=True)
    settings = CollectSettings(
        episodes=args.episodes,
        seed=config.sim.seed,
        split=args.split,
        setting=args.setting,
        views=tuple(config.cameras.views),
        policy_size=policy.image_size,
        render_width=config.sim.image_width,
        render_height=config.sim.image_height,
        control_hz=config.runtime.control_hz,
        max_step_m=config.sim.max_step_m,
        catalog=config.sim.catalog,
        backgrounds=config.sim.backgrounds,
        randomise=config.sim.randomise.model_copy(update={"enabled": args.randomise}),
        expert_share=args.expert_share if pilot is not None else 1.0,
        max_steps=args.max_steps,
        latency_s=args.latency_ms / 1000.0,
        early_close=args.early_close,
    )
    store = EpisodeStore(
        args.out, views=settings.views, image_size=settings.policy_size, create=True
    )
    if store.recovered:
        print(f"note: {args.out}: {store.recovered}")
    try:  # appending: the seeds continue after the store's episodes
        check_collection_seeds(config.sim.seed, next_episode_index(store), args.episodes)
    except SeedRangeError as exc:
        raise BackendError(str(exc)) from None
    kept = succeeded = done = steps = 0
    lost: list[EpisodeResult] = []
    stopped: KeyboardInterrupt | None = None
    t0 = time.monotonic()
    driver = "expert" if pilot is None else f"pilot ({args.expert_share:.0%} expert)"
    columns = (
        TextColumn("collect"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:.1f} ep/min  " + driver + " success {task.fields[success]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns) as progress:
        bar = progress.add_task("collect", total=args.episodes, rate=0.0, success="-")

        def advance(result: EpisodeResult) -> None:
            """The bar moves as episodes complete (on Ray: in any order, before they are
            written)."""
            nonlocal succeeded, done
            if result.lost:  # no episode ran to its end: not a success or failure of the driver
                progress.update(bar, advance=1)
                return
            succeeded += result.success
            done += 1
            minutes = (time.monotonic() - t0) / 60
            rate = done / minutes if minutes > 0 else 0.0
            success = f"{succeeded}/{done} ({100 * succeeded / done:.0f}%)"
            progress.update(bar, advance=1, rate=rate, success=success)
            if not progress.console.is_terminal:  # a log file: the bar shows only at the end
                progress.console.print(
                    f"collect {done}/{args.episodes} episodes, {rate:.1f} ep/min, {driver} "
                    f"success {success}, {minutes:.1f} min",
                    highlight=False,
                )

        try:  # Ctrl-C or SIGTERM: the episode under way is dropped, the summary still comes
            with sigterm_interrupts():
                if ray is None:
                    results = collect(store, settings, new_pipeline, catalog, pilot)
                else:
                    from agent.collection_remote import collect_on_ray

                    results = collect_on_ray(
                        store, settings, config, catalog, ray, pilot=args.pilot, on_done=advance
                    )
                for result in results:
                    if result.lost:
                        lost.append(result)
                        progress.console.print(
                            f"lost: episode seed {result.trial.seed}, its worker died on every try "
                            f"({result.reason}); skipped"
                        )
                        continue
                    kept += result.kept
                    steps += result.steps if result.kept else 0
                    if ray is None:
                        advance(result)
        except KeyboardInterrupt as exc:
            stopped = exc
    failures = done - succeeded
    what = "expert failures not kept" if pilot is None else "failures kept (DAgger labels)"
    print(
        f"recorded {kept} of {done} episodes ({steps} steps); {driver} succeeded in "
        f"{succeeded}; {failures} {what}; {args.out} now holds {store.n_episodes} episodes, "
        f"{store.n_steps} steps; {(time.monotonic() - t0) / 60:.1f} min"
    )
    if stopped is not None:
        how = "terminated by SIGTERM" if isinstance(stopped, Terminated) else "interrupted"
        print(f"{how}: the episode under way was dropped; the episodes above are kept")
        return EXIT_TERMINATED if isinstance(stopped, Terminated) else EXIT_INTERRUPTED
    if lost:
        seeds = ", ".join(str(r.trial.seed) for r in lost)
        print(
            f"{len(lost)} episode(s) lost, their workers died on every try (seeds {seeds}): "
            "skipped, and not drawn again; the Ray workers' logs say why"
        )
        return EXIT_FAILED
    return 0
