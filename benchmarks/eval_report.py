"""The evaluation's report: its header (what the numbers are), the tables in markdown, and
reusing cells of an earlier report made under the same fingerprint (`--reuse`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.endings import ENDINGS
from agent.seeds import EVAL_SPLITS, describe
from benchmarks.eval_cells import (
    MASK_SEGMENTERS,
    MASK_TITLES,
    PAPER_TABLE_I,
    PAPER_TABLE_II,
    SETTINGS_II,
    VARIANT_LABELS,
    Cell,
    EvalError,
    cell_trials,
)

if TYPE_CHECKING:
    from agent.config import Config


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def shown(path: str | Path) -> str:
    """A path as the report names it: relative to the working folder when inside it."""
    resolved = Path(path).resolve()
    try:
        return resolved.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(path)


def reuse_cells(cells: Sequence[Cell], report_path: Path, fingerprint: dict[str, Any]) -> int:
    """Fill cells from an earlier report made under the same `fingerprint`; how many were filled.

    Every entry but the policies must be the same, and no more nor fewer of them (the seed split
    and block, the trials per cell, the step budget, the reasoner, the perception backends, the
    catalog's and backgrounds file's sha256, ...). The policies are compared per cell: the sha256
    of the file the cell's variant runs (not its path: a re-exported file at the same path is
    another policy). A cell is matched by variant, setting, objects' split and mask source, and
    taken only with the trials it is to have, and none of them "crashed" (a cell that lost a
    trial to a dead worker is run again).
    """
    try:
        report = json.loads(report_path.read_text())
    except (OSError, ValueError) as exc:
        raise EvalError(f"--reuse {report_path}: cannot read it ({exc})") from None
    earlier = report.get("fingerprint", {})
    shared = set(fingerprint) - {"policies"}
    if set(earlier) - {"policies"} != shared or any(earlier[k] != fingerprint[k] for k in shared):
        return 0
    measured = {
        (old["variant"], old["setting"], old["split"], old.get("masks", "truth")): old
        for old in report.get("cells", [])
    }
    filled = 0
    for cell in cells:
        policy = "ours" if cell.variant == "no_tracking" else cell.variant
        old = measured.get(cell.key)
        if old is None or old["trials"] != cell_trials(cell, fingerprint["trials_per_cell"]):
            continue
        if any(o.get("status") == "crashed" for o in old.get("outcomes", [])):
            continue
        if earlier.get("policies", {}).get(policy) != fingerprint["policies"].get(policy):
            continue
        cell.trials, cell.successes = old["trials"], old["successes"]
        cell.outcomes, cell.note = old["outcomes"], "reused"
        filled += 1
    return filled


def markdown(
    cells: Sequence[Cell], masks: Sequence[str] = ("truth",), header: Sequence[str] = ()
) -> str:
    """The tables, under `header` (report_header): Table I once per mask source in `masks`,
    Table II with the first; ours beside the paper's (real-robot) numbers, each cell with its
    trial count and 95% Wilson score interval."""
    by = {c.key: c for c in cells}
    lines = [*header, ""] if header else []
    lines += [
        "Success rate in % (successes/trials; 95% Wilson score interval in %) in simulation; "
        "the paper's real-robot numbers (40 trials per cell in Table I, 20 in Table II) in "
        "brackets.",
    ]
    for source in masks:
        lines += [
            "",
            f"Table I, {MASK_TITLES[source]}",
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
                cell = by.get(("ours", setting, split, source))
                row.append(f"{cell.text() if cell else '-'} [{PAPER_TABLE_I[(setting, split)]}]")
            lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        f"Table II, {MASK_TITLES[masks[0]]}",
        "",
        "| Method | " + " | ".join(s[0] for s in SETTINGS_II) + " |",
        "|---" * (len(SETTINGS_II) + 1) + "|",
    ]
    for variant, paper in PAPER_TABLE_II.items():
        row = [VARIANT_LABELS[variant]]
        for (_, setting, split), ref in zip(SETTINGS_II, paper, strict=True):
            cell = by.get((variant, setting, split, masks[0]))
            row.append(f"{cell.text() if cell else '-'} [{ref}]")
        lines.append("| " + " | ".join(row) + " |")
    endings = failure_table(
        [(f"{c.variant} / {c.setting} / {c.split} / {c.masks}", c.outcomes) for c in cells]
    )
    if endings:
        lines += ["", "How the failed trials ended (agent/endings.py)", "", *endings]
    return "\n".join(lines) + "\n"


def failure_table(rows: Sequence[tuple[str, Sequence[Mapping[str, Any]]]]) -> list[str]:
    """Markdown lines: per (label, outcomes) row, how many failed trials ended each way (only
    the endings that occur get a column); empty when nothing failed."""
    counts = [
        (label, [o.get("ended") or "not recorded" for o in outcomes if not o.get("success")])
        for label, outcomes in rows
    ]
    seen = {kind for _, kinds in counts for kind in kinds}
    columns = [k for k in (*ENDINGS, "not recorded") if k in seen]
    if not columns:
        return []
    lines = [
        "| Cell | failed | " + " | ".join(columns) + " |",
        "|---" * (len(columns) + 2) + "|",
    ]
    for label, kinds in counts:
        if kinds:
            cells = [str(kinds.count(k)) for k in columns]
            lines.append(f"| {label} | {len(kinds)} | " + " | ".join(cells) + " |")
    return lines


def grasp_retry(config: Config) -> dict[str, float] | None:
    """The runtime's grasp retry as the trials run it (None: off), for fingerprint and header."""
    rt = config.runtime
    if rt.grasp_retries == 0:
        return None
    return {"retries": rt.grasp_retries, "empty_grip_m": rt.empty_grip_m, "lift_m": rt.retry_lift_m}


def describe_grasp_retry(settings: Mapping[str, float] | None) -> str:
    if not settings:
        return "off (the policy's actions only)"
    return (
        f"on, up to {settings['retries']:g} an episode: a hand closed on a gap under "
        f"{1e3 * settings['empty_grip_m']:g} mm is opened and lifted "
        f"{1e2 * settings['lift_m']:g} cm"
    )


def report_header(report: Mapping[str, Any]) -> list[str]:
    """What the numbers are: seeds, trials, policies, reasoner, perception, world files (markdown
    lines, from the report's own entries)."""
    seeds = report["seeds"]
    if seeds["split"] == "evaluation":
        use = (
            "the evaluation seeds: no demonstration uses them (collection refuses them) and no "
            f"checkpoint or recipe is chosen on them (that is the validation range, "
            f"{describe(EVAL_SPLITS['validation'])})"
        )
    else:
        use = (
            "the validation seeds: for choosing checkpoints and recipes; report the evaluation "
            f"seeds ({describe(EVAL_SPLITS['evaluation'])}), not these"
        )
    trials = report["trials_per_cell"]
    counts = (
        f"{trials} every cell"
        if isinstance(trials, int)
        else f"{trials['I']} a Table I cell, {trials['II']} a Table II cell"
    )
    policies = ", ".join(
        f"{name} `{p['path']}` (sha256 {p['sha256'][:12]})"
        for name, p in report["policies"].items()
    )
    perception = report["perception"]
    masks = "; ".join(
        f"{source}: segmenter {MASK_SEGMENTERS[source]}" for source in report["masks"]
    )
    world = report["world"]
    randomise = "on " + json.dumps(world["randomise"]) if world["randomise"] else "off"
    lines = [
        "# TPM policy in simulation: closed-loop success rates",
        "",
        f"- Seeds: {seeds['split']} {seeds['range']}, block {seeds['block']} (trial i of every "
        f"cell has seed {seeds['first']} + i): {use}.",
        f"- Trials: {counts}; step budget {report['max_steps']} steps at "
        f"{report['control_hz']:g} Hz; {report['workers']} worker process(es).",
        f"- Policies: {policies}.",
        f"- Reasoner: {report['reasoner']} (the trial's direct command; a task other than the "
        "intended one fails the trial).",
        f"- Perception: detector {perception['detector']}, tracker {perception['tracker']}"
        f"{', detection every frame' if perception['detect_every_frame'] else ''}; "
        f"masks by Table I block: {masks} (Table II: {report['masks'][0]}; the box variant "
        "segments with its boxes).",
        f"- World: catalog `{world['catalog']['path']}` (sha256 "
        f"{world['catalog']['sha256'][:12]}), backgrounds `{world['backgrounds']['path']}` "
        f"(sha256 {world['backgrounds']['sha256'][:12]}), look randomisation {randomise}; "
        f"camera images {world['image_size'][0]}x{world['image_size'][1]}.",
        f"- Grasp retry (agent.grasp_retry): {describe_grasp_retry(report.get('grasp_retry'))}.",
    ]
    if "grabcut" in report["masks"] and perception["detector"] == "ground_truth":
        lines.append(
            "- GrabCut block: the detector is still the simulator's ground truth (the first "
            "detection, and any re-detection when the tracker loses the object); only the masks "
            "lose the oracle, cut by GrabCut inside the tracked boxes."
        )
    return lines
