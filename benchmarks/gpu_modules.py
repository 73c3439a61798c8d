"""Table IV's per-module latencies on a GPU, the networks alone, beside the paper's figures.

The companion of `benchmarks.modules` (the CPU table, measured through the runtime's backends):
here each module's network is timed on its own, with random weights, batch 1, inputs already on
the device, in PyTorch fp32 and fp16 (autocast) eager, replayed as a CUDA graph, and (for the
small networks) compiled with torch.compile. The stand-ins are the CPU table's
(`benchmarks.standins`): Grounding DINO Swin-B / Swin-T with a BERT-base-sized random text encoder
at an 800x800 input, SAM ViT-B and MobileSAM (encoder at 1024x1024, prompt encoder + mask decoder
with one and two boxes), the ONNX tracker's MixFormerV2-S-sized ViT (in PyTorch: ONNX Runtime on
the GPU machine is the CPU-only build) and the TPM `paper` preset with two 224x224 views.

SAM ViT-B also runs with its image encoder's attention through scaled_dot_product_attention
(`models.segmentation.sam_attention`, the runtime's `sam.fast_attention`): fp32 / fp16 / bf16
eager, fp16 CUDA graph (the package's own attention cannot be captured: it copies a CPU index
tensor each call) and fp16 torch.compile; the decoder rows of those variants are the unchanged
decoder in the same precision and mode, so that the per-frame sum is one way of running SAM.

Measurement: per (network, variant) warm-up calls, then timed calls until `runs` or the variant's
time budget, never fewer than `min_runs`; each sample is the wall time of one call followed by
`torch.cuda.synchronize()`. Median, p90, p99, min, max.

Isolation and time: every module runs in a child process of its own with a hard time budget (the
child is killed when it runs over), so a hung compile or a crashed CUDA context costs one module's
rows, not the table; a variant that fails becomes an error row with one line saying why. The
torch.compile variants run last, in a second pass, with whatever is left of the run's total
budget (`--total`), so that every module's eager and graph rows come first.

    python -m benchmarks.gpu_modules --json OUT.json --md OUT.md        # on a CUDA machine
    python -m benchmarks.gpu_modules --device cpu --quick --only policy  # smoke run, 1 thread
    python -m benchmarks.gpu_modules --only segmenter/sam_vit_b --json SAM.json --merge ALL.json

`--merge ALL.json` puts the run's rows into an earlier result (rows of the same modules replaced,
ALL.json and ALL.md rewritten); with `--from SAM.json` it merges an existing result, no run.
`--quick` on the CPU builds SAM ViT-B at a smoke-test size (`tiny_sam`, same classes).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks.machine import describe, machine_info, ms_cell, nvidia_smi
from benchmarks.standins import (
    PAPER_MS,
    TASK_PHRASES,
    WEIGHTS_NOTE,
    grounding_dino_model,
    mixformer_v2_s,
    standin_bert,
)

ROOT = Path(__file__).resolve().parents[1]

#: The onnxruntime-gpu wheel a GPU machine without a registry would need (measured with
#: `pip download onnxruntime-gpu` for cp312 manylinux_2_28 x86_64, November 2026), against what
#: one device call can carry: ONNX Runtime's CUDA / TensorRT rows cannot be measured there.
ORT_GPU_WHEEL = "onnxruntime-gpu 1.31.1 (cp312, manylinux_2_28_x86_64)"
ORT_GPU_WHEEL_MB = 255.6
CARRY_LIMIT_MIB = 64

#: The runtime's defaults for the ONNX tracker's crops (config section `onnx_tracker`).
TRACKER_TEMPLATE, TRACKER_SEARCH = 112, 224
#: Grounding DINO's model input for the CPU table's 224x224 frame (short side 800).
DINO_INPUT = 800
#: The camera frame SAM's masks are post-processed to (the CPU table's frame side).
FRAME = 224

FP32, FP16, GRAPH32, GRAPH16, COMPILE = "fp32", "fp16", "graph-fp32", "graph-fp16", "compile"
#: the same with SAM's image-encoder attention through scaled_dot_product_attention
SDPA16, SDPA_GRAPH16, SDPA32, SDPA_BF16 = "sdpa-fp16", "sdpa-graph-fp16", "sdpa-fp32", "sdpa-bf16"
SDPA_COMPILE = "sdpa-compile"
_SDPA = ", SDPA attention"
VARIANTS: dict[str, str] = {
    FP32: "fp32 eager",
    FP16: "fp16 autocast eager",
    GRAPH32: "fp32 CUDA graph",
    GRAPH16: "fp16 CUDA graph",
    COMPILE: "fp16 torch.compile (reduce-overhead)",
    SDPA16: "fp16 autocast eager" + _SDPA,
    SDPA_GRAPH16: "fp16 CUDA graph" + _SDPA,
    SDPA32: "fp32 eager" + _SDPA,
    SDPA_BF16: "bf16 autocast eager" + _SDPA,
    SDPA_COMPILE: "fp16 torch.compile (reduce-overhead)" + _SDPA,
}
BASE_VARIANTS = (FP32, FP16, GRAPH32, GRAPH16)
#: the first pass's extra variants for entries with `sdpa` (the compile one runs in the second)
SDPA_VARIANTS = (SDPA16, SDPA_GRAPH16, SDPA32, SDPA_BF16)
SDPA = (*SDPA_VARIANTS, SDPA_COMPILE)
CUDA_ONLY = (GRAPH32, GRAPH16, COMPILE, SDPA_GRAPH16, SDPA_COMPILE)
GRAPHS = (GRAPH32, GRAPH16, SDPA_GRAPH16)
COMPILED = (COMPILE, SDPA_COMPILE)
#: autocast to the half type (float16 on CUDA; bfloat16 on the CPU, which has no fast fp16)
HALF = (FP16, GRAPH16, COMPILE, SDPA16, SDPA_GRAPH16, SDPA_COMPILE)


@dataclass(frozen=True, slots=True)
class Settings:
    """Per variant: warm-up calls, most timed runs, least runs, seconds of timed runs."""

    warmup: int = 5
    runs: int = 200
    min_runs: int = 10
    budget_s: float = 2.0

    @classmethod
    def quick(cls) -> Settings:
        return cls(warmup=1, runs=3, min_runs=2, budget_s=0.3)


@dataclass
class Row:
    key: str
    family: str
    module: str
    variant: str = ""
    engine: str = ""
    input: str = ""
    status: str = "ok"  # ok | derived | skipped | n/a | error | timeout
    count: int = 0
    median: float | None = None
    p90: float | None = None
    p99: float | None = None
    min: float | None = None
    max: float | None = None
    paper: str | None = None
    paper_ms: float | None = None
    speedup: float | None = None
    note: str = ""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Row:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True, slots=True)
class Target:
    """One timed network call: `call` runs it once on inputs already on the device."""

    name: str
    input: str
    call: Callable[[], object]
    paper: str | None = None
    note: str = ""
    #: the call in the SDPA variants (None: the target has no such rows), a note for those rows
    sdpa_call: Callable[[], object] | None = None
    sdpa_note: str = ""


@dataclass(frozen=True, slots=True)
class Derived:
    """A row summed from other targets' medians in the same variant (e.g. SAM per frame)."""

    name: str
    input: str
    parts: tuple[str, ...]
    paper: str | None = None
    note: str = ""


@dataclass
class Context:
    """What builders get: torch, the device, and a folder shared by the run's children."""

    torch: Any
    device: str
    workdir: Path
    tiny: bool = False  # SAM ViT-B at a smoke-test size (--quick on the CPU)

    def tensor(self, *shape: int, uniform: bool = False) -> Any:
        make = self.torch.rand if uniform else self.torch.randn
        return make(*shape).to(self.device)


@dataclass(frozen=True, slots=True)
class Entry:
    """A module of the table; `build` returns its targets and derived rows, on the device."""

    key: str
    family: str
    build: Callable[[Context], tuple[list[Target], list[Derived]]]
    budget_s: float
    compile: bool = False
    compile_budget_s: float = 0.0
    paper: str | None = None
    sdpa: bool = False  # also the SDPA variants (SAM ViT-B's encoder attention)

    def variants(self, chosen: Sequence[str] | None) -> list[str]:
        """The first pass's variants of this entry: `chosen` (None: the defaults) that apply."""
        if chosen is None:
            chosen = BASE_VARIANTS + (SDPA_VARIANTS if self.sdpa else ())
        return [v for v in chosen if self.sdpa or v not in SDPA]

    def compile_variants(self, chosen: Sequence[str] | None) -> list[str]:
        """The compile pass's variants of this entry (those not already in the first pass)."""
        wanted = ([COMPILE] if self.compile else []) + ([SDPA_COMPILE] if self.sdpa else [])
        return [v for v in wanted if v not in (chosen or ())]


# ---------------------------------------------------------------- builders


def _params(model: Any) -> str:
    return f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M params"


def tpm(ctx: Context) -> tuple[list[Target], list[Derived]]:
    from models.tpm.config import preset
    from models.tpm.network import TPMNet

    config = preset("paper")
    ctx.torch.manual_seed(0)
    net = TPMNet(config).eval().to(ctx.device)
    views, size = len(config.views), config.image_size
    images = ctx.tensor(1, views, 3, size, size)
    masks = ctx.tensor(1, views, 1, size, size, uniform=True)
    proprio = ctx.tensor(1, 4)
    note = f"{_params(net)}; the network (inputs already normalised)"
    target = Target(
        "TPM paper",
        f"{views} views {size}x{size}",
        lambda: net(images, masks, proprio),
        paper="TPM",
        note=note,
    )
    return [target], []


def tracker(ctx: Context) -> tuple[list[Target], list[Derived]]:
    model = mixformer_v2_s(TRACKER_TEMPLATE, TRACKER_SEARCH).to(ctx.device)
    template = ctx.tensor(1, 3, TRACKER_TEMPLATE, TRACKER_TEMPLATE)
    search = ctx.tensor(1, 3, TRACKER_SEARCH, TRACKER_SEARCH)
    note = (
        f"the ONNX tracker's stand-in ViT, {_params(model)}, in PyTorch (ONNX Runtime there is "
        "CPU-only); per object and view"
    )
    target = Target(
        "ONNX tracker network (MixFormerV2-S-sized)",
        f"template {TRACKER_TEMPLATE}, online {TRACKER_TEMPLATE}, search {TRACKER_SEARCH}",
        lambda: model(template, template, search),
        paper="MixFormerV2-S",
        note=note,
    )
    return [target], []


def tiny_sam() -> Any:
    """segment-anything's SAM classes at a smoke-test size (ViT depth 2, width 64, 128x128 input,
    window 4 with the second block global, relative positions on): the code path of ViT-B in a
    fraction of a second on one CPU thread."""
    import torch
    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        Sam,
        TwoWayTransformer,
    )

    side, patch, width = 128, 16, 32
    encoder = ImageEncoderViT(
        img_size=side,
        patch_size=patch,
        embed_dim=64,
        depth=2,
        num_heads=2,
        out_chans=width,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        use_rel_pos=True,
        window_size=4,
        global_attn_indexes=(1,),
    )
    prompts = PromptEncoder(
        embed_dim=width,
        image_embedding_size=(side // patch, side // patch),
        input_image_size=(side, side),
        mask_in_chans=8,
    )
    transformer = TwoWayTransformer(depth=2, embedding_dim=width, mlp_dim=64, num_heads=2)
    decoder = MaskDecoder(
        transformer_dim=width, transformer=transformer, iou_head_depth=3, iou_head_hidden_dim=64
    )
    return Sam(encoder, prompts, decoder).eval()


def sam(ctx: Context, variant: str, label: str, paper: str) -> tuple[list[Target], list[Derived]]:
    """Encoder; prompt encoder + mask decoder (+ mask post-processing) with 1 and 2 boxes.

    For ViT variants also the encoder with SDPA attention (a copy of it, rebound by
    `use_sdpa_attention`), and the 2-box decoder once more for the SDPA variants' per-frame sum.
    """
    import copy

    from models.segmentation.sam import build_sam
    from models.segmentation.sam_attention import use_sdpa_attention

    torch = ctx.torch
    torch.manual_seed(0)
    tiny = ctx.tiny and variant != "vit_t"
    model = (tiny_sam() if tiny else build_sam(variant, None)).to(ctx.device)
    paper_name = None if tiny else paper  # a smoke-test model is no match for the paper's
    fast_encoder = copy.deepcopy(model.image_encoder)
    fast = use_sdpa_attention(fast_encoder) > 0
    side = int(model.image_encoder.img_size)
    image = ctx.tensor(1, 3, side, side)
    with torch.inference_mode():
        embedding = model.image_encoder(image)
        # the fast path's output against the package's, on this device, fp32 (a check, not a test)
        diff = (fast_encoder(image) - embedding).abs().max().item() if fast else math.nan
    boxes = torch.tensor([[120.0, 140.0, 300.0, 330.0], [520.0, 480.0, 760.0, 700.0]])
    boxes = (boxes * (side / 1024)).to(ctx.device)

    def decode(prompts: Any) -> Any:
        sparse, dense = model.prompt_encoder(points=None, boxes=prompts, masks=None)
        low_res, _ = model.mask_decoder(
            image_embeddings=embedding,
            image_pe=model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=False,
        )
        masks = model.postprocess_masks(low_res, (side, side), (FRAME, FRAME))
        return masks > model.mask_threshold

    params = _params(model) + (" (tiny smoke-test SAM, not ViT-B)" if tiny else "")
    decoder_note = f"prompt encoder + mask decoder + masks to {FRAME}x{FRAME}"

    def decode_two() -> Any:
        return decode(boxes)

    targets = [
        Target(
            f"{label} encoder",
            f"{side}x{side}",
            lambda: model.image_encoder(image),
            note=params,
            sdpa_call=(lambda: fast_encoder(image)) if fast else None,
            sdpa_note=f"; attention via SDPA (fp32 vs the package's: max abs diff {diff:.1e})",
        ),
        Target(
            f"{label} decoder, 1 box",
            "embedding + 1 box",
            lambda: decode(boxes[:1]),
            note=decoder_note,
        ),
        Target(
            f"{label} decoder, 2 boxes",
            "embedding + 2 boxes",
            decode_two,
            note=decoder_note,
            sdpa_call=decode_two if fast else None,
        ),
    ]
    derived = [
        Derived(
            f"{label} per frame (2 boxes)",
            "encoder + decoder 2 boxes",
            (f"{label} encoder", f"{label} decoder, 2 boxes"),
            paper=paper_name,
            note="per view",
        )
    ]
    return targets, derived


def _shared_bert(ctx: Context) -> Path:
    """The stand-in BERT folder, made once per run (written aside, then renamed: a child killed
    while writing it leaves no half folder for the next one)."""
    folder = ctx.workdir / "bert"
    if not folder.is_dir():
        partial_folder = ctx.workdir / f"bert-{os.getpid()}"
        standin_bert(partial_folder, TASK_PHRASES)
        partial_folder.rename(folder)
    return folder


def grounding_dino(
    ctx: Context, variant: str, label: str, paper: str | None
) -> tuple[list[Target], list[Derived]]:
    from models.detection.grounding_dino import build_caption

    model = grounding_dino_model(variant, _shared_bert(ctx)).eval().to(ctx.device)
    caption, _ = build_caption(TASK_PHRASES)
    image = ctx.tensor(1, 3, DINO_INPUT, DINO_INPUT)
    note = (
        f"{_params(model)} with a BERT-base-sized text encoder; the forward, which tokenises "
        "the caption on the CPU each call (no resize, no box matching); groundingdino-py's "
        "deformable attention is plain PyTorch (no custom CUDA op)"
    )
    target = Target(
        f"Grounding DINO {label}",
        f"{DINO_INPUT}x{DINO_INPUT}, caption {caption!r}",
        lambda: model(image, captions=[caption]),
        paper=paper,
        note=note,
    )
    return [target], []


#: The table, in the order the children run (the paper's own network first: it matters most).
#: Budgets are caps in seconds, imports and model building included (the first child also
#: pays the cold torch import and CUDA start); what a child leaves unused stays in `--total`.
REGISTRY: tuple[Entry, ...] = (
    Entry("policy/tpm_paper", "policy", tpm, 45.0, True, 80.0, paper="TPM"),
    Entry("tracker/onnx", "tracker", tracker, 35.0, True, 50.0, paper="MixFormerV2-S"),
    Entry(
        "segmenter/sam_vit_b",
        "segmenter",
        partial(sam, variant="vit_b", label="SAM ViT-B", paper="SAM-B"),
        70.0,
        compile_budget_s=100.0,
        paper="SAM-B",
        sdpa=True,
    ),
    Entry(
        "segmenter/mobile_sam",
        "segmenter",
        partial(sam, variant="vit_t", label="MobileSAM", paper="SAM-T"),
        35.0,
        paper="SAM-T",
    ),
    Entry(
        "detector/grounding_dino_swinb",
        "detector",
        partial(grounding_dino, variant="swinb_cogcoor", label="Swin-B", paper="GroundingDINO-B"),
        50.0,
        paper="GroundingDINO-B",
    ),
    Entry(
        "detector/grounding_dino_swint",
        "detector",
        partial(grounding_dino, variant="swint_ogc", label="Swin-T", paper=None),
        40.0,
    ),
)


# ---------------------------------------------------------------- measuring (in the child)


def _one_line(exc: BaseException, limit: int = 240) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _stats(samples: Sequence[float]) -> dict[str, Any]:
    import numpy as np

    values = np.asarray(samples, dtype=np.float64)
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {
        "count": int(values.size),
        "median": round(float(p50), 3),
        "p90": round(float(p90), 3),
        "p99": round(float(p99), 3),
        "min": round(float(values.min()), 3),
        "max": round(float(values.max()), 3),
    }


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
        emit({"event": "build_error", "message": _one_line(exc)})
        return
    runner = Runner(ctx, settings, deadline)
    variants = [v for v in variants if runner.cuda or v != SDPA_BF16]

    def call_in(target: Target, variant: str) -> Callable[[], object] | None:
        return target.sdpa_call if variant in SDPA else target.call

    plan = [[t.name, runner.label(v)] for v in variants for t in targets if call_in(t, v)]
    emit({"event": "plan", "rows": plan})

    def base_row(name: str, variant: str, input_: str, paper: str | None, note: str) -> Row:
        return Row(
            key=entry.key,
            family=entry.family,
            module=name,
            variant=runner.label(variant),
            engine=engine,
            input=input_,
            paper=paper,
            paper_ms=PAPER_MS.get(paper) if paper else None,
            note=note,
        )

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
                    row = _with_stats(row, runner.measure(timed), prep)
                    medians[target.name] = row.median  # type: ignore[assignment]
                except Exception as exc:
                    traceback.print_exc()
                    row.status, row.note = "error", _one_line(exc)
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


def _with_stats(row: Row, samples: Sequence[float], prep: str) -> Row:
    for name, value in _stats(samples).items():
        setattr(row, name, value)
    if prep:
        row.note = f"{row.note}; {prep}" if row.note else prep
    return row


# ---------------------------------------------------------------- the parent: children, table


def _finish(row: Row) -> Row:
    if row.paper_ms and row.median and row.status in ("ok", "derived"):
        row.speedup = float(f"{row.paper_ms / row.median:.3g}")
    return row


def _missing(entry: Entry, status: str, note: str, variant: str = "") -> Row:
    return _finish(
        Row(
            key=entry.key,
            family=entry.family,
            module=entry.key.split("/", 1)[1],
            variant=variant,
            status=status,
            paper=entry.paper,
            paper_ms=PAPER_MS.get(entry.paper) if entry.paper else None,
            note=note,
        )
    )


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
            "rows": [asdict(r) for r in _ordered(final, entries)],
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


def _ordered(rows: list[Row], entries: Sequence[Entry]) -> list[Row]:
    """Rows grouped by module in registry order (the compile pass's rows join their module)."""
    order = {e.key: i for i, e in enumerate(entries)}
    return sorted(rows, key=lambda r: order.get(r.key, len(order)))  # stable within a module


def caption(info: dict[str, Any], gpu: dict[str, Any] | None, device: str) -> str:
    if device.startswith("cuda"):
        gpu = gpu or {}
        tf32 = gpu.get("tf32")
        state = {True: "on", False: "off"}
        tf32_text = (
            f"TF32 matmul {state[tf32['matmul']]}, cuDNN {state[tf32['cudnn']]}"
            if tf32
            else "TF32 as torch defaults"
        )
        where = (
            f"{gpu.get('name', info.get('gpu') or 'a GPU')} (driver {gpu.get('driver')}, CUDA "
            f"{gpu.get('cuda')}, cuDNN {gpu.get('cudnn')}, torch {gpu.get('torch')}); host "
            f"{describe(info)}"
        )
        how = (
            f"fp16 = torch.autocast(float16), fp32 with {tf32_text}; CUDA graph = one call "
            "captured with torch.cuda.CUDAGraph and replayed; compile = the fp16 call through "
            "torch.compile(mode='reduce-overhead'); SDPA attention = SAM's image-encoder "
            "attention through torch.nn.functional.scaled_dot_product_attention with the "
            "relative-position terms as an additive mask (models.segmentation.sam_attention, "
            "the runtime's sam.fast_attention); cudnn.benchmark on"
        )
    else:
        threads = (gpu or {}).get("threads", 1)
        where = f"{describe(info)}, {threads} torch thread(s), torch {(gpu or {}).get('torch')}"
        how = "bf16 = torch.autocast(bfloat16) on the CPU; CUDA graph and compile rows need CUDA"
    return (
        f"Latency per call in ms, batch 1, on {where}. Each sample is one call followed by a "
        f"device synchronise, inputs already on the device, after warm-up; the networks alone "
        f"(the CPU table, benchmarks/results/modules-cpu.md, times the runtime's calls). {how}. "
        f"{WEIGHTS_NOTE}. Paper: Table IV, on an NVIDIA GPU; speed-up = paper / our median."
    )


def format_table(rows: Sequence[Row]) -> str:
    lines = [
        "| family | module | variant | engine | input | runs | median | p90 | p99 | min | max "
        "| paper (GPU) | speed-up vs paper | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        paper = f"{r.paper} {r.paper_ms:g}" if r.paper and r.paper_ms is not None else ""
        speedup = f"{r.speedup:g}x" if r.speedup is not None else ""
        if r.status in ("ok", "derived"):
            runs = "derived" if r.status == "derived" else str(r.count)
            stats = [ms_cell(v) for v in (r.median, r.p90, r.p99, r.min, r.max)]
            if r.status == "derived":
                stats = [ms_cell(r.median), "-", "-", "-", "-"]
            cells = [r.family, r.module, r.variant, r.engine, r.input, runs, *stats]
        else:
            cells = [r.family, r.module, r.variant, "", "", "", r.status, "", "", "", ""]
        cells += [paper, speedup, r.note]
        lines.append("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------- command line


def select(entries: Sequence[Entry], only: Sequence[str]) -> list[Entry]:
    return [e for e in entries if not only or any(o in e.key for o in only)]


def _variants(text: str) -> list[str]:
    chosen = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in chosen if v not in VARIANTS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown variant(s) {unknown}; allowed: {list(VARIANTS)}")
    return chosen


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu_modules",
        description=__doc__,
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
        return _merge_into(args.merge_path, json.loads(args.merge_from.read_text()), out)
    entries = select(REGISTRY, args.only)
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
        return _merge_into(args.merge_path, result, out)
    return 0


def merge_results(base: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """`base` with its rows of every module that `new` has rows of replaced by `new`'s.

    Rows stay grouped by module in registry order; the caption is `base`'s machine and device
    with today's wording, plus a sentence per merge saying which modules come from which run
    (also kept in the document's `merged` list). Raises ValueError (one line) when the two
    were measured on different devices.
    """
    where = [(doc.get("device") or {}).get(k) for doc in (base, new) for k in ("device", "name")]
    if where[:2] != where[2:]:
        raise ValueError(f"the results are from different devices: {where[:2]} and {where[2:]}")
    known = {e.key for e in REGISTRY}
    keys = sorted({r["key"] for r in new["rows"] if r["key"] in known})
    rows = [Row.from_dict(r) for r in base["rows"] if r["key"] not in keys]
    rows += [Row.from_dict(r) for r in new["rows"] if r["key"] in keys]
    merged = [
        *base.get("merged", []),
        {
            "keys": keys,
            "partial": new.get("partial", False),
            "duration_s": new.get("duration_s"),
            "device": new.get("device"),
            "machine": new.get("machine"),
            "settings": new.get("settings"),
        },
    ]
    device = (base.get("device") or {}).get("device", "cuda")
    text = caption(base["machine"], base.get("device"), device)
    for m in merged:
        torch_version = (m.get("device") or {}).get("torch")
        partial_note = ", stopped early" if m.get("partial") else ""
        text += (
            f" Rows of {', '.join(m['keys'])}: a later run (torch {torch_version}, "
            f"{m.get('duration_s')} s{partial_note}), merged in with --merge."
        )
    return {
        **base,
        "caption": text,
        "merged": merged,
        "rows": [asdict(r) for r in _ordered(rows, REGISTRY)],
    }


def _merge_into(path: Path, new: dict[str, Any], out: Any) -> int:
    try:
        merged = merge_results(json.loads(path.read_text()), new)
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: cannot merge into {path}: {_one_line(exc)}", file=sys.stderr)
        return 2
    write_results(path, path.with_suffix(".md"), merged)
    print(f"merged {', '.join(merged['merged'][-1]['keys'])} into {path}", file=out)
    return 0


def write_results(json_path: Path | None, md_path: Path | None, result: dict[str, Any]) -> str:
    """Write the JSON and the captioned table where asked; returns the table."""
    table = format_table([Row.from_dict(r) for r in result["rows"]])
    note = " (partial: the run is still going or was stopped)" if result.get("partial") else ""
    for path, text in (
        (json_path, json.dumps(result, indent=2) + "\n"),
        (md_path, f"{result['caption']}{note}\n\n{table}\n"),
    ):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    return table


if __name__ == "__main__":
    raise SystemExit(main())
