"""Closed-loop success rates of the TPM policy in simulation, in the shape of the paper's tables.

Every trial runs the full runtime, as `python -m agent run` does: the rule reasoner turns the
trial's request into a task (a trial whose reasoned task differs from the intended one counts as
a failure), perception detects, tracks and segments, the ONNX policy acts at 10 Hz in realtime
physics, and the simulator's judge decides success.

The protocol (`agent.seeds` names the seed ranges):

- Trials draw their task and scene from the evaluation seeds (`--split evaluation`, the default),
  which no demonstration uses (collection refuses them) and nothing is chosen on: checkpoints and
  recipes are chosen with `--split validation`, a disjoint range. Trial i of every cell has the
  same seed, so variants are compared on the same scenes.
- 40 trials a Table I cell and 20 a Table II cell (the paper's counts; `--trials N` for all), each
  cell reported with its 95% Wilson score interval.
- Table I twice (`--masks both`, the default): with the simulator's ground-truth masks, and with
  GrabCut masks inside the tracked boxes (segmenter `grabcut`). The detector stays the configured
  one (the sim profile: simulator ground truth for the first detection and any re-detection), so
  only the masks lose the oracle. Table II is measured with the first mask source asked for.
- The report's header and the `--reuse` fingerprint name the policy files' sha256, the reasoner,
  the detector, tracker and segmenters, the catalog's and the backgrounds file's sha256, the seed
  split and block, the trials per cell and the step budget.

Table I: standard / new background / more distractors x seen / unseen objects.
Table II: ours vs the variants, in the paper's four settings (seen, unseen, new background, more
distractors): box instead of mask (a policy trained on boxes, run with the box segmenter),
w/o tracking (the same policy, detection every frame), single view and RGB-M only (their own
policies). A variant without a policy file is reported as not run.

    python -m agent eval [--quick] [--trials N] [--split validation|evaluation]
        [--masks truth|grabcut|both] [--objects PATH] [--backgrounds PATH] [--seed S]
        [--workers N | --ray [ADDRESS] [--ray-gpus F]]

`--backgrounds PATH` replaces the looks: the new_background cells show the file's held-out entries
(`held_out = true`), the standard and more_distractors cells its training entries.

The cells and the paper's numbers are in `benchmarks.eval_cells`, the report's header, tables and
`--reuse` in `benchmarks.eval_report`; this module runs the trials and holds the command.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from agent.cluster import RaySpec, precheck, spec_from_args
from agent.seeds import EVAL_SPLITS, SeedRangeError, describe, eval_seed
from benchmarks.eval_cells import (
    MASK_CHOICES,
    MASK_SEGMENTERS,
    TRIALS_PER_CELL,
    Cell,
    EvalError,
    cell_trials,
    plan_cells,
    select_cells,
)
from benchmarks.eval_chart import plot_tables
from benchmarks.eval_dispatch import run_on_ray, run_pooled
from benchmarks.eval_report import (
    file_digest,
    grasp_retry,
    markdown,
    report_header,
    reuse_cells,
    shown,
)
from drivers.sim import offscreen_gl


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from agent.cluster import add_ray_arguments
    from models.tpm.cli_args import positive_int

    parser.add_argument(
        "--trials",
        type=positive_int,
        default=None,
        help=f"trials per cell, every cell (default: {TRIALS_PER_CELL['I']} a Table I cell, "
        f"{TRIALS_PER_CELL['II']} a Table II cell)",
    )
    parser.add_argument("--quick", action="store_true", help="CI smoke: 1 trial, 1 cell, 40 steps")
    parser.add_argument(
        "--tables", default="I,II", help="which tables: I, II or I,II (cells shared)"
    )
    parser.add_argument(
        "--split",
        dest="seed_split",
        choices=list(EVAL_SPLITS),
        default="evaluation",
        help="seed range (agent.seeds): validation to choose checkpoints and recipes, "
        "evaluation (default) for the reported tables only",
    )
    parser.add_argument(
        "--masks",
        choices=list(MASK_CHOICES),
        default="both",
        help="Table I with simulator-truth masks, GrabCut masks in the tracked boxes (the "
        "detector stays as configured), or both (default); Table II uses the first",
    )
    parser.add_argument(
        "--variant-onnx",
        action="append",
        default=[],
        metavar="VARIANT=PATH",
        help="policy file of an ablation (box, single_view, rgbm_only)",
    )
    parser.add_argument(
        "--eval-out", type=Path, default=Path("runs/eval"), help="folder for JSON and markdown"
    )
    parser.add_argument(
        "--cells",
        default=None,
        help="only these cells: standard:seen (ours) or box:standard:seen (a Table II row)",
    )
    parser.add_argument(
        "--reuse",
        type=Path,
        default=None,
        metavar="EVAL_JSON",
        help="take cells from an earlier report with the same fingerprint (policy files, "
        "perception, reasoner, catalog, backgrounds, seeds, trials, step budget)",
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        help="without --ray: trials run at once, one spawned process each, no retries (at most "
        "the cores you can spare)",
    )
    add_ray_arguments(parser)
    parser.add_argument(
        "--max-steps",
        type=positive_int,
        default=250,
        help="step budget per trial (the expert needs ~110-140; a lost policy wanders)",
    )


def trial_config(
    base: Any,
    trial: Any,
    variant: str,
    onnx: Path,
    quick: bool,
    max_steps: int = 250,
    masks: str = "truth",
) -> Any:
    """The run config of one trial: its scene, the policy file, the mask source's segmenter and
    the variant's switches (the box variant segments with boxes whatever the masks)."""
    from agent.config import load_config

    data = base.model_dump(mode="json")
    data["sim"].update(
        seed=trial.seed, objects=trial.objects, split=trial.split, setting=trial.setting
    )
    data["models"].update(policy="tpm", reasoner="rules")
    data["policy"]["onnx"] = str(onnx)
    data["output"]["video"] = False
    data["models"]["segmenter"] = "box" if variant == "box" else MASK_SEGMENTERS[masks]
    if variant == "no_tracking":
        data["models"]["detect_every_frame"] = True
    data["runtime"]["max_steps"] = 40 if quick else max_steps
    return load_config(data)


def run_trial(config: Any, trial: Any) -> dict[str, Any]:
    """One closed-loop episode through the Runtime; the outcome as a dict."""
    from agent import Finished, Reasoned, Runtime
    from agent.event_loop import run_loop

    async def go() -> dict[str, Any]:
        got: dict[str, Any] = {}
        async with Runtime(config) as runtime:
            async for event in runtime.execute(trial.request):
                if isinstance(event, Reasoned):
                    got["reasoned"] = [event.pick, event.place, event.skill]
                if isinstance(event, Finished):
                    got["outcome"] = event.outcome
        return got

    t0 = time.monotonic()
    got = run_loop(go, config.runtime.event_loop)
    outcome = got["outcome"]
    intended = [trial.pick, trial.place, trial.skill.value]
    success = bool(outcome.success) and got.get("reasoned") == intended
    reason, ended = outcome.reason, outcome.ended
    if got.get("reasoned") not in (None, intended):
        reason = f"reasoner chose {got['reasoned']}, intended {intended}"
        ended = "misread request"
    return {
        **trial.info(),
        "success": success,
        "status": outcome.status,
        "reason": reason,
        "steps": outcome.steps,
        "grasp_retries": outcome.grasp_retries,
        "ended": ended if not success else None,
        "wall_s": round(time.monotonic() - t0, 1),
    }


def evaluate(
    base: Any,
    cells: Sequence[Cell],
    policies: dict[str, Path],
    *,
    trials: int | Mapping[str, int],
    seed: int,
    quick: bool,
    max_steps: int = 250,
    workers: int = 1,
    on_trial: Callable[[Cell, dict[str, Any]], None] | None = None,
    split: str = "evaluation",
    ray: RaySpec | None = None,
) -> int:
    """Fill `cells` in place; trial i of a (setting, split) uses the same scene in every variant.

    `trials`: per cell, or per table ({"I": 40, "II": 20}, Cell.table). Trial i draws its scene
    from seed `eval_seed(split, seed, i)` (agent.seeds: the validation or evaluation range).

    `workers` > 1 runs that many trials at once, each in its own spawned process; `ray` runs
    every trial as a Ray task instead (`benchmarks.eval_dispatch`). Each trial is its own
    realtime Runtime, so only use as many workers (Ray: declared CPUs) as there are cores to
    spare; outcomes keep their trial order whatever order they finish in. Returns the number of
    trials whose worker process died ("crashed" outcomes).
    """
    from agent.collection import draw_trial
    from drivers.sim import load_catalog

    catalog = load_catalog(base.sim.catalog)
    jobs: list[tuple[Cell, int, Any, Any]] = []
    for cell in cells:
        onnx = policies.get("ours" if cell.variant == "no_tracking" else cell.variant)
        if onnx is None or not onnx.is_file():
            cell.note = "no policy file"
            continue
        for i in range(cell_trials(cell, trials)):
            trial = draw_trial(
                catalog, eval_seed(split, seed, i), split=cell.split, setting=cell.setting
            )
            config = trial_config(base, trial, cell.variant, onnx, quick, max_steps, cell.masks)
            jobs.append((cell, i, config, trial))
    results: dict[tuple[int, int], dict[str, Any]] = {}

    def record(cell: Cell, i: int, result: dict[str, Any]) -> None:
        results[(id(cell), i)] = result
        cell.trials += 1
        cell.successes += result["success"]
        if on_trial is not None:
            on_trial(cell, result)

    lost = 0
    if ray is not None:
        from agent.cluster import connected

        with connected(ray):
            lost = run_on_ray(jobs, ray, record, run_trial)
    elif workers <= 1:
        for cell, i, config, trial in jobs:
            record(cell, i, run_trial(config, trial))
    else:
        lost = run_pooled(jobs, workers, record, run_trial)
    for cell in cells:
        cell.outcomes = [results[(id(cell), i)] for i in range(cell.trials)]
    return lost


#: models.segmenter values eval runs as configured (any other is refused: eval sets it per block)
EVAL_SEGMENTERS = frozenset(MASK_SEGMENTERS.values())


def run(args: argparse.Namespace, config: Any) -> int:
    """`python -m agent eval`: run the cells, print progress and the tables, write JSON + md."""
    offscreen_gl()
    ray = spec_from_args(args)  # ClusterError: --ray-gpus without --ray
    if ray is not None:
        precheck(ray)  # Ray installed, the head reachable
    if args.quick:
        trials: dict[str, int] = {"I": 1, "II": 1}
    elif args.trials is not None:
        trials = {"I": args.trials, "II": args.trials}
    else:
        trials = dict(TRIALS_PER_CELL)
    masks = MASK_CHOICES[args.masks]
    policies = {"ours": Path(config.policy.onnx)}
    # everything asked for is checked before a trial runs or a file is written (EvalError)
    cells = plan_cells(args.tables, quick=False, masks=masks)
    if args.cells:
        cells = select_cells(cells, args.cells)
    if args.quick:
        cells = cells[:1]
    for item in args.variant_onnx:
        name, _, path = item.partition("=")
        if name not in ("box", "single_view", "rgbm_only") or not path:
            raise EvalError(
                f"--variant-onnx {item!r}: use box=PATH, single_view=PATH or rgbm_only=PATH"
            )
        policies[name] = Path(path)
    if not policies["ours"].is_file():
        raise EvalError(f"no policy file {policies['ours']} (policy.onnx); export one first")
    if config.models.segmenter not in EVAL_SEGMENTERS:
        raise EvalError(
            f"models.segmenter = {config.models.segmenter!r}: eval sets the segmenter per Table I "
            "block (--masks truth: ground_truth, grabcut: grabcut, both)"
        )
    seed, split = config.sim.seed, args.seed_split
    try:  # every trial's seed lies in the split's range
        eval_seed(split, seed, max(cell_trials(c, trials) for c in cells) - 1)
    except SeedRangeError as exc:
        raise EvalError(str(exc)) from None
    out = Path(args.eval_out)
    if out.exists() and not out.is_dir():
        raise EvalError(f"--eval-out {out} is a file; it names the folder for the report")
    from drivers.sim import load_catalog
    from drivers.sim.backgrounds import load_backgrounds

    catalog = load_catalog(config.sim.catalog)
    looks = load_backgrounds(config.sim.backgrounds)
    for setting in dict.fromkeys(c.setting for c in cells):
        looks.choices(setting)  # BackgroundsError: e.g. new_background needs a held-out entry
    workers = max(1, args.workers)
    max_steps = 40 if args.quick else args.max_steps
    randomise = (
        config.sim.randomise.model_dump(mode="json") if config.sim.randomise.enabled else None
    )
    fingerprint: dict[str, Any] = {
        "policies": {k: file_digest(v) for k, v in policies.items() if v.is_file()},
        "split": split,
        "seed": seed,
        "trials_per_cell": trials,
        "max_steps": max_steps,
        "control_hz": config.runtime.control_hz,
        "reasoner": "rules",
        "detector": config.models.detector,
        "tracker": config.models.tracker,
        "detect_every_frame": config.models.detect_every_frame,
        "segmenters": dict(MASK_SEGMENTERS),
        "catalog": file_digest(Path(catalog.source)),
        "backgrounds": file_digest(Path(looks.source)),
        "image_size": [config.sim.image_width, config.sim.image_height],
        "grasp_retry": grasp_retry(config),
    }
    if randomise is not None:
        fingerprint["randomise"] = randomise
    todo = list(cells)
    if args.reuse is not None:
        reused = reuse_cells(cells, args.reuse, fingerprint)
        todo = [c for c in cells if not c.trials]
        print(f"reused {reused} cells from {args.reuse}; {len(todo)} to run", flush=True)

    def show(cell: Cell, result: dict[str, Any]) -> None:
        mark = "ok  " if result["success"] else "FAIL"
        ended = f" [{result['ended']}]" if result.get("ended") else ""
        print(
            f"{mark} {cell.variant:<12} {cell.setting:<16} {cell.split:<6} {cell.masks:<7} "
            f"{result['request']!r}: {result['reason']} ({result['steps']} steps, "
            f"{result.get('grasp_retries', 0)} grasp retries, {result['wall_s']} s){ended}",
            flush=True,
        )

    t0 = time.monotonic()
    lost = evaluate(
        config,
        todo,
        policies,
        trials=trials,
        seed=seed,
        quick=args.quick,
        max_steps=args.max_steps,
        workers=workers,
        on_trial=show,
        split=split,
        ray=ray,
    )
    seeds = EVAL_SPLITS[split]
    report: dict[str, Any] = {
        "seeds": {
            "split": split,
            "range": describe(seeds),
            "block": seed,
            "first": eval_seed(split, seed, 0),
        },
        "trials_per_cell": trials,
        "seed": seed,
        "quick": args.quick,
        "max_steps": max_steps,
        "control_hz": config.runtime.control_hz,
        "workers": workers,
        "ray": ray.address if ray is not None else None,
        "crashed": lost,
        "policies": {
            k: {"path": shown(v), "sha256": fingerprint["policies"].get(k, "")}
            for k, v in policies.items()
        },
        "reasoner": "rules",
        "perception": {
            "detector": config.models.detector,
            "tracker": config.models.tracker,
            "detect_every_frame": config.models.detect_every_frame,
            "segmenters": {m: MASK_SEGMENTERS[m] for m in masks},
        },
        "masks": list(masks),
        "grasp_retry": fingerprint["grasp_retry"],
        "world": {
            "catalog": {"path": shown(catalog.source), "sha256": fingerprint["catalog"]},
            "backgrounds": {"path": shown(looks.source), "sha256": fingerprint["backgrounds"]},
            "randomise": randomise,
            "image_size": fingerprint["image_size"],
        },
        "fingerprint": fingerprint,
        "wall_s": round(time.monotonic() - t0, 1),
    }
    report["header"] = report_header(report)
    report["cells"] = [
        asdict(c) | {"segmenter": c.segmenter, "rate": c.rate, "ci95": c.ci95} for c in cells
    ]
    table = markdown(cells, masks, report["header"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval.json").write_text(json.dumps(report, indent=2, default=str))
    chart = plot_tables(cells, masks, out / "eval.png")  # False without matplotlib
    picture = "\n![Tables I and II: success rates, 95% intervals, the paper's](eval.png)\n"
    (out / "eval.md").write_text(table + (picture if chart else ""))
    print(table)
    print(f"wrote {out / 'eval.json'} and {out / 'eval.md'}" + (" and eval.png" if chart else ""))
    if lost:
        print(
            f"{lost} trials crashed (their worker process died on every try) and count as "
            "failures; --reuse with this report runs their cells again"
        )
    return 0
