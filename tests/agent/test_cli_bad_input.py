"""Bad input to `python -m agent`: one line on stderr, exit 2, nothing written or overwritten.

Each case runs the real CLI entry (`agent.cli.main`, in-process) and checks that the command ends
with exactly one `error: ...` line on stderr, nothing on stdout (no traceback, no progress bar),
exit code 2, that files it must not replace keep their bytes and mtime, and that nothing it must
not create exists afterwards. The overwrite cases use a real run folder and policy file, made by
`train` and `export` through the same entry.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("zarr")

from agent.cli import main  # noqa: E402
from tests.models.test_tpm_pipeline import _dataset  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Made:
    """What `train` and `export` wrote through the CLI: the overwrite cases aim at these."""

    data: Path
    run: Path
    onnx: Path


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Made:
    """One training step of the cpu preset on a synthetic 96 px dataset, then its export."""
    root = tmp_path_factory.mktemp("cli-made")
    data = _dataset(root / "demos.zarr", episodes=2, steps=6, size=96)
    run, onnx = root / "run", root / "policy.onnx"
    train = ["train", "--data", str(data), "--out", str(run), "--steps", "1"]
    assert main([*train, "--batch-size", "2", "--val-fraction", "0"]) == 0
    export = ["export", "--checkpoint", str(run / "best.pt"), "--out", str(onnx)]
    assert main([*export, "--data", str(data), "--samples", "2"]) == 0
    return Made(data, run, onnx)


@dataclass
class Case:
    argv: list[str]
    expect: str  #: in the error line
    untouched: list[Path] = field(default_factory=list)  #: keep their bytes and mtime
    absent: list[Path] = field(default_factory=list)  #: must not come to exist


class Evil:
    """Unpickling this creates a file: what a shared checkpoint could do with weights_only=False."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def _text(path: Path, text: str = "not a checkpoint\n") -> Path:
    path.write_text(text)
    return path


def _eval_folder(tmp: Path) -> tuple[list[str], list[Path]]:
    """`eval` arguments aimed at a folder holding an earlier report, and that report's files."""
    out = tmp / "eval"
    out.mkdir()
    report = [_text(out / "eval.json", '{"cells": [1]}\n'), _text(out / "eval.md", "Table I\n")]
    policy = _text(tmp / "policy.onnx", "an earlier export")
    return ["eval", "--eval-out", str(out), "--set", f'policy.onnx="{policy}"'], report


# Each builder: (tmp_path, made or None) -> Case. Those that take `made` need the real run.
def seed_negative(tmp: Path, _: None) -> Case:
    return Case(["config", "--seed", "-1"], "--seed: must be >= 0, got -1")


def config_not_utf8(tmp: Path, _: None) -> Case:
    config = tmp / "lab.toml"
    config.write_bytes(b"\xff\xfe[sim]\x00seed = 3\n")
    return Case(["config", "--config", str(config)], "lab.toml: not a TOML file (not UTF-8 text")


def token_file_binary(tmp: Path, _: None) -> Case:
    token = tmp / "token"
    token.write_bytes(b"\x80\x81\xfe\xff")
    return Case(["serve", "--token-file", str(token)], "is not a text file")


def port_out_of_range(tmp: Path, _: None) -> Case:
    return Case(["serve", "--port", "70000"], "--port: must be between 0 and 65535, got 70000")


def cases_folder(tmp: Path, _: None) -> Case:
    return Case(["bench", "reasoning", "--cases", str(tmp)], "is a folder; --cases takes a JSON")


def train_batch_size_0(tmp: Path, _: None) -> Case:
    out = tmp / "run"
    argv = ["train", "--batch-size", "0", "--data", str(tmp / "d.zarr"), "--out", str(out)]
    return Case(argv, "--batch-size: must be >= 1, got 0", absent=[out])


def train_epochs_0(tmp: Path, _: None) -> Case:
    out = tmp / "run"
    argv = ["train", "--epochs", "0", "--data", str(tmp / "d.zarr"), "--out", str(out)]
    return Case(argv, "--epochs: must be >= 1, got 0", absent=[out])


def train_init_not_a_checkpoint(tmp: Path, _: None) -> Case:
    init, out = _text(tmp / "notes.pt"), tmp / "run"
    argv = ["train", "--init", str(init), "--data", str(tmp / "d.zarr"), "--out", str(out)]
    return Case(argv, "notes.pt is not a TPM checkpoint (", absent=[out])


def train_init_that_runs_code(tmp: Path, _: None) -> Case:
    init, out, marker = tmp / "shared.pt", tmp / "run", tmp / "code-ran"
    torch.save({"config": Evil(marker), "model": {}, "normaliser": {}}, init)
    argv = ["train", "--init", str(init), "--data", str(tmp / "d.zarr"), "--out", str(out)]
    return Case(argv, "shared.pt is not a TPM checkpoint (weights-only", absent=[out, marker])


def train_into_a_run_folder(tmp: Path, made: Made) -> Case:
    run = made.run
    argv = ["train", "--data", str(made.data), "--out", str(run), "--steps", "1"]
    kept = [run / "metrics.jsonl", run / "last.pt", run / "best.pt"]
    return Case(argv, "already holds a training run (metrics.jsonl, last.pt, best.pt)", kept)


def export_not_a_checkpoint(tmp: Path, _: None) -> Case:
    checkpoint, out = _text(tmp / "best.pt"), tmp / "out.onnx"
    argv = ["export", "--checkpoint", str(checkpoint), "--out", str(out), "--data", str(tmp)]
    return Case(argv, "best.pt is not a TPM checkpoint (", absent=[out])


def export_over_a_policy(tmp: Path, made: Made) -> Case:
    checkpoint = made.run / "best.pt"
    argv = ["export", "--checkpoint", str(checkpoint), "--out", str(made.onnx)]
    argv += ["--data", str(made.data), "--samples", "2"]
    return Case(argv, "policy.onnx exists; pass --force to replace it", [made.onnx])


def collect_bad_catalog(tmp: Path, _: None) -> Case:
    catalog, out = _text(tmp / "objects.toml", "[[object]\nname = 'x'\n"), tmp / "demos.zarr"
    argv = ["collect", "--episodes", "1", "--out", str(out), "--objects", str(catalog)]
    return Case(argv, "objects.toml: cannot read object catalog", absent=[out])


def eval_tables_typo(tmp: Path, _: None) -> Case:
    argv, report = _eval_folder(tmp)
    return Case([*argv, "--tables", "I,III"], "--tables 'I,III': no table III", report)


def eval_cells_typo(tmp: Path, _: None) -> Case:
    argv, report = _eval_folder(tmp)
    expect = "--cells: no cell 'standard:seeen' in these tables; cells are SETTING:SPLIT (ours) in"
    return Case([*argv, "--cells", "standard:seeen"], expect, report)


def eval_variant_onnx(tmp: Path, _: None) -> Case:
    argv, report = _eval_folder(tmp)
    expect = "--variant-onnx 'boxes=x.onnx': use box=PATH"
    return Case([*argv, "--variant-onnx", "boxes=x.onnx"], expect, report)


CASES: list[Callable[[Path, Made | None], Case]] = [
    seed_negative,
    config_not_utf8,
    token_file_binary,
    port_out_of_range,
    cases_folder,
    train_batch_size_0,
    train_epochs_0,
    train_init_not_a_checkpoint,
    train_init_that_runs_code,
    train_into_a_run_folder,
    export_not_a_checkpoint,
    export_over_a_policy,
    collect_bad_catalog,
    eval_tables_typo,
    eval_cells_typo,
    eval_variant_onnx,
]
NEEDS_RUN = {train_into_a_run_folder, export_over_a_policy}


def _state(paths: list[Path]) -> dict[Path, tuple[bytes, int]]:
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in paths}


@pytest.mark.parametrize("build", CASES, ids=[c.__name__ for c in CASES])
def test_bad_input_is_one_line_on_stderr_exit_2_and_nothing_overwritten(
    build: Callable[[Path, Made | None], Case],
    tmp_path: Path,
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
) -> None:
    case = build(tmp_path, request.getfixturevalue("made") if build in NEEDS_RUN else None)
    before = _state(case.untouched)
    capsys.readouterr()  # what the fixtures printed
    assert main(case.argv) == 2
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err + out and "unexpected" not in err, err
    assert case.expect in lines[0]
    assert out == ""
    assert _state(case.untouched) == before
    assert not [p for p in case.absent if p.exists()]


def test_resume_and_force_are_how_to_continue_or_replace(made: Made, tmp_path: Path) -> None:
    """What the refusals point to works: `train --resume` keeps the metrics and continues,
    `export --force` replaces the file."""
    run = tmp_path / "run"
    shutil.copytree(made.run, run)
    metrics = (run / "metrics.jsonl").read_text()
    argv = ["train", "--data", str(made.data), "--out", str(run), "--steps", "2"]
    assert main([*argv, "--batch-size", "2", "--val-fraction", "0", "--resume"]) == 0
    assert (run / "metrics.jsonl").read_text().startswith(metrics)
    assert torch.load(run / "last.pt", weights_only=True)["step"] == 2
    onnx = tmp_path / "policy.onnx"
    onnx.write_text("an earlier export")
    argv = ["export", "--checkpoint", str(run / "last.pt"), "--out", str(onnx), "--force"]
    assert main([*argv, "--data", str(made.data), "--samples", "2"]) == 0
    assert onnx.read_bytes()[:2] != b"an"


def test_the_process_exits_2_with_one_line_and_no_usage_block(tmp_path: Path) -> None:
    """`python -m agent` itself: argparse's complaint is one line too, and the exit status 2."""
    proc = subprocess.run(
        [sys.executable, "-m", "agent", "train", "--epochs", "0"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        "error: --epochs: must be >= 1, got 0 (see python -m agent train --help)"
    ]
