"""What every benchmark shares as a program: its standalone entry point and its result files."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.machine import device_slug

if TYPE_CHECKING:
    from agent.config import Config

RESULTS = Path(__file__).resolve().parent / "results"


def configured(config: Config, settings: Mapping[str, Any]) -> Config:
    """`config` with dotted `section.key` settings replaced, validated again: the variant of the
    user's config a benchmark row or mode runs (values are Python objects, None included, which
    `--set K=V` cannot spell)."""
    from agent.config import Config

    data = config.model_dump()
    for key, value in settings.items():
        section, name = key.split(".")
        data[section][name] = value
    return Config.model_validate(data)


def save_results(
    bench: str, result: dict[str, Any], table: str, json_path: Path | None, quick: bool, out: Any
) -> Path | None:
    """Write the JSON and the captioned markdown table beside it, say where, return the JSON's
    path (None when nothing was written).

    Default path: `results/<bench>-<device>.json`; a `--quick` smoke run writes nothing unless
    asked to, so CI never overwrites the committed results.
    """
    if json_path is None and not quick:
        json_path = RESULTS / f"{bench}-{device_slug(result['machine'])}.json"
    if json_path is None:
        return None
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    markdown = json_path.with_suffix(".md")
    markdown.write_text(f"{result['caption']}\n\n{table}\n")
    print(f"wrote {json_path} and {markdown}", file=out)
    return json_path


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    """`--threads`: the model threads a benchmark pins (default: the config's)."""
    parser.add_argument(
        "--threads",
        type=int,
        help="threads for torch, ONNX Runtime, OpenCV (runtime.torch_threads)",
    )


def add_json_argument(parser: argparse.ArgumentParser, bench: str, markdown: str) -> None:
    """`--json PATH` for a benchmark whose results `save_results` writes (`markdown`: what the
    markdown file beside the JSON holds, e.g. "table")."""
    parser.add_argument(
        "--json",
        dest="json_path",
        type=Path,
        help=f"write results JSON here, and the markdown {markdown} beside it (default: "
        f"benchmarks/results/{bench}-<device>.json; none with --quick)",
    )


def standalone_main(
    prog: str,
    description: str | None,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace, Any], int],
    argv: Sequence[str] | None,
) -> int:
    """`python -m benchmarks.X`: the same arguments as `python -m agent bench X`, sim profile."""
    from agent.config import load_config

    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_arguments(parser)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V")
    args = parser.parse_args(argv)
    return run(args, load_config("sim", args.overrides))
