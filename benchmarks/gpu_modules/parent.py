"""The parent process's side: run each module in a time-boxed child, turn what the child left
behind (or did not) into rows, and assemble the result document.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks.gpu_modules.results import caption, ordered
from benchmarks.gpu_modules.variants import VARIANTS, Entry, Settings
from benchmarks.machine import machine_info
from benchmarks.table4 import PAPER_MS, WEIGHTS_NOTE, Row, entry_row

ROOT = Path(__file__).resolve().parents[2]

#: The onnxruntime-gpu wheel a GPU machine without a registry would need (measured with
#: `pip download onnxruntime-gpu` for cp312 manylinux_2_28 x86_64, November 2026), against what
#: one device call can carry: ONNX Runtime's CUDA / TensorRT rows cannot be measured there.
ORT_GPU_WHEEL = "onnxruntime-gpu 1.31.1 (cp312, manylinux_2_28_x86_64)"
ORT_GPU_WHEEL_MB = 255.6
CARRY_LIMIT_MIB = 64


def _finish(row: Row) -> Row:
    if row.paper_ms and row.median and row.status in ("ok", "derived"):
        row.speedup = float(f"{row.paper_ms / row.median:.3g}")
    return row


def _missing(entry: Entry, status: str, note: str, variant: str = "") -> Row:
    return _finish(entry_row(entry, status, note, variant))


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:240] if lines else "no output"


def spawn(
    entry: Entry,
    variants: Sequence[str],
    *,
    device: str,
    settings: Settings,
    timeout: float,
    workdir: Path,
    log: Any,
    grace_s: float = 5.0,
    tiny: bool = False,
) -> tuple[list[Row], dict[str, Any] | None]:
    """Run one child; its rows, plus rows for what it left unfinished.

    The child stops starting measurements at `timeout` (its deadline); it is killed `grace_s`
    later if it is still running (a compile or a call that does not return).
    """
    results = workdir / f"{entry.key.replace('/', '_')}-{'_'.join(variants)}.jsonl"
    child_log = results.with_suffix(".log")
    deadline = time.time() + timeout
    cmd = [sys.executable, "-m", "benchmarks.gpu_modules", "--child", entry.key]
    cmd += ["--variants", ",".join(variants), "--device", device, "--results", str(results)]
    cmd += ["--workdir", str(workdir), "--deadline", f"{deadline:.3f}"]
    cmd += ["--warmup", str(settings.warmup), "--runs", str(settings.runs)]
    cmd += ["--min-runs", str(settings.min_runs), "--budget", str(settings.budget_s)]
    cmd += ["--tiny"] if tiny else []
    env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    if device == "cpu":
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    timed_out = False
    with open(child_log, "wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            rc = proc.wait(timeout=timeout + grace_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            rc = proc.wait()
    output = child_log.read_text(errors="replace")
    if log is not None:
        log.write(f"===== {entry.key} {','.join(variants)} (rc {rc})\n{output}\n")
        log.flush()
    events = []
    if results.exists():
        for line in results.read_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                events.append(json.loads(line))
    device_event = next(
        ({k: v for k, v in e.items() if k != "event"} for e in events if e["event"] == "device"),
        None,
    )
    rows = [_finish(Row.from_dict(e)) for e in events if e["event"] == "row"]
    done = {(r.module, r.variant) for r in rows}
    for e in events:
        if e["event"] == "build_error":
            rows.append(_missing(entry, "error", f"building the model failed: {e['message']}"))
        if e["event"] == "start" and (e["module"], e["variant"]) not in done:
            row = _missing(entry, "timeout" if timed_out else "error", "", e["variant"])
            row.module = e["module"]
            row.note = (
                f"killed at the module's time budget ({timeout:.0f} s) while running"
                if timed_out
                else f"the process died (exit {rc}): {_last_line(output)}"
            )
            rows.append(row)
    if timed_out or rc != 0:  # what the child planned but never reached
        planned = next((e["rows"] for e in events if e["event"] == "plan"), [])
        done |= {(r.module, r.variant) for r in rows}
        why = "the module's time budget ran out" if timed_out else "the process died before"
        for module, variant in planned:
            if (module, variant) not in done:
                row = _missing(entry, "timeout" if timed_out else "error", f"not reached: {why}")
                row.module, row.variant = module, variant
                rows.append(row)
    if not rows:
        why = (
            f"killed at the module's time budget ({timeout:.0f} s) before a row was done"
            if timed_out
            else f"the process failed (exit {rc}): {_last_line(output)}"
        )
        rows.append(_missing(entry, "timeout" if timed_out else "error", why))
    return rows, device_event


def ort_row(providers: Sequence[str]) -> Row:
    if "CUDAExecutionProvider" in providers:
        note = "the CUDA provider is listed but this benchmark does not time ONNX Runtime"
    else:
        note = (
            f"ONNX Runtime CUDA/TensorRT: not measured, the onnxruntime-gpu wheel is "
            f"{ORT_GPU_WHEEL_MB:g} MB ({ORT_GPU_WHEEL}), over the {CARRY_LIMIT_MIB} MiB a call "
            f"can carry; this machine's onnxruntime lists {', '.join(providers) or 'nothing'}"
        )
    return Row(
        key="onnxruntime/cuda",
        family="tracker, policy",
        module="ONNX Runtime CUDA / TensorRT",
        status="n/a",
        note=note,
    )


def run_benchmark(
    entries: Sequence[Entry],
    *,
    device: str,
    settings: Settings,
    total_s: float,
    variants: Sequence[str] | None = None,
    compile_pass: bool = True,
    scale: float = 1.0,
    out: Any = None,
    log: Any = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    tiny: bool = False,
) -> dict[str, Any]:
    """Run every entry's child (then the compile pass); returns the result document.

    `variants` None: every entry's defaults (the base variants, plus the SDPA ones where they
    apply). `progress` gets the document so far (marked partial) after every child, so that a
    run stopped from outside still leaves its finished rows behind.
    """
    start = time.perf_counter()
    info = machine_info()
    jobs = [(e, e.variants(variants), e.budget_s * scale) for e in entries]
    jobs = [job for job in jobs if job[1]]
    if compile_pass and device.startswith("cuda"):
        for e in entries:
            if e.compile_variants(variants):
                jobs.append((e, e.compile_variants(variants), e.compile_budget_s * scale))
    rows: list[Row] = []
    gpu: dict[str, Any] | None = None

    def document(partial: bool) -> dict[str, Any]:
        final = list(rows)
        if device.startswith("cuda"):
            final.append(ort_row(info.get("onnxruntime_providers") or []))
        return {
            "benchmark": "gpu_modules",
            "partial": partial,
            "machine": info,
            "device": gpu,
            "settings": asdict(settings),
            "total_budget_s": total_s,
            "weights": WEIGHTS_NOTE,
            "paper_ms": PAPER_MS,
            "duration_s": round(time.perf_counter() - start, 1),
            "caption": caption(info, gpu, device),
            "rows": [asdict(r) for r in ordered(final, entries)],
        }

    with tempfile.TemporaryDirectory(prefix="bench-gpu-modules-") as folder:
        for entry, job_variants, budget in jobs:
            left = total_s - (time.perf_counter() - start)
            if left < min(15.0, budget):
                why = f"not run: the run's total budget ({total_s:.0f} s) was used up"
                names = ", ".join(VARIANTS[v] for v in job_variants)
                rows.append(_missing(entry, "skipped", why, names))
                continue
            t0 = time.perf_counter()
            new, event = spawn(
                entry,
                job_variants,
                device=device,
                settings=settings,
                timeout=min(budget, left),
                workdir=Path(folder),
                log=log,
                tiny=tiny,
            )
            rows.extend(new)
            gpu = gpu or event
            if out is not None:
                took = f"{time.perf_counter() - t0:.1f} s"
                print(f"  {entry.key} [{','.join(job_variants)}]: {took}", file=out, flush=True)
            if progress is not None:
                progress(document(partial=True))
    return document(partial=False)
