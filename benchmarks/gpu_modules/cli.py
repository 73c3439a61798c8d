"""`python -m benchmarks.gpu_modules`: the parent's command line, and the child's (hidden
arguments) that the parent starts once per module.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks.gpu_modules.child import run_child
from benchmarks.gpu_modules.networks import REGISTRY
from benchmarks.gpu_modules.parent import run_benchmark
from benchmarks.gpu_modules.results import merge_into, write_results
from benchmarks.gpu_modules.variants import VARIANTS, Settings
from benchmarks.table4 import WEIGHTS_NOTE, select_keys


def _variants(text: str) -> list[str]:
    chosen = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in chosen if v not in VARIANTS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown variant(s) {unknown}; allowed: {list(VARIANTS)}")
    return chosen


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu_modules",
        description=sys.modules["benchmarks.gpu_modules"].__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 warm-up, 2-3 runs")
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="KEY",
        help="only entries whose key contains KEY, repeatable (e.g. policy, tracker, sam)",
    )
    p.add_argument(
        "--variants",
        type=_variants,
        help=f"comma-separated, of {', '.join(VARIANTS)}; the sdpa ones apply to SAM ViT-B only "
        "(default: all but the compile ones, which run in a pass of their own)",
    )
    p.add_argument(
        "--tiny",
        action="store_true",
        help="SAM ViT-B at a smoke-test size (implied by --quick on the CPU)",
    )
    p.add_argument("--no-compile", action="store_true", help="leave out the torch.compile pass")
    p.add_argument("--total", type=float, default=230.0, help="seconds for the whole run")
    p.add_argument(
        "--scale", type=float, default=1.0, help="multiply every module's time budget (slow hosts)"
    )
    p.add_argument("--budget", type=float, help="seconds of timed runs per variant (default 2)")
    p.add_argument("--warmup", type=int, help="warm-up calls per variant (default 5)")
    p.add_argument("--runs", type=int, help="most timed runs per variant (default 200)")
    p.add_argument("--min-runs", type=int, help="least timed runs per variant (default 10)")
    p.add_argument("--list", action="store_true", help="list the entries and exit")
    p.add_argument("--json", dest="json_path", type=Path, help="write the results JSON here")
    p.add_argument("--md", dest="md_path", type=Path, help="write the captioned table here")
    p.add_argument("--log", dest="log_path", type=Path, help="write the children's output here")
    p.add_argument(
        "--merge",
        dest="merge_path",
        type=Path,
        metavar="ALL.json",
        help="put the rows of this run (or of --from) into an earlier result: its rows of the "
        "same modules are replaced, ALL.json and ALL.md (beside it) rewritten",
    )
    p.add_argument(
        "--from",
        dest="merge_from",
        type=Path,
        metavar="NEW.json",
        help="with --merge: merge this result instead of running anything",
    )
    # the child process's own arguments
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--results", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    return p


def _child_main(args: argparse.Namespace, settings: Settings) -> int:
    entry = next(e for e in REGISTRY if e.key == args.child)
    with open(args.results, "a", encoding="utf-8") as results:

        def emit(event: dict[str, Any]) -> None:
            results.write(json.dumps(event) + "\n")
            results.flush()
            if event["event"] == "row":
                print(f"{event['module']} [{event['variant']}]: {event['status']} "
                      f"{event.get('median')} ms {event.get('note', '')}", flush=True)  # fmt: skip

        run_child(
            entry,
            args.variants,
            device=args.device,
            settings=settings,
            deadline=args.deadline or math.inf,
            workdir=args.workdir,
            emit=emit,
            tiny=args.tiny,
        )
    return 0


def main(argv: Sequence[str] | None = None, out: Any = None) -> int:
    out = out or sys.stdout
    args = parser().parse_args(argv)
    settings = Settings.quick() if args.quick else Settings()
    updates = {
        name: value
        for name, value in (
            ("budget_s", args.budget),
            ("warmup", args.warmup),
            ("runs", args.runs),
            ("min_runs", args.min_runs),
        )
        if value is not None
    }
    settings = Settings(**{**asdict(settings), **updates})
    if args.child:
        return _child_main(args, settings)
    if args.list:
        for e in REGISTRY:
            print(f"{e.key:<32} {e.family:<10} budget {e.budget_s:g} s", file=out)
        return 0
    if args.merge_from is not None:
        if args.merge_path is None:
            print("error: --from needs --merge ALL.json", file=sys.stderr)
            return 2
        return merge_into(args.merge_path, json.loads(args.merge_from.read_text()), out)
    entries = select_keys(REGISTRY, args.only)
    if not entries:
        print(f"error: no entry matches {args.only} (see --list)", file=sys.stderr)
        return 2
    print(f"gpu_modules: {len(entries)} entries on {args.device}, {WEIGHTS_NOTE}", file=out)
    log = None
    if args.log_path is not None:
        args.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(args.log_path, "w", encoding="utf-8")  # noqa: SIM115
    try:
        result = run_benchmark(
            entries,
            device=args.device,
            settings=settings,
            total_s=args.total,
            variants=args.variants,
            compile_pass=not args.no_compile,
            scale=args.scale,
            out=out,
            log=log,
            progress=partial(write_results, args.json_path, args.md_path),
            tiny=args.tiny or (args.quick and args.device == "cpu"),
        )
    finally:
        if log is not None:
            log.close()
    table = write_results(args.json_path, args.md_path, result)
    print(f"\n{result['caption']}\n\n{table}", file=out)
    for path in (args.json_path, args.md_path):
        if path is not None:
            print(f"wrote {path}", file=out)
    if args.merge_path is not None:
        return merge_into(args.merge_path, result, out)
    return 0
