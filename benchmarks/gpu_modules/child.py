"""The child process's side: build one module and time its targets in each variant, every row
sent to the parent as a JSON line as soon as it is done (see the package docstring).
"""

from __future__ import annotations

import contextlib
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks.gpu_modules.variants import (
    COMPILED,
    CUDA_ONLY,
    GRAPH16,
    GRAPH32,
    GRAPHS,
    HALF,
    SDPA,
    SDPA_BF16,
    VARIANTS,
    Context,
    Entry,
    Settings,
    Target,
    one_line,
)
from benchmarks.machine import nvidia_smi
from benchmarks.table4 import Row, module_row


class Runner:
    """Prepares a target's call in a variant and times it (see the module docstring)."""

    def __init__(self, ctx: Context, settings: Settings, deadline: float) -> None:
        self.ctx, self.settings, self.deadline = ctx, settings, deadline
        torch = ctx.torch
        self.cuda = ctx.device.startswith("cuda")
        self.half = torch.float16 if self.cuda else torch.bfloat16
        self.sync = torch.cuda.synchronize if self.cuda else (lambda: None)

    def label(self, variant: str) -> str:
        name = VARIANTS[variant]
        return name if self.cuda else name.replace("fp16", "bf16")

    def eager(self, call: Callable[[], object], variant: str) -> Callable[[], object]:
        torch, device_type = self.ctx.torch, "cuda" if self.cuda else "cpu"
        dtype = self.half if variant in HALF else torch.bfloat16 if variant == SDPA_BF16 else None

        def run() -> object:
            if dtype is None:
                return call()
            with torch.autocast(device_type, dtype=dtype, cache_enabled=False):
                return call()

        return run

    def prepare(self, call: Callable[[], object], variant: str) -> tuple[Callable[[], object], str]:
        """(the call to time, a note on its preparation)."""
        torch = self.ctx.torch
        run = self.eager(call, variant)
        if variant not in GRAPHS + COMPILED:
            return self._inference(run), ""
        if variant in COMPILED:
            compiled = torch.compile(run, mode="reduce-overhead")
            timed = self._inference(compiled)
            t0 = time.perf_counter()
            timed()  # compiles
            self.sync()
            return timed, f"compile + first call {time.perf_counter() - t0:.1f} s"
        return self._graph(self._inference(run)), ""

    def _inference(self, run: Callable[[], object]) -> Callable[[], object]:
        torch = self.ctx.torch

        def call() -> object:
            with torch.inference_mode():
                return run()

        return call

    def _graph(self, run: Callable[[], object]) -> Callable[[], object]:
        """Capture one call in a CUDA graph (after warm-up on a side stream); replay it."""
        torch = self.ctx.torch
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):
                run()
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                run()
        except Exception:
            # a failed capture_end leaves the capture stream current: give the default one back
            torch.cuda.set_stream(torch.cuda.default_stream())
            raise
        self.sync()
        return graph.replay

    def recover(self) -> None:
        """After a failed variant: wait for the device, drop cached blocks (best effort)."""
        if self.cuda:
            with contextlib.suppress(Exception):
                self.ctx.torch.cuda.synchronize()
                self.ctx.torch.cuda.empty_cache()

    def measure(self, timed: Callable[[], object]) -> list[float]:
        s = self.settings
        for _ in range(s.warmup):
            timed()
        self.sync()
        samples: list[float] = []
        start = time.perf_counter()
        while len(samples) < s.runs:
            t0 = time.perf_counter()
            timed()
            self.sync()
            samples.append((time.perf_counter() - t0) * 1e3)
            if len(samples) >= s.min_runs and (
                time.perf_counter() - start >= s.budget_s or time.time() > self.deadline - 2.0
            ):
                break
        return samples


def device_info(torch: Any, device: str) -> dict[str, Any]:
    info: dict[str, Any] = {"torch": torch.__version__, "device": device}
    if not device.startswith("cuda"):
        info["threads"] = torch.get_num_threads()
        return info
    props = torch.cuda.get_device_properties(0)
    info.update(
        name=torch.cuda.get_device_name(0),
        capability=f"{props.major}.{props.minor}",
        memory_gib=round(props.total_memory / 2**30, 1),
        cuda=torch.version.cuda,
        cudnn=torch.backends.cudnn.version(),
        driver=nvidia_smi("driver_version"),
    )
    with contextlib.suppress(Exception):  # the flags' names move between torch versions
        info["tf32"] = {
            "matmul": bool(torch.backends.cuda.matmul.allow_tf32),
            "cudnn": bool(torch.backends.cudnn.allow_tf32),
        }
    return info


def run_child(
    entry: Entry,
    variants: Sequence[str],
    *,
    device: str,
    settings: Settings,
    deadline: float,
    workdir: Path,
    emit: Callable[[dict[str, Any]], None],
    tiny: bool = False,
) -> None:
    """Build `entry` and measure its targets in each variant; every result goes to `emit`.

    A target takes part in the SDPA variants only with an `sdpa_call`; on the CPU the bf16 SDPA
    variant is left out (the fp16 ones run bf16 there already).
    """
    import warnings

    warnings.filterwarnings("ignore")  # timm / groundingdino / autocast deprecation noise
    import torch

    if device == "cpu":
        torch.set_num_threads(1)
    torch.backends.cudnn.benchmark = True
    ctx = Context(torch=torch, device=device, workdir=workdir, tiny=tiny)
    emit({"event": "device", **device_info(torch, device)})
    engine = f"torch {torch.__version__} {device}"
    try:
        targets, derived = entry.build(ctx)
    except Exception as exc:
        traceback.print_exc()
        emit({"event": "build_error", "message": one_line(exc)})
        return
    runner = Runner(ctx, settings, deadline)
    variants = [v for v in variants if runner.cuda or v != SDPA_BF16]

    def call_in(target: Target, variant: str) -> Callable[[], object] | None:
        return target.sdpa_call if variant in SDPA else target.call

    plan = [[t.name, runner.label(v)] for v in variants for t in targets if call_in(t, v)]
    emit({"event": "plan", "rows": plan})

    def base_row(name: str, variant: str, input_: str, paper: str | None, note: str) -> Row:
        label = runner.label(variant)
        return module_row(entry, name, paper, variant=label, engine=engine, input=input_, note=note)

    failed_capture: dict[str, str] = {}  # target -> why its fp32 capture failed
    for variant in variants:
        medians: dict[str, float] = {}
        for target in targets:
            call = call_in(target, variant)
            if call is None:
                continue
            note = target.note
            if variant in SDPA:
                same = call is target.call
                note += "; unchanged (SDPA is the encoder's)" if same else target.sdpa_note
            row = base_row(target.name, variant, target.input, target.paper, note)
            left = deadline - time.time()
            if variant in CUDA_ONLY and not runner.cuda:
                row.status, row.note = "skipped", "CUDA only"
            elif variant == GRAPH16 and target.name in failed_capture:
                row.status = "skipped"
                row.note = f"the fp32 capture failed ({failed_capture[target.name]})"
            elif left < 3.0:
                row.status, row.note = "skipped", "the module's time budget was used up"
            else:
                emit({"event": "start", "module": target.name, "variant": row.variant})
                try:
                    timed, prep = runner.prepare(call, variant)
                    row.set_stats(runner.measure(timed), 3)
                    if prep:
                        row.note = f"{row.note}; {prep}" if row.note else prep
                    medians[target.name] = row.median  # type: ignore[assignment]
                except Exception as exc:
                    traceback.print_exc()
                    row.status, row.note = "error", one_line(exc)
                    if variant == GRAPH32:
                        failed_capture[target.name] = row.note
                    runner.recover()
            emit({"event": "row", **asdict(row)})
        planned = {t.name for t in targets if call_in(t, variant)}
        for d in derived:
            if not all(p in planned for p in d.parts):
                continue
            row = base_row(d.name, variant, d.input, d.paper, d.note)
            if all(p in medians for p in d.parts):
                row.status, row.median = "derived", round(sum(medians[p] for p in d.parts), 3)
            else:
                row.status, row.note = "skipped", "a part was not measured"
            emit({"event": "row", **asdict(row)})
