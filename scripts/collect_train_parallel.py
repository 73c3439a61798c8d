"""Collect demonstrations and train policies in parallel, on a machine with many cores and a GPU.

The project's own commands, run side by side: N `python -m agent collect` processes (one dataset
each: a dataset has one writer) for a wall-clock budget, then one `python -m agent train` per
network variant on all of the datasets, each with a time budget (`--minutes`), all on one GPU
(the `cpu` preset is far too small to fill a GPU from one process). The shipped `cpu` policy and
the Table II variants were made this way; see policies/TRAINING.md.

    python scripts/collect_train_parallel.py --out /tmp/job --collectors 15 \\
        --collect-minutes 4 --train-minutes 4 --variants ours,box,single_view,rgbm_only \\
        --seed-base 1000 -- --batch-size 64 --lr 8e-4 --threads 2

Arguments after `--` go to every `train`; `--run NAME=ARGS` adds a training with its own extra
arguments (e.g. a fine-tuning run from an earlier checkpoint). Collectors are stopped with SIGTERM
when their budget is spent: the dataset format loses at most the episode each was recording.
Writes OUT/summary.json (datasets, episode counts and rates, each training's result) and a log per
process under OUT/logs/.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agent.seeds import SeedRangeError, check_collection_seeds  # noqa: E402
from drivers.sim import offscreen_gl  # noqa: E402
from models.tpm.dataset import EpisodeStore  # noqa: E402

#: each collector's episode count: far more than its budget records, it is stopped by time
COLLECT_EPISODES = 1_000_000
PINNED = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def agent(*args: str) -> list[str]:
    return [sys.executable, "-m", "agent", *args]


def start(cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **PINNED, "MUJOCO_GL": offscreen_gl()}
    with log.open("wb") as f:
        return subprocess.Popen(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, env=env)


def stop(procs: list[subprocess.Popen[bytes]], grace_s: float = 20.0) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def collect(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Run the collectors for their budget; what each dataset holds afterwards."""
    stores = [args.out / "data" / f"c{k:02d}.zarr" for k in range(args.collectors)]
    sets = [a for s in args.set for a in ("--set", s)]
    procs = [
        start(
            agent(
                "collect",
                "--episodes",
                str(COLLECT_EPISODES),
                "--out",
                str(path),
                *sets,
                "--seed",
                str(args.seed_base + k),
            ),
            args.out / "logs" / f"collect-{k:02d}.log",
        )
        for k, path in enumerate(stores)
    ]
    t0 = time.monotonic()
    while time.monotonic() - t0 < args.collect_minutes * 60:
        if all(p.poll() is not None for p in procs):
            break
        time.sleep(2)
    stop(procs)
    minutes = (time.monotonic() - t0) / 60
    rows = []
    for k, path in enumerate(stores):
        try:
            store = EpisodeStore(path, read_only=True)
        except ValueError as exc:  # a collector that died before its first episode
            rows.append({"store": str(path), "error": str(exc), "exit": procs[k].returncode})
            continue
        attrs = store.attrs
        rows.append(
            {
                "store": str(path),
                "episodes": store.n_episodes,
                "steps": store.n_steps,
                "expert_failures": int(attrs.get("expert_failures", 0)),
                "exit": procs[k].returncode,
            }
        )
    kept = sum(r.get("episodes", 0) for r in rows)
    failed = sum(r.get("expert_failures", 0) for r in rows)
    steps = sum(r.get("steps", 0) for r in rows)
    print(
        f"collected {kept} episodes ({steps} steps) in "
        f"{minutes:.1f} min with {args.collectors} processes: {kept / minutes:.1f} kept/min; "
        f"expert success {kept}/{kept + failed}",
        flush=True,
    )
    return rows


def train(args: argparse.Namespace, datasets: list[str]) -> dict[str, Any]:
    """One training per variant (and per `--run`), side by side, each within its time budget."""
    data = [a for d in datasets for a in ("--data", d)]
    runs = {v: ["--variant", v] for v in args.variants}
    for spec in args.run:
        name, _, extra = spec.partition("=")
        runs[name] = shlex.split(extra)
    procs = {
        v: start(
            agent(
                "train",
                "--out",
                str(args.out / "runs" / v),
                "--minutes",
                str(args.train_minutes),
                "--seed",
                str(args.seed),
                *data,
                *args.train_args,
                *extra,  # after the common arguments: a run's own settings win
            ),
            args.out / "logs" / f"train-{v}.log",
        )
        for v, extra in runs.items()
    }
    # loading the data and the last validation come on top of the budget
    deadline = time.monotonic() + args.train_minutes * 60 + args.train_slack_s
    for p in procs.values():
        try:
            p.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            stop([p])
    results: dict[str, Any] = {}
    for v, p in procs.items():
        tail = (args.out / "logs" / f"train-{v}.log").read_text(errors="replace").splitlines()
        results[v] = {"exit": p.returncode, "last_line": tail[-1] if tail else ""}
        print(f"train {v}: exit {p.returncode}: {tail[-1] if tail else ''}", flush=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--collectors", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    parser.add_argument("--collect-minutes", type=float, default=5.0)
    parser.add_argument("--train-minutes", type=float, default=5.0)
    parser.add_argument("--train-slack-s", type=float, default=90.0)
    parser.add_argument("--variants", default="ours", help="comma-separated: ours, box, ...")
    parser.add_argument(
        "--seed-base",
        type=int,
        default=1000,
        help="collector k uses collect --seed base + k (outside the held-out seeds, agent.seeds)",
    )
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    parser.add_argument("--set", action="append", default=[], help="config override for collect")
    parser.add_argument(
        "--run",
        action="append",
        default=[],
        metavar="NAME=ARGS",
        help='another training beside the variants, e.g. "ours-ft=--init C.pt --lr 3e-4"',
    )
    parser.add_argument(
        "--data", action="append", default=[], help="train on these datasets too (or only)"
    )
    parser.add_argument("train_args", nargs=argparse.REMAINDER, help="-- then train arguments")
    args = parser.parse_args()
    args.variants = [v for v in args.variants.split(",") if v]
    args.train_args = [a for a in args.train_args if a != "--"]
    try:  # no collector may record a validation or evaluation scene
        for k in range(args.collectors):
            check_collection_seeds(args.seed_base + k, 0, COLLECT_EPISODES)
    except SeedRangeError as exc:
        parser.error(str(exc))
    summary: dict[str, Any] = {"started": time.time()}
    datasets = list(args.data)
    if args.collectors > 0 and args.collect_minutes > 0:
        rows = collect(args)
        summary["collect"] = rows
        datasets += [r["store"] for r in rows if r.get("episodes", 0) > 0]
    if (args.variants or args.run) and args.train_minutes > 0 and datasets:
        summary["train"] = train(args, datasets)
    summary["finished"] = time.time()
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
