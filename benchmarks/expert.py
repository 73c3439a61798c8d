"""How often the scripted expert succeeds, per skill, split and setting, in lockstep simulation.

The policy can only copy what the demonstrations show, and `collect` keeps only the expert's
successes: an expert that fails on some kind of task (a tall pick, a narrow container) leaves a
hole in the data exactly there. This benchmark runs the expert alone on drawn tasks, the way
`collect` runs it (same task draw, same scenes, same lockstep control at `runtime.control_hz` and
`sim.max_step_m`, same settling and judge) but without rendering or perception, which the
expert never reads. Trials cycle through the splits and settings, so every cell gets its share.

Seeds are demonstration seeds, as `collect --seed S` draws them (task i: `agent.seeds.
episode_seed(S, i)`); the held-out validation and evaluation ranges are refused.

    python -m agent bench expert [--tasks 300] [--seed 7] [--json PATH]
    python -m benchmarks.expert [--tasks 300] [--set sim.seed=7]  (the sim profile)
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.collection import Trial, draw_trial
from agent.seeds import SeedRangeError, check_collection_seeds, episode_seed
from benchmarks._cli import save_results, standalone_main
from benchmarks.machine import describe, machine_info
from drivers.sim import offscreen_gl

if TYPE_CHECKING:
    from drivers.sim.expert import ExpertAction

SPLITS = ("seen", "unseen")
SETTINGS = ("standard", "new_background", "more_distractors")
#: the expert's step budget, as `collect --max-steps` has it by default
MAX_STEPS = 400


@dataclass(frozen=True, slots=True)
class ExpertTrial:
    """One expert episode's outcome: the task, whether the judge passed it, and why."""

    trial: Trial
    success: bool
    reason: str
    steps: int
    retries: int
    seconds: float

    def record(self) -> dict[str, object]:
        """The task's fields (`Trial.info`) and the outcome's, for the JSON file."""
        outcome = {k: v for k, v in asdict(self).items() if k != "trial"}
        return {**self.trial.info(), **outcome}


def trials(count: int, base: int, start: int = 0) -> Iterator[Trial]:
    """`count` drawn tasks on demonstration seeds of `base` from episode `start` on, cycling
    splits and settings (task i takes cell i mod 6, so a run can be split in parts)."""
    from drivers.sim import load_catalog

    catalog = load_catalog(None)
    cells = [(split, setting) for setting in SETTINGS for split in SPLITS]
    for i in range(start, start + count):
        split, setting = cells[i % len(cells)]
        yield draw_trial(catalog, episode_seed(base, i), split=split, setting=setting)


def run_trial(trial: Trial, *, control_hz: float, max_step_m: float) -> ExpertTrial:
    """Build the trial's scene and let the expert drive it in lockstep until it says done."""
    offscreen_gl()  # before the next import loads mujoco
    from drivers.sim import SceneSpec, ScriptedExpert, SimJudge
    from drivers.sim.rollout import LockstepScene, run_steps, settle_and_judge

    t0 = time.monotonic()
    spec = SceneSpec(
        seed=trial.seed,
        objects=trial.objects,
        split=trial.split,
        setting=trial.setting,
    )
    task = trial.task()
    with LockstepScene.open(spec, (), control_hz=control_hz, max_step_m=max_step_m) as scene:
        expert = ScriptedExpert(scene.world)
        judge = SimJudge(scene.world)
        expert.reset(task)
        failed, why, retries = False, "expert gave up", 0

        def decide(_: object, __: object) -> ExpertAction | None:
            nonlocal failed, why, retries
            action = expert.act(None)
            retries = int(action.info.get("retries", 0.0))
            if not action.done:
                return action
            failed = bool(action.info.get("failed", 0.0))
            why = f"expert gave up in {expert.phase!r}"
            return None

        ended = run_steps(
            lambda: None, decide, scene.robot, max_steps=MAX_STEPS, advance=scene.advance
        )
        steps = ended.moves + ended.done  # the step on which the expert said done counts
        if ended.budget_used:
            failed, why = True, f"step budget ({MAX_STEPS}) used in phase {expert.phase!r}"
        verdict = settle_and_judge(scene.world, judge, task)
    success = verdict.success and not failed
    reason = verdict.reason if not failed else f"{why} ({verdict.reason})"
    return ExpertTrial(
        trial,
        success,
        reason,
        steps,
        retries,
        time.monotonic() - t0,
    )


def failure_kind(row: ExpertTrial) -> str:
    """A failure's reason with the objects named A and B and every number N, to count."""
    text = row.reason.replace(row.trial.pick, "A").replace(row.trial.place, "B")
    return re.sub(r"\d+(?:\.\d+)?", "N", text)


def table(rows: Sequence[ExpertTrial]) -> str:
    """Markdown: success / trials per skill (rows) and split x setting (columns), with totals."""
    cells = [(split, setting) for setting in SETTINGS for split in SPLITS]
    counts: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    for r in rows:
        t = r.trial
        for skill in (t.skill.value, "all"):
            for split, setting in ((t.split, t.setting), ("all", "all")):
                counts[(skill, split, setting)][0] += r.success
                counts[(skill, split, setting)][1] += 1
    skills = [*sorted({r.trial.skill.value for r in rows}), "all"]
    head = ["skill", *(f"{setting} {split}" for split, setting in cells), "total"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for skill in skills:
        row = [skill]
        for split, setting in [*cells, ("all", "all")]:
            ok, n = counts.get((skill, split, setting), (0, 0))
            row.append(f"{ok}/{n}" if n else "-")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The benchmark's own arguments (the CLI's `bench expert` adds the config arguments)."""
    parser.add_argument("--tasks", type=int, default=300, help="drawn tasks (default 300)")
    parser.add_argument(
        "--start", type=int, default=0, help="first task index (default 0), to split a run"
    )
    parser.add_argument("--json", type=Path, help="also write the trials as JSON")


def run(args: argparse.Namespace, config: Any, out: Any = None) -> int:
    """Run the expert on `--tasks` drawn tasks; print the table and the failures."""
    out = out or sys.stdout
    if args.tasks < 1 or args.start < 0:
        print("error: --tasks must be at least 1 and --start at least 0", file=sys.stderr)
        return 2
    base = config.sim.seed  # `--seed S`, as for `collect`: task i has seed episode_seed(S, i)
    try:
        check_collection_seeds(base, args.start, args.tasks)
    except SeedRangeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows: list[ExpertTrial] = []
    t0 = time.monotonic()
    for trial in trials(args.tasks, base, args.start):
        row = run_trial(
            trial, control_hz=config.runtime.control_hz, max_step_m=config.sim.max_step_m
        )
        rows.append(row)
        if not row.success:
            print(
                f"FAIL seed {row.trial.seed} {row.trial.split}/{row.trial.setting}: "
                f"{row.trial.request}: {row.reason} (retries {row.retries})",
                file=out,
                flush=True,
            )
    ok = sum(r.success for r in rows)
    text = table(rows)
    print(text, file=out)
    reasons = Counter(failure_kind(r) for r in rows if not r.success)
    minutes = (time.monotonic() - t0) / 60
    print(
        f"expert: {ok}/{len(rows)} succeeded ({100 * ok / len(rows):.1f}%) in {minutes:.1f} min; "
        f"failures by kind: {dict(reasons.most_common())}",
        file=out,
    )
    info = machine_info()
    result = {
        "machine": info,
        "caption": f"Scripted expert, lockstep, {len(rows)} tasks (seeds of base {base}), "
        f"{ok}/{len(rows)} succeeded; {describe(info)}",
        "trials": [r.record() for r in rows],
    }
    save_results("expert", result, text, args.json, True, out)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return standalone_main("benchmarks.expert", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
