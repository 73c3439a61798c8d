"""The module latency benchmark: registry shape, measuring rules, and a smoke run through the CLI.

The smoke run (`--quick --no-heavy`) renders small sim frames and times every light module with
two or three calls, so the benchmark cannot rot without a test failing; the heavy models
(Grounding DINO, SAM, MobileSAM: seconds to tens of seconds per call on a CPU) are covered by
their own backend tests and by the full run whose results are committed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.cli import main
from benchmarks.modules.cli import select
from benchmarks.modules.core import (
    Bench,
    Entry,
    Probe,
    Settings,
    Unavailable,
    format_table,
    measure,
    run_entries,
)
from benchmarks.modules.registry import REGISTRY
from benchmarks.table4 import PAPER_MS

pytest.importorskip("mujoco")


def test_registry_keys_are_unique_and_every_family_has_a_light_entry() -> None:
    keys = [e.key for e in REGISTRY]
    assert len(keys) == len(set(keys))
    families = {e.family for e in REGISTRY}
    assert families == {"reasoner", "detector", "tracker", "segmenter", "policy"}
    light = {e.family for e in select(REGISTRY, [], heavy=False)}
    assert light == families
    # every paper module has a row to stand beside
    assert {e.paper for e in REGISTRY if e.paper} == set(PAPER_MS)


def test_select_filters_by_key_and_weight() -> None:
    assert [e.key for e in select(REGISTRY, ["tracker/k"], heavy=True)] == ["tracker/kcf"]
    assert all(not e.heavy for e in select(REGISTRY, ["segmenter"], heavy=False))


def test_measure_warms_up_then_stops_at_runs_or_budget() -> None:
    calls: list[int] = []
    samples = measure(lambda: calls.append(1), Settings(warmup=2, runs=5, min_runs=1))
    assert len(samples) == 5 and len(calls) == 7
    calls.clear()
    slow = Settings(warmup=3, runs=100, min_runs=2, budget_s=0.0)
    samples = measure(lambda: calls.append(1), slow)
    # a zero budget still gives min_runs samples; one warm-up suffices once a call uses its share
    assert len(samples) == 2 and len(calls) == 3


def test_rows_derived_unavailable_and_broken_modules(tmp_path: Path) -> None:
    ticks = iter(range(1000))

    def build(bench: Bench) -> list[Probe]:
        return [
            Probe("a", "fake", "x", call=lambda: next(ticks)),
            Probe("b", "fake", "x", call=lambda: next(ticks)),
            Probe("a minus b", "fake", "x", derived=(("a", 1.0), ("b", -1.0)), paper="TPM"),
        ]

    def broken(bench: Bench) -> list[Probe]:
        raise RuntimeError("boom")

    def later(bench: Bench) -> list[Probe]:
        raise Unavailable("not built yet")

    entries = [
        Entry("x/fake", "x", build),
        Entry("x/broken", "x", broken),
        Entry("x/later", "x", later, paper="TPM"),
    ]
    bench = Bench(config=None, scene=None, workdir=tmp_path, threads=1)  # type: ignore[arg-type]
    rows = run_entries(entries, bench, Settings(warmup=1, runs=4, min_runs=1))
    by_module = {r.module: r for r in rows}
    assert by_module["a"].status == "ok" and by_module["a"].count == 4
    derived = by_module["a minus b"]
    assert derived.status == "derived" and derived.paper_ms == PAPER_MS["TPM"]
    assert derived.median == pytest.approx(by_module["a"].median - by_module["b"].median, abs=0.02)
    assert by_module["broken"].status == "error" and "boom" in by_module["broken"].note
    assert by_module["later"].status == "n/a" and by_module["later"].paper_ms == 34.8
    table = format_table(rows)
    assert "TPM 34.8" in table and "not built yet" in table and "derived" in table


def test_quick_smoke_run_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "modules.json"
    argv = ["bench", "modules", "--quick", "--no-heavy", "--json", str(out)]
    assert main([*argv, "--set", "models.reasoner=rules"]) == 0
    printed = capsys.readouterr().out
    assert "random weights" in printed and "MixFormer-B 103.4" in printed
    result = json.loads(out.read_text())
    assert result["machine"]["cores"] >= 1 and result["machine"]["load_average"]
    rows = {r["key"]: r for r in result["rows"]}
    for key in ("reasoner/rules", "detector/ground_truth", "tracker/kcf", "segmenter/grabcut"):
        assert rows[key]["status"] == "ok" and rows[key]["median"] >= 0, rows[key]
    assert rows["tracker/csrt"]["count"] >= 2
    assert "policy/tpm_paper" not in rows  # heavy: left out by --no-heavy
    tpm = {r["module"]: r for r in result["rows"] if r["key"] == "policy/tpm_cpu"}
    assert tpm["TPM cpu (ONNX Runtime policy)"]["engine"].startswith("onnxruntime")
    assert all(r["status"] == "ok" for r in tpm.values()), tpm
    assert all(r["status"] != "error" for r in result["rows"]), result["rows"]
    onnx = rows["tracker/onnx"]
    if onnx["status"] == "ok":  # needs torch (to export the stand-in) and onnxruntime
        assert onnx["engine"].startswith("onnxruntime") and onnx["paper_ms"] == 17.0
    assert out.with_suffix(".md").read_text().startswith("Latency per call")
