"""Reasoning benchmark in the spirit of the paper's Table III: accuracy and latency per backend.

A case is `{"request": str, "objects": [str, ...], "pick": [acceptable], "place": [acceptable]}`;
an empty `pick` means nothing in view fits (the backend must answer pick=None), and "user" in
`place` means near the person. A case counts as right when both pick and place are acceptable.

    python -m agent bench reasoning [--backend NAME ...] [--cases FILE] [--json PATH]
    python -m benchmarks.reasoning  (the same arguments)

Without --backend every offline backend runs (one whose extra is missing is skipped with the
reason) and `openai` too when it is configured (models.reasoner, reasoning.base_url, or its key in
the environment). The last line is the primary backend's accuracy, e.g. `accuracy 0.93 (93/100)`:
the first --backend, else models.reasoner when it ran, else the first backend that ran.

The default cases are `benchmarks/data/reasoning_eval.json`, held out from all tuning; the tables,
prompt and thresholds were tuned on `reasoning_dev.json` only (pass it with --cases to see).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent / "data"
DEFAULT_CASES = DATA / "reasoning_eval.json"
OFFLINE_BACKENDS = ("rules", "offline")
ALL_BACKENDS = (*OFFLINE_BACKENDS, "openai")


class CasesError(ValueError):
    """A cases file that cannot be used, in one line naming the case and the field."""


@dataclass(frozen=True, slots=True)
class Case:
    request: str
    objects: list[str]
    pick: list[str]
    place: list[str]

    def judge(self, pick: str | None, place: str | None) -> bool:
        """Both right: nothing picked for a nothing-fits case, else pick and place acceptable."""
        if not self.pick:
            return pick is None
        return _norm(pick) in {_norm(p) for p in self.pick} and _norm(place) in {
            _norm(p) for p in self.place
        }


@dataclass
class BackendResult:
    backend: str
    name: str = ""
    load_s: float = 0.0
    right: int = 0
    total: int = 0
    right_nothing: int = 0
    total_nothing: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return self.right / self.total if self.total else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "name": self.name,
            "accuracy": round(self.accuracy, 4),
            "right": self.right,
            "total": self.total,
            "nothing_fits_right": self.right_nothing,
            "nothing_fits_total": self.total_nothing,
            "errors": self.errors,
            "load_s": round(self.load_s, 3),
            "latency_ms_median": round(_percentile(self.latencies_ms, 50), 3),
            "latency_ms_p90": round(_percentile(self.latencies_ms, 90), 3),
        }


def load_cases(path: Path) -> list[Case]:
    """Read and check a cases file; CasesError names the first bad case and field."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CasesError(f"cases file not found: {path}") from None
    except IsADirectoryError:
        raise CasesError(f"{path} is a folder; --cases takes a JSON file") from None
    except OSError as exc:
        raise CasesError(f"{path}: cannot read the cases file ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise CasesError(f"{path}: not a JSON file (not UTF-8 text: {exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise CasesError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(data, list) or not data:
        raise CasesError(f"{path}: expected a non-empty JSON list of cases")
    cases = []
    for i, item in enumerate(data):
        where = f"{path}: case {i}"
        if not isinstance(item, dict):
            raise CasesError(f"{where}: expected an object with request, objects, pick, place")
        request = item.get("request")
        if not isinstance(request, str) or not request.strip():
            raise CasesError(f"{where}: 'request' must be a non-empty string")
        lists = {}
        for key in ("objects", "pick", "place"):
            value = item.get(key)
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise CasesError(f"{where}: {key!r} must be a list of strings")
            lists[key] = value
        if lists["pick"] and not lists["place"]:
            raise CasesError(f"{where}: 'place' is empty but 'pick' is not")
        cases.append(Case(request, lists["objects"], lists["pick"], lists["place"]))
    return cases


def run_backend(backend: str, reasoner: Any, cases: Sequence[Case], load_s: float) -> BackendResult:
    """Every case through one reasoner; a backend error counts as a wrong answer."""
    result = BackendResult(backend=backend, name=getattr(reasoner, "name", backend), load_s=load_s)
    for case in cases:
        t0 = time.perf_counter()
        try:
            spec = reasoner.reason(case.request, case.objects)
            pick, place, why = spec.pick, spec.place, spec.rationale
        except Exception as exc:  # a backend failure is a wrong answer, recorded, not fatal
            pick = place = None
            why = f"error: {exc}"
            result.errors += 1
        result.latencies_ms.append((time.perf_counter() - t0) * 1e3)
        right = case.judge(pick, place) and not why.startswith("error: ")
        result.total += 1
        result.right += right
        if not case.pick:
            result.total_nothing += 1
            result.right_nothing += right
        if not right:
            result.failures.append(
                {**asdict(case), "got_pick": pick, "got_place": place, "rationale": why}
            )
    return result


def default_backends(config: Any) -> list[str]:
    """Offline backends, plus openai when the config or the environment sets it up."""
    backends = list(OFFLINE_BACKENDS)
    r = config.reasoning
    if config.models.reasoner == "openai" or r.base_url or os.environ.get(r.api_key_env):
        backends.append("openai")
    return backends


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The benchmark's own arguments (the CLI's `bench reasoning` adds the config arguments)."""
    parser.add_argument(
        "--backend",
        dest="backends",
        action="append",
        choices=ALL_BACKENDS,
        metavar="NAME",
        help=f"backend to run, repeatable ({', '.join(ALL_BACKENDS)}); default: offline ones",
    )
    parser.add_argument(
        "--cases", type=Path, default=DEFAULT_CASES, help="cases JSON (default: held-out eval)"
    )
    parser.add_argument("--json", dest="json_path", type=Path, help="write results JSON here")
    parser.add_argument(
        "--failures", action="store_true", help="list each wrong answer with its rationale"
    )


def run(args: argparse.Namespace, config: Any, out: Any = None) -> int:
    """Run the benchmark as the arguments say; prints the table; returns the exit code."""
    from agent.backends import BackendError, build_reasoner

    out = out or sys.stdout
    try:
        cases = load_cases(args.cases)
    except CasesError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    explicit = bool(args.backends)
    names = list(dict.fromkeys(args.backends or default_backends(config)))
    print(f"cases: {args.cases} ({len(cases)})", file=out)
    results: list[BackendResult] = []
    for name in names:
        t0 = time.perf_counter()
        try:
            cfg = config.model_copy(
                update={"models": config.models.model_copy(update={"reasoner": name})}
            )
            reasoner = build_reasoner(cfg, {})
        except BackendError as exc:
            if explicit:
                print(f"error: {name}: {exc}", file=sys.stderr)
                return 2
            print(f"{name}: skipped ({exc})", file=out)
            continue
        load_s = time.perf_counter() - t0
        results.append(run_backend(name, reasoner, cases, load_s))
        close = getattr(reasoner, "close", None)
        if callable(close):
            close()
    if not results:
        print("error: no backend could run", file=sys.stderr)
        return 2
    _print_table(results, out)
    if getattr(args, "failures", False):
        for r in results:
            for f in r.failures:
                print(
                    f"  {r.backend} wrong: {f['request']!r} {f['objects']} -> "
                    f"{f['got_pick']}/{f['got_place']} (want {f['pick'] or 'nothing'}) "
                    f"| {f['rationale']}",
                    file=out,
                )
    primary = _primary(results, names if explicit else [config.models.reasoner])
    if args.json_path:
        payload = {
            "cases": str(args.cases),
            "n_cases": len(cases),
            "primary": primary.backend,
            "backends": [{**r.summary(), "failures": r.failures} for r in results],
        }
        args.json_path.parent.mkdir(parents=True, exist_ok=True)
        args.json_path.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"results: {args.json_path}", file=out)
    print(f"primary backend: {primary.backend}", file=out)
    print(f"accuracy {primary.accuracy:.2f} ({primary.right}/{primary.total})", file=out)
    return 0


def _primary(results: list[BackendResult], preferred: list[str]) -> BackendResult:
    by_name = {r.backend: r for r in results}
    return next((by_name[n] for n in preferred if n in by_name), results[0])


def _print_table(results: list[BackendResult], out: Any) -> None:
    header = (
        f"{'backend':<30} {'accuracy':>13} {'nothing fits':>12} {'errors':>6} "
        f"{'load s':>7} {'median ms':>9} {'p90 ms':>8}"
    )
    print(header, file=out)
    print("-" * len(header), file=out)
    for r in results:
        s = r.summary()
        print(
            f"{_label(r)[:30]:<30} {f'{r.accuracy:.2f} ({r.right}/{r.total})':>13} "
            f"{f'{r.right_nothing}/{r.total_nothing}':>12} {r.errors:>6} {r.load_s:>7.2f} "
            f"{s['latency_ms_median']:>9.2f} {s['latency_ms_p90']:>8.2f}",
            file=out,
        )


def _label(result: BackendResult) -> str:
    """The config name, with the model behind it when that says more ("offline (rules+...)")."""
    if result.name and result.name != result.backend:
        return f"{result.backend} ({result.name})"
    return result.backend


def _percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); 0 for no values."""
    if not values:
        return 0.0
    if q == 50:
        return statistics.median(values)
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _norm(name: str | None) -> str | None:
    return None if name is None else " ".join(name.casefold().split())


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m benchmarks.reasoning`: the benchmark with the shipped sim profile's config."""
    from agent.config import ConfigError, load_config

    parser = argparse.ArgumentParser(prog="python -m benchmarks.reasoning", description=__doc__)
    add_arguments(parser)
    parser.add_argument("--config", type=Path, help="a TOML config (for [reasoning] settings)")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config or "sim", args.overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return run(args, config)


if __name__ == "__main__":
    sys.exit(main())
