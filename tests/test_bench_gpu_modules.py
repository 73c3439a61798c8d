"""The GPU module benchmark in its CPU smoke mode: children, rows, the table and the JSON.

The GPU rows themselves (CUDA graphs, torch.compile, Grounding DINO and SAM at full size) need a
CUDA machine; here the quick CPU mode runs the two cheap networks (TPM paper, the tracker's
stand-in ViT) in child processes, one thread each, so that the measuring, the child protocol and
the output files cannot rot unnoticed.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest

from benchmarks.gpu_modules import (
    FP16,
    FP32,
    REGISTRY,
    Context,
    Row,
    Runner,
    Settings,
    format_table,
    main,
    ort_row,
    select,
    spawn,
)
from benchmarks.standins import PAPER_MS

torch = pytest.importorskip("torch")


def test_registry_has_a_row_for_every_paper_module_but_mixformer_b() -> None:
    keys = [e.key for e in REGISTRY]
    assert len(keys) == len(set(keys))
    assert {e.paper for e in REGISTRY if e.paper} == set(PAPER_MS) - {"MixFormer-B"}
    assert [e.key for e in select(REGISTRY, ["sam"])] == [
        "segmenter/sam_vit_b",
        "segmenter/mobile_sam",
    ]
    # the whole run fits the device call: the first pass's budgets under the total
    assert sum(e.budget_s for e in REGISTRY) < 300


def test_runner_times_fp32_and_autocast(tmp_path: Path) -> None:
    runner = Runner(
        Context(torch=torch, device="cpu", workdir=tmp_path),
        Settings(warmup=1, runs=4, min_runs=1, budget_s=10.0),
        deadline=math.inf,
    )
    model = torch.nn.Linear(8, 8)
    x = torch.randn(1, 8)
    for variant in (FP32, FP16):
        timed, note = runner.prepare(lambda: model(x), variant)
        samples = runner.measure(timed)
        assert len(samples) == 4 and min(samples) >= 0 and note == ""
    timed, _ = runner.prepare(lambda: model(x), FP16)
    assert timed().dtype == torch.bfloat16  # on the CPU, half precision is bf16 autocast
    assert runner.label(FP16) == "bf16 autocast eager"


def test_table_marks_derived_missing_rows_and_the_speed_up() -> None:
    rows = [
        Row(
            "s/x",
            "segmenter",
            "x per frame",
            "fp16",
            status="derived",
            median=9.1,
            paper="SAM-T",
            paper_ms=10.1,
            speedup=1.11,
        ),
        Row("s/y", "segmenter", "y", "fp32 CUDA graph", status="error", note="capture failed"),
        ort_row(["CPUExecutionProvider"]),
    ]
    table = format_table(rows)
    assert "| derived | 9.10 | - |" in table and "SAM-T 10.1 | 1.11x" in table
    assert "| error |" in table and "capture failed" in table
    assert "onnxruntime-gpu wheel is 255.6 MB" in table and "64 MiB" in table


def test_a_child_over_its_budget_is_killed_and_reported(tmp_path: Path) -> None:
    entry = next(e for e in REGISTRY if e.key == "tracker/onnx")
    rows, _ = spawn(
        entry,
        [FP32],
        device="cpu",
        settings=Settings.quick(),
        timeout=0.01,
        workdir=tmp_path,
        log=None,
        grace_s=0.0,  # killed long before it has imported torch
    )
    assert [r.status for r in rows] == ["timeout"] and "time budget" in rows[0].note


def test_quick_cpu_run_writes_the_table_and_json(tmp_path: Path) -> None:
    out = io.StringIO()
    json_path, md_path = tmp_path / "modules.json", tmp_path / "modules.md"
    argv = ["--device", "cpu", "--quick", "--only", "policy", "--only", "tracker"]
    argv += ["--variants", "fp32,graph-fp32", "--scale", "4", "--json", str(json_path)]
    argv += ["--md", str(md_path), "--log", str(tmp_path / "children.log")]
    assert main(argv, out=out) == 0
    result = json.loads(json_path.read_text())
    assert result["device"]["threads"] == 1 and result["machine"]["cores"] >= 1
    assert result["partial"] is False
    rows = {(r["key"], r["variant"]): r for r in result["rows"]}
    assert set(rows) == {
        (key, variant)
        for key in ("policy/tpm_paper", "tracker/onnx")
        for variant in ("fp32 eager", "fp32 CUDA graph")
    }
    for key, paper in (("policy/tpm_paper", 34.8), ("tracker/onnx", 17.0)):
        row = rows[(key, "fp32 eager")]
        assert row["status"] == "ok" and row["count"] >= 2 and row["median"] > 0, row
        assert row["paper_ms"] == paper
        assert row["speedup"] == pytest.approx(paper / row["median"], rel=0.01)
        assert rows[(key, "fp32 CUDA graph")]["status"] == "skipped"
    markdown = md_path.read_text()
    assert markdown.startswith("Latency per call") and "speed-up vs paper" in markdown
    assert "TPM 34.8" in markdown and "1 torch thread(s)" in markdown
    assert "wrote" in out.getvalue()
