"""Closed-loop success rates of the TPM policy in simulation, in the shape of the paper's tables.

Every trial runs the full runtime, as `python -m agent run` does: the rule reasoner turns the
trial's request into a task (a trial whose reasoned task differs from the intended one counts as
a failure), perception detects, tracks and segments with the configured backends, the ONNX policy
acts at 10 Hz in realtime physics, and the simulator's judge decides success. Trials draw their
task and scene from seeds disjoint from the demonstrations' (`EVAL_SEED_BASE`).

Table I: standard / new background / more distractors x seen / unseen objects.
Table II: ours vs the variants, in the paper's four settings (seen, unseen, new background, more
distractors): box instead of mask (a policy trained on boxes, run with the box segmenter),
w/o tracking (the same policy, detection every frame), single view and RGB-M only (their own
policies). A variant without a policy file is reported as not run.

    python -m agent eval [--quick] [--trials N] [--objects PATH] [--backgrounds PATH] [--seed S]

`--backgrounds PATH` replaces the looks: the new_background cells show the file's held-out entries
(`held_out = true`), the standard and more_distractors cells its training entries.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

EVAL_SEED_BASE = 900_000_000  # demonstration seeds are base * 100_000 + index, far below

PAPER_TABLE_I: dict[tuple[str, str], float] = {
    ("standard", "seen"): 82.5,
    ("standard", "unseen"): 80.0,
    ("new_background", "seen"): 65.0,
    ("new_background", "unseen"): 55.0,
    ("more_distractors", "seen"): 75.0,
    ("more_distractors", "unseen"): 70.0,
}
#: Table II settings, in the paper's column order
SETTINGS_II: tuple[tuple[str, str, str], ...] = (
    ("Seen", "standard", "seen"),
    ("Unseen", "standard", "unseen"),
    ("New background", "new_background", "seen"),
    ("More distractors", "more_distractors", "seen"),
)
PAPER_TABLE_II: dict[str, tuple[float, float, float, float]] = {
    "ours": (82.5, 80.0, 65.0, 75.0),
    "box": (50.0, 40.0, 25.0, 30.0),
    "no_tracking": (70.0, 50.0, 55.0, 70.0),
    "single_view": (65.0, 80.0, 20.0, 70.0),
    "rgbm_only": (85.0, 70.0, 50.0, 70.0),
}
VARIANT_LABELS = {
    "ours": "Ours",
    "box": "replace mask with bbox",
    "no_tracking": "w/o tracking",
    "single_view": "single view",
    "rgbm_only": "RGB-M only",
}


class EvalError(ValueError):
    """The evaluation cannot run as asked (tables, cells, policy files); one line, nothing run."""


@dataclass
class Cell:
    """Trials of one (variant, setting, split): successes out of trials, with each outcome."""

    variant: str
    setting: str
    split: str
    trials: int = 0
    successes: int = 0
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""

    @property
    def rate(self) -> float | None:
        return 100.0 * self.successes / self.trials if self.trials else None

    def text(self) -> str:
        if not self.trials:
            return f"- ({self.note})" if self.note else "-"
        return f"{self.rate:.1f} ({self.successes}/{self.trials})"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from models.tpm.cli_args import positive_int

    parser.add_argument("--trials", type=positive_int, default=10, help="trials per table cell")
    parser.add_argument("--quick", action="store_true", help="CI smoke: 1 trial, 1 cell, 40 steps")
    parser.add_argument(
        "--tables", default="I,II", help="which tables: I, II or I,II (cells shared)"
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
        help="take cells from an earlier report (same policy files, seed, trials, step budget)",
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        help="trials run at once, one process each (at most the cores you can spare)",
    )
    parser.add_argument(
        "--max-steps",
        type=positive_int,
        default=250,
        help="step budget per trial (the expert needs ~110-140; a lost policy wanders)",
    )


def trial_config(
    base: Any, trial: Any, variant: str, onnx: Path, quick: bool, max_steps: int = 250
) -> Any:
    """The run config of one trial: its scene, the policy file and the variant's switches."""
    from agent.config import load_config

    data = base.model_dump(mode="json")
    data["sim"].update(
        seed=trial.seed, objects=trial.objects, split=trial.split, setting=trial.setting
    )
    data["models"].update(policy="tpm", reasoner="rules")
    data["policy"]["onnx"] = str(onnx)
    data["output"]["video"] = False
    if variant == "box":
        data["models"]["segmenter"] = "box"
    if variant == "no_tracking":
        data["models"]["detect_every_frame"] = True
    data["runtime"]["max_steps"] = 40 if quick else max_steps
    return load_config(data)


def run_trial(config: Any, trial: Any) -> dict[str, Any]:
    """One closed-loop episode through the Runtime; the outcome as a dict."""
    import anyio

    from agent import Finished, Reasoned, Runtime

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
    got = anyio.run(go)
    outcome = got["outcome"]
    intended = [trial.pick, trial.place, trial.skill.value]
    success = bool(outcome.success) and got.get("reasoned") == intended
    reason = outcome.reason
    if got.get("reasoned") not in (None, intended):
        reason = f"reasoner chose {got['reasoned']}, intended {intended}"
    return {
        **trial.info(),
        "success": success,
        "status": outcome.status,
        "reason": reason,
        "steps": outcome.steps,
        "wall_s": round(time.monotonic() - t0, 1),
    }


def evaluate(
    base: Any,
    cells: Sequence[Cell],
    policies: dict[str, Path],
    *,
    trials: int,
    seed: int,
    quick: bool,
    max_steps: int = 250,
    workers: int = 1,
    on_trial: Callable[[Cell, dict[str, Any]], None] | None = None,
) -> None:
    """Fill `cells` in place; trial i of a (setting, split) uses the same scene in every variant.

    `workers` > 1 runs that many trials at once, each in its own spawned process (a fresh
    MuJoCo / EGL context: forking a process that has rendered is unsafe). Each trial is its own
    realtime Runtime, so only use as many workers as the machine has cores to spare for them;
    outcomes keep their trial order whatever order they finish in.
    """
    from agent.dataset import draw_trial
    from drivers.sim import load_catalog

    catalog = load_catalog(base.sim.catalog)
    jobs: list[tuple[Cell, int, Any, Any]] = []
    for cell in cells:
        onnx = policies.get("ours" if cell.variant == "no_tracking" else cell.variant)
        if onnx is None or not onnx.is_file():
            cell.note = "no policy file"
            continue
        for i in range(trials):
            trial = draw_trial(
                catalog, EVAL_SEED_BASE + seed * 10_000 + i, split=cell.split, setting=cell.setting
            )
            config = trial_config(base, trial, cell.variant, onnx, quick, max_steps)
            jobs.append((cell, i, config, trial))
    results: dict[tuple[int, int], dict[str, Any]] = {}

    def record(cell: Cell, i: int, result: dict[str, Any]) -> None:
        results[(id(cell), i)] = result
        cell.trials += 1
        cell.successes += result["success"]
        if on_trial is not None:
            on_trial(cell, result)

    if workers <= 1:
        for cell, i, config, trial in jobs:
            record(cell, i, run_trial(config, trial))
    else:
        run_pooled(jobs, workers, record)
    for cell in cells:
        cell.outcomes = [results[(id(cell), i)] for i in range(cell.trials)]


#: Fresh pools an evaluation may start after worker processes died, before it gives up on the rest.
MAX_POOL_RESTARTS = 5

Job = tuple[Cell, int, Any, Any]


def run_pooled(
    jobs: Sequence[Job],
    workers: int,
    record: Callable[[Cell, int, dict[str, Any]], None],
    trial_fn: Callable[[Any, Any], dict[str, Any]] = run_trial,
) -> None:
    """Run `jobs` (cell, index, config, trial) in spawned worker processes, `record` each result.

    A worker that dies (seen here: Mesa's llvmpipe faulting inside a camera thread, an hour into
    a run) breaks the whole pool, and every trial not yet finished fails with it. Those trials run
    again in a fresh pool, so one crash no longer throws away an evaluation's finished trials;
    after MAX_POOL_RESTARTS the rest are recorded as failures with status "crashed".
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    context = multiprocessing.get_context("spawn")
    pending, restarts = list(jobs), 0
    while pending:
        broken: list[Job] = []
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            futures = {pool.submit(trial_fn, job[2], job[3]): job for job in pending}
            for future in as_completed(futures):
                job = futures[future]
                try:
                    result = future.result()
                except BrokenProcessPool:
                    broken.append(job)
                    continue
                record(job[0], job[1], result)
        pending = broken  # results are keyed by (cell, trial): their order does not matter
        if pending and restarts == MAX_POOL_RESTARTS:
            for cell, i, _, trial in pending:
                reason = f"its worker process died ({restarts + 1} pools broke); not retried"
                crashed = {"success": False, "status": "crashed", "reason": reason, "steps": 0}
                record(cell, i, {**trial.info(), **crashed, "wall_s": 0.0})
            return
        restarts += bool(pending)


TABLES = ("I", "II")


def plan_cells(tables: str, quick: bool) -> list[Cell]:
    """The distinct (variant, setting, split) cells the requested tables need.

    EvalError names the tables there are when `tables` asks for another.
    """
    wanted = {t.strip().upper() for t in tables.split(",")} - {""}
    unknown = sorted(wanted - set(TABLES))
    if unknown or not wanted:
        raise EvalError(
            f"--tables {tables!r}: no table {', '.join(unknown) or 'named'}; use I, II or I,II"
        )
    keys: list[tuple[str, str, str]] = []
    if "I" in wanted:
        keys += [("ours", s, sp) for (s, sp) in PAPER_TABLE_I]
    if "II" in wanted:
        keys += [(v, s, sp) for v in PAPER_TABLE_II for _, s, sp in SETTINGS_II]
    keys = list(dict.fromkeys(keys))
    if quick:
        keys = keys[:1]
    return [Cell(v, s, sp) for v, s, sp in keys]


def select_cells(cells: Sequence[Cell], spec: str) -> list[Cell]:
    """The cells named in `spec`: SETTING:SPLIT means ours, VARIANT:SETTING:SPLIT a Table II row.

    EvalError, naming the cells there are, for a name that is none of `cells`.
    """
    have = {(c.variant, c.setting, c.split) for c in cells}
    wanted = set()
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        parts = item.split(":")
        key = tuple(["ours", *parts] if len(parts) == 2 else parts)
        if key not in have:
            raise EvalError(f"--cells: no cell {item!r} in these tables; {cell_names(cells)}")
        wanted.add(key)
    if not wanted:
        raise EvalError(f"--cells {spec!r} names no cell; {cell_names(cells)}")
    return [c for c in cells if (c.variant, c.setting, c.split) in wanted]


def cell_names(cells: Sequence[Cell]) -> str:
    """The cells there are, for an error: [VARIANT:]SETTING:SPLIT, variants with the same cells
    grouped, e.g. "cells are SETTING:SPLIT (ours) ...; VARIANT:SETTING:SPLIT for box/..."."""
    by_variant: dict[str, list[str]] = {}
    for c in cells:
        by_variant.setdefault(c.variant, []).append(f"{c.setting}:{c.split}")
    groups: dict[tuple[str, ...], list[str]] = {}
    for variant, names in by_variant.items():
        groups.setdefault(tuple(names), []).append(variant)
    text = []
    for names, variants in groups.items():
        if variants == ["ours"]:
            text.append(f"SETTING:SPLIT (ours) in {', '.join(names)}")
        else:
            text.append(f"VARIANT:SETTING:SPLIT for {'/'.join(variants)} in {', '.join(names)}")
    return "cells are " + "; ".join(text)


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def reuse_cells(cells: Sequence[Cell], report_path: Path, fingerprint: dict[str, Any]) -> int:
    """Fill cells from an earlier report made under the same `fingerprint`; how many were filled.

    The fingerprint holds the policy files' sha256 (not their paths: a re-exported file at the
    same path is another policy), the seed, the trials per cell and the step budget.
    """
    try:
        report = json.loads(report_path.read_text())
    except (OSError, ValueError) as exc:
        raise EvalError(f"--reuse {report_path}: cannot read it ({exc})") from None
    earlier = report.get("fingerprint", {})
    if any(earlier.get(k) != v for k, v in fingerprint.items() if k != "policies"):
        return 0
    measured = {
        (old["variant"], old["setting"], old["split"]): old
        for old in report.get("cells", [])
        if old["trials"] == fingerprint["trials_per_cell"]
    }
    filled = 0
    for cell in cells:
        policy = "ours" if cell.variant == "no_tracking" else cell.variant
        old = measured.get((cell.variant, cell.setting, cell.split))
        if old is None or earlier.get("policies", {}).get(policy) != fingerprint["policies"].get(
            policy
        ):
            continue
        cell.trials, cell.successes = old["trials"], old["successes"]
        cell.outcomes, cell.note = old["outcomes"], "reused"
        filled += 1
    return filled


def markdown(cells: Sequence[Cell], trials: int) -> str:
    """Both tables: ours beside the paper's (real-robot) numbers; each cell with its trial count."""
    by = {(c.variant, c.setting, c.split): c for c in cells}
    lines = [
        "Success rate in % (successes/trials) in simulation; the paper's real-robot numbers "
        "(40 trials per cell in Table I, 20 in Table II) in brackets.",
        "",
        "Table I",
        "",
        "| Scenario | Seen | Unseen |",
        "|---|---|---|",
    ]
    for setting, label in (
        ("standard", "Standard"),
        ("new_background", "New background"),
        ("more_distractors", "More distractors"),
    ):
        row = [label]
        for split in ("seen", "unseen"):
            cell = by.get(("ours", setting, split))
            row.append(f"{cell.text() if cell else '-'} [{PAPER_TABLE_I[(setting, split)]}]")
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Table II", "", "| Method | " + " | ".join(s[0] for s in SETTINGS_II) + " |"]
    lines.append("|---" * (len(SETTINGS_II) + 1) + "|")
    for variant, paper in PAPER_TABLE_II.items():
        row = [VARIANT_LABELS[variant]]
        for (_, setting, split), ref in zip(SETTINGS_II, paper, strict=True):
            cell = by.get((variant, setting, split))
            row.append(f"{cell.text() if cell else '-'} [{ref}]")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace, config: Any) -> int:
    """`python -m agent eval`: run the cells, print progress and the tables, write JSON + md."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    trials = 1 if args.quick else args.trials
    policies = {"ours": Path(config.policy.onnx)}
    # everything asked for is checked before a trial runs or a file is written (EvalError)
    cells = plan_cells(args.tables, quick=False)
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
    out = Path(args.eval_out)
    if out.exists() and not out.is_dir():
        raise EvalError(f"--eval-out {out} is a file; it names the folder for the report")
    from drivers.sim.backgrounds import load_backgrounds

    looks = load_backgrounds(config.sim.backgrounds)
    for setting in dict.fromkeys(c.setting for c in cells):
        looks.choices(setting)  # BackgroundsError: e.g. new_background needs a held-out entry
    seed = config.sim.seed
    workers = max(1, args.workers)
    fingerprint = {
        "policies": {k: file_digest(v) for k, v in policies.items() if v.is_file()},
        "seed": seed,
        "trials_per_cell": trials,
        "max_steps": 40 if args.quick else args.max_steps,
    }
    if config.sim.backgrounds is not None:  # not the packaged looks: cells of others differ
        fingerprint["backgrounds"] = file_digest(Path(config.sim.backgrounds))
    if config.sim.randomise.enabled:
        fingerprint["randomise"] = config.sim.randomise.model_dump(mode="json")
    todo = list(cells)
    if args.reuse is not None:
        reused = reuse_cells(cells, args.reuse, fingerprint)
        todo = [c for c in cells if not c.trials]
        print(f"reused {reused} cells from {args.reuse}; {len(todo)} to run", flush=True)

    def show(cell: Cell, result: dict[str, Any]) -> None:
        mark = "ok  " if result["success"] else "FAIL"
        print(
            f"{mark} {cell.variant:<12} {cell.setting:<16} {cell.split:<6} "
            f"{result['request']!r}: {result['reason']} ({result['steps']} steps, "
            f"{result['wall_s']} s)",
            flush=True,
        )

    t0 = time.monotonic()
    evaluate(
        config,
        todo,
        policies,
        trials=trials,
        seed=seed,
        quick=args.quick,
        max_steps=args.max_steps,
        workers=workers,
        on_trial=show,
    )
    table = markdown(cells, trials)
    out.mkdir(parents=True, exist_ok=True)
    report = {
        "trials_per_cell": trials,
        "seed": seed,
        "quick": args.quick,
        "max_steps": fingerprint["max_steps"],
        "workers": workers,
        "policies": {k: str(v) for k, v in policies.items()},
        "fingerprint": fingerprint,
        "wall_s": round(time.monotonic() - t0, 1),
        "cells": [asdict(c) | {"rate": c.rate} for c in cells],
    }
    (out / "eval.json").write_text(json.dumps(report, indent=2, default=str))
    (out / "eval.md").write_text(table)
    print(table)
    print(f"wrote {out / 'eval.json'} and {out / 'eval.md'}")
    return 0
