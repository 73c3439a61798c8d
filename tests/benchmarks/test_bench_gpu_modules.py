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

from benchmarks.gpu_modules.child import Runner
from benchmarks.gpu_modules.cli import main
from benchmarks.gpu_modules.networks import REGISTRY
from benchmarks.gpu_modules.parent import ort_row, spawn
from benchmarks.gpu_modules.results import format_table, merge_results
from benchmarks.gpu_modules.variants import (
    COMPILE,
    FP16,
    FP32,
    SDPA_BF16,
    SDPA_COMPILE,
    SDPA_VARIANTS,
    Context,
    Settings,
)
from benchmarks.table4 import PAPER_MS, Row
from benchmarks.table4 import select_keys as select

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
    # SDPA attention is SAM ViT-B's (MobileSAM's TinyViT has another attention)
    assert [e.key for e in REGISTRY if e.sdpa] == ["segmenter/sam_vit_b"]


def test_sdpa_variants_apply_to_sam_vit_b_only() -> None:
    sam = next(e for e in REGISTRY if e.key == "segmenter/sam_vit_b")
    tpm = next(e for e in REGISTRY if e.key == "policy/tpm_paper")
    assert sam.variants(None)[-len(SDPA_VARIANTS) :] == list(SDPA_VARIANTS)
    assert tpm.variants(None) == [v for v in sam.variants(None) if v not in SDPA_VARIANTS]
    assert tpm.variants(["fp32", "sdpa-fp32"]) == ["fp32"]
    assert sam.compile_variants(None) == [SDPA_COMPILE] and tpm.compile_variants(None) == [COMPILE]
    assert sam.compile_variants([SDPA_COMPILE]) == []


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


def test_quick_sam_run_has_sdpa_rows_and_merges_into_a_full_result(tmp_path: Path) -> None:
    """SAM ViT-B alone (tiny on the CPU), its SDPA rows, then --merge into an earlier result."""
    new_path, all_path = tmp_path / "sam.json", tmp_path / "all.json"
    old = {
        "machine": {"cpu": "an earlier CPU", "cores": 1},
        "device": {"torch": torch.__version__, "device": "cpu", "threads": 1},
        "rows": [
            {"key": "segmenter/sam_vit_b", "family": "segmenter", "module": "old"},
            {"key": "policy/tpm_paper", "family": "policy", "module": "TPM paper"},
            {"key": "segmenter/mobile_sam", "family": "segmenter", "module": "MobileSAM encoder"},
            {"key": "onnxruntime/cuda", "family": "tracker, policy", "module": "ORT"},
        ],
    }
    all_path.write_text(json.dumps(old))
    out = io.StringIO()
    argv = ["--device", "cpu", "--quick", "--only", "segmenter/sam_vit_b", "--scale", "4"]
    argv += ["--variants", f"fp32,sdpa-fp32,sdpa-graph-fp16,{SDPA_BF16}", "--json", str(new_path)]
    assert main([*argv, "--merge", str(all_path)], out=out) == 0
    new = json.loads(new_path.read_text())
    rows = {(r["module"], r["variant"]): r for r in new["rows"]}
    sdpa = "fp32 eager, SDPA attention"
    assert set(rows) == {
        *(("SAM ViT-B " + m, "fp32 eager") for m in ("encoder", "decoder, 1 box")),
        *(("SAM ViT-B " + m, v) for m in ("decoder, 2 boxes", "per frame (2 boxes)") for v in
          ("fp32 eager", sdpa, "bf16 CUDA graph, SDPA attention")),
        ("SAM ViT-B encoder", sdpa),
        ("SAM ViT-B encoder", "bf16 CUDA graph, SDPA attention"),
    }  # fmt: skip
    assert rows[("SAM ViT-B encoder", sdpa)]["status"] == "ok"
    assert "tiny smoke-test SAM" in rows[("SAM ViT-B encoder", sdpa)]["note"]
    frame = rows[("SAM ViT-B per frame (2 boxes)", sdpa)]
    assert frame["status"] == "derived" and frame["paper"] is None  # tiny: no paper comparison
    # the merge: SAM's rows replaced, the others kept, registry order, the MD rewritten
    merged = json.loads(all_path.read_text())
    assert [r["module"] for r in merged["rows"]][:1] == ["TPM paper"]
    assert [r["key"] for r in merged["rows"]][-2:] == ["segmenter/mobile_sam", "onnxruntime/cuda"]
    assert len(merged["rows"]) == 3 + len(new["rows"]) and "old" not in str(merged["rows"])
    assert merged["merged"][0]["keys"] == ["segmenter/sam_vit_b"]
    markdown = (tmp_path / "all.md").read_text()
    assert "merged in with --merge" in markdown and sdpa in markdown
    assert "merged segmenter/sam_vit_b into" in out.getvalue()
    # merging again from the file gives the same rows; another device is refused
    assert main(["--merge", str(all_path), "--from", str(new_path)], out=io.StringIO()) == 0
    assert json.loads(all_path.read_text())["rows"] == merged["rows"]
    with pytest.raises(ValueError, match="different devices"):
        merge_results(old, {**new, "device": {"device": "cuda", "name": "NVIDIA H200"}})
