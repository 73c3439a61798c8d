"""Per-module inference latency, after the paper's Table IV, with the paper's numbers beside ours.

Every row is measured on the backend objects the runtime itself builds (`agent.backends`:
`build_perception`, `build_tracker`, `build_reasoner`), called the way the perception pipeline
calls them, on frames rendered from the sim world at the configured camera size: a detector call
on one view, one tracker update of one object, one segmenter call on one view with the task's two
boxes, one reasoner request. Models with weights are built with random weights (no checkpoint can
be downloaded here), saved to a temporary file and loaded through the backend's own loading code:
latency depends on the architecture and the input size, not on the weights.

Measurement: warm-up calls first (lazy initialisation, allocator, caches), then timed calls until
`runs` or the row's time budget is reached, but never fewer than `min_runs`; median, p90, p99,
min and max of the wall time per call. Slow models (Grounding DINO and SAM ViT-B take seconds to
tens of seconds per call on a CPU) therefore get few runs, and the `runs` column says how many.
Threads are pinned (torch, ONNX Runtime and OpenCV) to `runtime.torch_threads` or `--threads`.

Rows come from `REGISTRY`: one `Entry` per module, whose builder returns the `Probe`s (timed
calls) of its rows. A module that cannot be measured here says why (`Unavailable`): a missing
extra, an unconfigured server, or the TPM policy that does not exist yet.

    python -m agent bench modules [--quick] [--no-heavy] [--only KEY] [--json PATH]
    python -m benchmarks.modules  (the same arguments, with the sim profile)
"""

from __future__ import annotations

import argparse
import gc
import itertools
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from agent.config import Config
from agent.telemetry import summarize
from benchmarks._cli import save_results, standalone_main
from benchmarks.machine import describe, machine_info, ms_cell, pin_threads, preload_torch
from benchmarks.standins import (
    PAPER_MS,
    WEIGHTS_NOTE,
    grounding_dino_model,
    mixformer_v2_s,
    standin_bert,
)
from models.types import Box


class Unavailable(Exception):
    """This module cannot be measured here; the message (one line) says why."""


@dataclass(frozen=True, slots=True)
class Probe:
    """One table row: `call` runs the module once, or `derived` combines other rows' medians.

    `derived` is ((row name, weight), ...): e.g. SAM's per-extra-box cost is the median of the
    two-box decoder minus the one-box decoder. Derived rows have a median only.
    """

    name: str
    engine: str
    input: str
    call: Callable[[], object] | None = None
    derived: tuple[tuple[str, float], ...] = ()
    paper: str | None = None
    note: str = ""


@dataclass(frozen=True, slots=True)
class Entry:
    """A module in the table: `build(bench)` returns its probes or raises Unavailable.

    `heavy` modules (seconds or more per call on a CPU) are left out by `--no-heavy`, which the
    CI smoke test uses; each family keeps at least one light entry so the smoke run covers it.
    """

    key: str
    family: str
    build: Callable[[Bench], list[Probe]]
    heavy: bool = False
    paper: str | None = None


@dataclass
class Row:
    key: str
    family: str
    module: str
    engine: str = ""
    input: str = ""
    status: str = "ok"  # ok | derived | n/a | error
    count: int = 0
    median: float | None = None
    p90: float | None = None
    p99: float | None = None
    min: float | None = None
    max: float | None = None
    paper: str | None = None
    paper_ms: float | None = None
    note: str = ""


@dataclass(frozen=True, slots=True)
class Settings:
    """How long to measure: see the module docstring."""

    warmup: int = 3
    runs: int = 200
    min_runs: int = 3
    budget_s: float = 20.0
    size: int = 224
    frames: int = 30

    @classmethod
    def quick(cls, size: int = 96) -> Settings:
        return cls(warmup=1, runs=3, min_runs=2, budget_s=0.5, size=size, frames=6)


@dataclass
class Scene:
    """Rendered sim frames of one view (the arm moving), the task's phrases and first boxes."""

    frames: list[Any]
    phrases: list[str]
    boxes: list[Box]
    size: int

    @property
    def image(self) -> np.ndarray:
        return self.frames[0].rgb

    def sweep(self) -> Iterator[Any]:
        """Frames forwards then backwards, forever: continuous motion for trackers."""
        order = self.frames + self.frames[-2:0:-1]
        return itertools.cycle(order)


@dataclass
class Bench:
    """What builders share: config, scene, threads, a folder for stand-in weights, a cache."""

    config: Config
    scene: Scene
    workdir: Path
    threads: int
    cache: dict[str, Any] = field(default_factory=dict)

    def configured(self, settings: dict[str, Any]) -> Config:
        """The config with dotted `section.key` settings replaced (validated again)."""
        data = self.config.model_dump()
        for key, value in settings.items():
            section, name = key.split(".")
            data[section][name] = value
        return Config.model_validate(data)

    def cached(self, key: str, make: Callable[[], Any]) -> Any:
        if key not in self.cache:
            self.cache[key] = make()
        return self.cache[key]


# ---------------------------------------------------------------- measuring


def measure(call: Callable[[], object], settings: Settings) -> list[float]:
    """Milliseconds per call: warm-up, then runs until `runs` or the budget (>= `min_runs`).

    Warm-up stops after the first call when one call alone uses a budget share: a model that
    takes 30 s is warm after one call, and three more would only burn the budget.
    """
    share = settings.budget_s / max(settings.min_runs, 1)
    for _ in range(max(settings.warmup, 1)):
        t0 = time.perf_counter()
        call()
        if time.perf_counter() - t0 > share:
            break
    samples: list[float] = []
    start = time.perf_counter()
    while len(samples) < settings.runs:
        t0 = time.perf_counter()
        call()
        samples.append((time.perf_counter() - t0) * 1e3)
        if len(samples) >= settings.min_runs and time.perf_counter() - start >= settings.budget_s:
            break
    return samples


def _stats(samples: Sequence[float]) -> dict[str, Any]:
    summary = summarize(samples)
    return {
        "count": summary["count"],
        "median": summary.get("median"),
        "p90": summary.get("p90"),
        "p99": summary.get("p99"),
        "min": round(min(samples), 2) if samples else None,
        "max": summary.get("max"),
    }


# ---------------------------------------------------------------- stand-in weights


def _torch() -> Any:
    from models._loading import require

    return require("torch")


def _engine(session: Any) -> str:
    """'onnxruntime <provider>' with the provider the session really runs on."""
    return f"onnxruntime {session.get_providers()[0].removesuffix('ExecutionProvider')}"


def _standin_grounding_dino(bench: Bench, variant: str) -> tuple[Path, Path]:
    """(checkpoint, BERT folder) of random weights for a shipped Grounding DINO variant."""
    bert = bench.cached("bert", lambda: standin_bert(bench.workdir / "bert", bench.scene.phrases))
    model = grounding_dino_model(variant, bert)
    checkpoint = bench.workdir / f"groundingdino_{variant}.pth"
    _torch().save({"model": model.state_dict()}, checkpoint)
    del model
    gc.collect()
    return checkpoint, bert


def _standin_sam(bench: Bench, variant: str) -> Path:
    from models.segmentation.sam import build_sam

    torch = _torch()
    torch.manual_seed(0)
    path = bench.workdir / f"sam_{variant}.pth"
    torch.save(build_sam(variant, None).state_dict(), path)
    return path


def _standin_tracker(bench: Bench) -> tuple[Path, int]:
    """Export the MixFormerV2-S-sized model as the test suite does (legacy exporter, opset 17)."""

    torch = _torch()
    section = bench.config.onnx_tracker
    model = mixformer_v2_s(section.template_size, section.search_size)
    template = torch.zeros(1, 3, section.template_size, section.template_size)
    search = torch.zeros(1, 3, section.search_size, section.search_size)
    path = bench.workdir / "mixformerv2_small_standin.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (template, template, search),
            str(path),
            input_names=["template", "online_template", "search"],
            output_names=["pred_boxes", "pred_scores"],
            opset_version=17,
            dynamo=False,
        )
    return path, sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------- builders


def _perception(bench: Bench, settings: dict[str, Any]) -> tuple[Any, Any, Any]:
    """Detector, tracker factory and segmenter through `agent.backends.build_perception`.

    The roles not under test get the cheap weightless backends, so that benchmarking a
    segmenter never loads a configured Grounding DINO.
    """
    from agent.backends import build_perception

    base = {"models.detector": "ground_truth", "models.tracker": "kcf"}
    base["models.segmenter"] = "ground_truth"
    return build_perception(bench.configured({**base, **settings}))


def _frame_input(bench: Bench, extra: str = "") -> str:
    size = bench.scene.size
    return f"{size}x{size} frame" + (f", {extra}" if extra else "")


def ground_truth_detector(bench: Bench) -> list[Probe]:
    detector, _, _ = _perception(bench, {})
    frame = bench.scene.frames[0]
    return [
        Probe(
            "ground truth (sim)",
            "numpy",
            _frame_input(bench, f"{len(bench.scene.phrases)} phrases"),
            call=lambda: detector.detect(frame.rgb, bench.scene.phrases, truth=frame),
        )
    ]


def grounding_dino(bench: Bench, variant: str, paper: str | None) -> list[Probe]:
    checkpoint, bert = _standin_grounding_dino(bench, variant)
    g = bench.config.grounding_dino
    detector, _, _ = _perception(
        bench,
        {
            "models.detector": "grounding_dino",
            "grounding_dino.variant": variant,
            "grounding_dino.checkpoint": str(checkpoint),
            "grounding_dino.text_encoder": str(bert),
            "grounding_dino.config_path": None,
        },
    )
    checkpoint.unlink()  # loaded; up to ~1 GB that the next variant's file should not add to
    image = bench.scene.image
    from models.detection.grounding_dino import resized_shape

    h, w = resized_shape(*image.shape[:2], g.image_size, g.max_size)
    label = {"swint_ogc": "Swin-T", "swinb_cogcoor": "Swin-B"}[variant]
    return [
        Probe(
            f"Grounding DINO {label}",
            f"torch {detector.device}",
            _frame_input(bench, f"model input {w}x{h}, BERT-base text"),
            call=lambda: detector.detect(image, bench.scene.phrases),
            paper=paper,
            note="first frame and re-detections only; per view",
        )
    ]


def _tracker_probe(bench: Bench, factory: Any, name: str, engine: str, **extra: Any) -> Probe:
    """One tracker update per call on the next frame, following the pick object in one view."""
    frames = bench.scene.sweep()
    tracker = factory()
    tracker.init(next(frames).rgb, bench.scene.boxes[0])
    box = bench.scene.boxes[0]
    return Probe(
        name,
        engine,
        _frame_input(bench, f"one object ({box.width:.0f}x{box.height:.0f} px)"),
        call=lambda: tracker.update(next(frames).rgb),
        note="per object and view (the runtime tracks 2 objects x 2 views per step)",
        **extra,
    )


def opencv_tracker(bench: Bench, kind: str) -> list[Probe]:
    import cv2

    from agent.backends import build_tracker

    factory = build_tracker(bench.configured({"models.tracker": kind}))
    return [_tracker_probe(bench, factory, kind.upper(), f"opencv {cv2.__version__}")]


def onnx_tracker(bench: Bench) -> list[Probe]:
    from agent.backends import build_tracker
    from models._loading import require

    require("onnxruntime", "gpu")
    path, params = _standin_tracker(bench)
    factory = build_tracker(
        bench.configured({"models.tracker": "onnx", "onnx_tracker.model": str(path)})
    )
    sig = factory.signature
    probe = _tracker_probe(
        bench,
        factory,
        "ONNX tracker (MixFormerV2-S-sized)",
        _engine(factory.session),
        paper="MixFormerV2-S",
    )
    note = (
        f"stand-in ViT {params / 1e6:.1f}M params; template {sig.template_size}, "
        f"search {sig.search_size}; {probe.note}"
    )
    return [replace(probe, note=note)]


def simple_segmenter(bench: Bench, name: str, label: str) -> list[Probe]:
    _, _, segmenter = _perception(bench, {"models.segmenter": name})
    frame = bench.scene.frames[0]
    boxes = bench.scene.boxes
    return [
        Probe(
            label,
            "opencv" if name == "grabcut" else "numpy",
            _frame_input(bench, f"{len(boxes)} boxes"),
            call=lambda: segmenter.segment(frame.rgb, boxes, bench.scene.phrases, truth=frame),
            note="per view",
        )
    ]


def sam(bench: Bench, name: str, variant: str, label: str, paper: str) -> list[Probe]:
    """Encoder, decoder with one and two boxes, and what each extra box and a frame cost.

    The decoder rows call the segmenter's public `segment` with the frame's embedding computed
    beforehand (a shallow copy whose `embed` returns it): exactly what the runtime pays per frame
    after the encoder, through the backend's own prompt transform and decoder.
    """
    import copy

    section = "sam" if name == "sam" else "mobile_sam"
    checkpoint = _standin_sam(bench, variant)
    settings: dict[str, Any] = {"models.segmenter": name, f"{section}.checkpoint": str(checkpoint)}
    if name == "sam":
        settings["sam.variant"] = variant
    _, _, segmenter = _perception(bench, settings)
    image = bench.scene.image
    boxes = bench.scene.boxes
    embedding = segmenter.embed(image)
    decoder = copy.copy(segmenter)
    decoder.embed = lambda _image: embedding  # type: ignore[method-assign]
    engine = f"torch {segmenter.device}"
    size = segmenter.image_size
    return [
        Probe(
            f"{label} encoder",
            engine,
            _frame_input(bench, f"model input {size}x{size}"),
            call=lambda: segmenter.embed(image),
        ),
        Probe(
            f"{label} decoder, 1 box",
            engine,
            "embedding + 1 box",
            call=lambda: decoder.segment(image, boxes[:1]),
        ),
        Probe(
            f"{label} decoder, 2 boxes",
            engine,
            "embedding + 2 boxes",
            call=lambda: decoder.segment(image, boxes[:2]),
        ),
        Probe(
            f"{label} per extra box",
            engine,
            "decoder 2 boxes - 1 box",
            derived=((f"{label} decoder, 2 boxes", 1.0), (f"{label} decoder, 1 box", -1.0)),
        ),
        Probe(
            f"{label} per frame (2 boxes)",
            engine,
            "encoder + decoder 2 boxes",
            derived=((f"{label} encoder", 1.0), (f"{label} decoder, 2 boxes", 1.0)),
            paper=paper,
            note="per view",
        ),
    ]


def reasoner(bench: Bench, name: str) -> list[Probe]:
    """Per request over the held-out reasoning cases (table hits and language-model calls mixed)."""
    from agent.backends import BackendError, build_reasoner
    from benchmarks.reasoning import DEFAULT_CASES, default_backends, load_cases

    if name not in default_backends(bench.config):
        key = bench.config.reasoning.api_key_env
        raise Unavailable(f"{name} is not configured (set reasoning.base_url or ${key})")
    try:
        backend = build_reasoner(bench.configured({"models.reasoner": name}), {})
    except BackendError as exc:
        raise Unavailable(str(exc)) from None
    cases = itertools.cycle(load_cases(DEFAULT_CASES))

    def call() -> object:
        case = next(cases)
        return backend.reason(case.request, case.objects)

    engine = {"rules": "python", "offline": "llama.cpp (1 thread)", "openai": "HTTP"}[name]
    return [
        Probe(
            name,
            engine,
            f"{DEFAULT_CASES.name} requests",
            call=call,
            note="once per task, before the loop starts",
        )
    ]


def tpm(bench: Bench, name: str) -> list[Probe]:
    """TPM, batch 1, both views, random weights: the network in PyTorch eager, and the runtime's
    ONNX Runtime policy backend (input resizing included) on a file written by export's path."""
    import dataclasses

    from models._loading import require
    from models.tpm.config import preset
    from models.tpm.export import PolicyGraph, write_policy_onnx
    from models.tpm.inputs import prepare_views
    from models.tpm.network import TPMNet
    from models.tpm.onnx_policy import OnnxTPMPolicy
    from models.tpm.train import Normaliser
    from models.types import PICK_MASK_VALUE, PLACE_MASK_VALUE, Observation

    torch = _torch()
    require("onnxruntime", "gpu")
    config = preset(name)
    identity = Normaliser([0.0] * 3, [1.0] * 3, [0.0] * 4, [1.0] * 4)
    graph = PolicyGraph(TPMNet(config), identity).eval()
    frame = bench.scene.frames[0]
    mask = np.zeros(frame.rgb.shape[:2], dtype=np.float32)
    for value, box in zip((PICK_MASK_VALUE, PLACE_MASK_VALUE), bench.scene.boxes, strict=False):
        mask[int(box.y0) : int(box.y1), int(box.x0) : int(box.x1)] = value
    observation = Observation(
        images=dict.fromkeys(config.views, frame.rgb),
        masks=dict.fromkeys(config.views, mask),
        proprio=np.array([0.45, 0.0, 0.3, 0.0], dtype=np.float32),
    )
    rgb, masks = prepare_views(
        observation.images, observation.masks, config.views, config.image_size
    )
    inputs = (torch.from_numpy(rgb[None]), torch.from_numpy(masks[None]),
              torch.from_numpy(observation.proprio[None]))  # fmt: skip
    path = bench.workdir / f"tpm_{name}_random.onnx"
    write_policy_onnx(graph, inputs, path, {"config": dataclasses.asdict(config)})
    policy = OnnxTPMPolicy(path, threads=bench.threads)
    size = f"{len(config.views)} views {config.image_size}x{config.image_size}"

    def eager() -> object:
        with torch.inference_mode():
            return graph(*inputs)

    params = sum(p.numel() for p in graph.parameters()) / 1e6
    note = f"{params:.1f}M params"
    return [
        Probe(f"TPM {name} (PyTorch eager)", "torch", size, call=eager, note=note),
        Probe(
            f"TPM {name} (ONNX Runtime policy)",
            _engine(policy.session),
            size,
            call=lambda: policy.act(observation),
            paper="TPM" if name == "paper" else None,
            note=f"{note}; the act() the runtime calls, resizing included",
        ),
    ]


def not_yet(reason: str) -> Callable[[Bench], list[Probe]]:
    """A builder for a module that does not exist yet: its row says so instead of a number."""

    def build(bench: Bench) -> list[Probe]:
        raise Unavailable(reason)

    return build


#: The table, in the paper's order of the pipeline. One line per module.
REGISTRY: tuple[Entry, ...] = (
    Entry("reasoner/rules", "reasoner", partial(reasoner, name="rules")),
    Entry("reasoner/offline", "reasoner", partial(reasoner, name="offline")),
    Entry("reasoner/openai", "reasoner", partial(reasoner, name="openai")),
    Entry("detector/ground_truth", "detector", ground_truth_detector),
    Entry(
        "detector/grounding_dino_swint",
        "detector",
        partial(grounding_dino, variant="swint_ogc", paper=None),
        heavy=True,
    ),
    Entry(
        "detector/grounding_dino_swinb",
        "detector",
        partial(grounding_dino, variant="swinb_cogcoor", paper="GroundingDINO-B"),
        heavy=True,
        paper="GroundingDINO-B",
    ),
    Entry("tracker/csrt", "tracker", partial(opencv_tracker, kind="csrt")),
    Entry("tracker/kcf", "tracker", partial(opencv_tracker, kind="kcf")),
    Entry("tracker/mil", "tracker", partial(opencv_tracker, kind="mil")),
    Entry("tracker/onnx", "tracker", onnx_tracker, paper="MixFormerV2-S"),
    Entry(
        "tracker/mixformer_b", "tracker", not_yet("no MixFormer-B export here"), paper="MixFormer-B"
    ),
    Entry(
        "segmenter/ground_truth",
        "segmenter",
        partial(simple_segmenter, name="ground_truth", label="ground truth (sim)"),
    ),
    Entry("segmenter/box", "segmenter", partial(simple_segmenter, name="box", label="box")),
    Entry(
        "segmenter/grabcut", "segmenter", partial(simple_segmenter, name="grabcut", label="GrabCut")
    ),
    Entry(
        "segmenter/sam_vit_b",
        "segmenter",
        partial(sam, name="sam", variant="vit_b", label="SAM ViT-B", paper="SAM-B"),
        heavy=True,
        paper="SAM-B",
    ),
    Entry(
        "segmenter/mobile_sam",
        "segmenter",
        partial(sam, name="mobile_sam", variant="vit_t", label="MobileSAM", paper="SAM-T"),
        heavy=True,
        paper="SAM-T",
    ),
    Entry("policy/tpm_paper", "policy", partial(tpm, name="paper"), heavy=True, paper="TPM"),
    Entry("policy/tpm_cpu", "policy", partial(tpm, name="cpu")),
)


# ---------------------------------------------------------------- running


def render_scene(config: Config, size: int, n_frames: int) -> Scene:
    """Frames of the first camera while the scripted expert moves the arm (apple into bowl).

    Uses the tracking benchmark's lockstep recorder, so the frames are the runtime's: the same
    world, camera and renderer, at `size` x `size`.
    """
    from benchmarks.tracking_iou import EPISODES, record_episode
    from models.detection.ground_truth import GroundTruthDetector

    episode = EPISODES[1]
    view = config.cameras.views[0]
    recorded = record_episode(episode, views=[view], size=size, max_steps=n_frames)
    frames = [views[view] for views in recorded[:n_frames]]
    phrases = [episode.pick, episode.place]
    found = {
        d.label: d.box for d in GroundTruthDetector().detect(frames[0].rgb, phrases, frames[0])
    }
    missing = [p for p in phrases if p not in found]
    if missing:
        raise RuntimeError(f"{missing} not visible in view {view!r} at {size} px")
    return Scene(frames=frames, phrases=phrases, boxes=[found[p] for p in phrases], size=size)


def select(entries: Sequence[Entry], only: Sequence[str], heavy: bool) -> list[Entry]:
    """Entries whose key contains one of `only` (all if empty); heavy ones only when asked."""
    return [
        e for e in entries if (heavy or not e.heavy) and (not only or any(o in e.key for o in only))
    ]


def run_entries(
    entries: Sequence[Entry], bench: Bench, settings: Settings, log: Any = None
) -> list[Row]:
    """Build and measure each entry in turn; a failing entry becomes an error row, not a crash."""
    rows: list[Row] = []
    for entry in entries:
        t0 = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # timm / groundingdino deprecation noise
                probes = entry.build(bench)
        except Unavailable as exc:
            rows.append(_missing(entry, "n/a", str(exc)))
            continue
        except Exception as exc:  # one broken backend must not hide the others' numbers
            rows.append(_missing(entry, "error", f"{type(exc).__name__}: {exc}"))
            continue
        measured: dict[str, Row] = {}
        for probe in probes:
            row = Row(
                key=entry.key,
                family=entry.family,
                module=probe.name,
                engine=probe.engine,
                input=probe.input,
                paper=probe.paper,
                paper_ms=PAPER_MS.get(probe.paper) if probe.paper else None,
                note=probe.note,
            )
            if probe.call is not None:
                try:
                    for name, value in _stats(measure(probe.call, settings)).items():
                        setattr(row, name, value)
                except Exception as exc:
                    row.status, row.note = "error", f"{type(exc).__name__}: {exc}"
            else:
                parts = [(measured.get(name), weight) for name, weight in probe.derived]
                if all(r is not None and r.median is not None for r, _ in parts):
                    row.status = "derived"
                    row.median = round(sum(r.median * w for r, w in parts), 2)  # type: ignore[union-attr, operator]
                else:
                    row.status = "error"
            measured[probe.name] = row
            rows.append(row)
        if log is not None:
            print(f"  {entry.key}: {time.perf_counter() - t0:.1f} s", file=log, flush=True)
        gc.collect()  # drop the module before building the next (SAM / DINO hold GBs)
    return rows


def _missing(entry: Entry, status: str, why: str) -> Row:
    paper_ms = PAPER_MS.get(entry.paper) if entry.paper else None
    return Row(
        key=entry.key,
        family=entry.family,
        module=entry.key.split("/", 1)[1],
        status=status,
        paper=entry.paper,
        paper_ms=paper_ms,
        note=why,
    )


def format_table(rows: Sequence[Row]) -> str:
    """A markdown table: ours beside the paper's (GPU) where the paper has the module."""
    lines = [
        "| family | module | engine | input | runs | median | p90 | p99 | min | max "
        "| paper (GPU) | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        paper = f"{r.paper} {r.paper_ms:g}" if r.paper and r.paper_ms is not None else ""
        if r.status in ("n/a", "error"):
            cells = [r.family, r.module, "", "", "", r.status, "", "", "", "", paper, r.note]
        else:
            runs = "derived" if r.status == "derived" else str(r.count)
            cells = [
                r.family,
                r.module,
                r.engine,
                r.input,
                runs,
                ms_cell(r.median),
                ms_cell(r.p90),
                ms_cell(r.p99),
                ms_cell(r.min),
                ms_cell(r.max),
                paper,
                r.note,
            ]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines)


def caption(info: dict[str, Any], settings: Settings, threads: int) -> str:
    return (
        f"Latency per call in ms on {describe(info)}; {threads} thread(s) for torch, ONNX "
        f"Runtime and OpenCV; {WEIGHTS_NOTE}. Paper: Table IV, on an NVIDIA GPU."
    )


def run_benchmark(
    config: Config,
    entries: Sequence[Entry],
    settings: Settings,
    *,
    threads: int,
    log: Any = None,
) -> dict[str, Any]:
    """Render the scene, measure every entry; returns the result document (JSON-ready)."""
    preload_torch()  # before rendering: see its docstring
    pin_threads(threads)
    before = machine_info()
    t0 = time.perf_counter()
    scene = render_scene(config, settings.size, settings.frames)
    with tempfile.TemporaryDirectory(prefix="bench-modules-") as folder:
        bench = Bench(config=config, scene=scene, workdir=Path(folder), threads=threads)
        rows = run_entries(entries, bench, settings, log=log)
    info = machine_info()  # the load after the run too: the slow rows ran under it
    info["load_average_before"] = before["load_average"]
    return {
        "benchmark": "modules",
        "machine": info,
        "threads": threads,
        "settings": asdict(settings),
        "weights": WEIGHTS_NOTE,
        "paper_ms": PAPER_MS,
        "duration_s": round(time.perf_counter() - t0, 1),
        "caption": caption(info, settings, threads),
        "rows": [asdict(r) for r in rows],
    }


# ---------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The benchmark's own arguments (the CLI's `bench modules` adds the config arguments)."""
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 1 warm-up, 2-3 runs, 96 px frames (numbers are not for reading)",
    )
    parser.add_argument(
        "--no-heavy",
        action="store_true",
        help="leave out modules taking seconds per call on a CPU (Grounding DINO, SAM, MobileSAM, "
        "TPM paper)",
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="KEY",
        help="only entries whose key contains KEY, repeatable (e.g. tracker, segmenter/sam)",
    )
    parser.add_argument("--list", action="store_true", help="list the entries and exit")
    parser.add_argument("--runs", type=int, help="most timed runs per row (default 200)")
    parser.add_argument("--budget", type=float, help="seconds of timed runs per row (default 20)")
    parser.add_argument("--size", type=int, help="frame side in px (default: sim.image_width)")
    parser.add_argument(
        "--threads",
        type=int,
        help="threads for torch, ONNX Runtime, OpenCV (runtime.torch_threads)",
    )
    parser.add_argument(
        "--json",
        dest="json_path",
        type=Path,
        help="write results JSON here, and the markdown table beside it (default: "
        "benchmarks/results/modules-<device>.json; none with --quick)",
    )


def _settings(args: argparse.Namespace, config: Config) -> Settings:
    size = args.size or config.sim.image_width
    base = Settings.quick(args.size or 96) if args.quick else Settings(size=size)
    updates = {k: v for k, v in (("runs", args.runs), ("budget_s", args.budget)) if v is not None}
    return Settings(**{**asdict(base), **updates})


def run(args: argparse.Namespace, config: Any, out: Any = None) -> int:
    """Run the benchmark as the arguments say; prints the table; returns the exit code."""
    out = out or sys.stdout
    if args.list:
        for e in REGISTRY:
            print(f"{e.key:<34} {e.family:<10} {'heavy' if e.heavy else ''}", file=out)
        return 0
    entries = select(REGISTRY, args.only, heavy=not args.no_heavy)
    if not entries:
        print(f"error: no entry matches {args.only} (see --list)", file=sys.stderr)
        return 2
    threads = args.threads or config.runtime.torch_threads
    settings = _settings(args, config)
    config = config.model_copy(
        update={"runtime": config.runtime.model_copy(update={"torch_threads": threads})}
    )
    print(f"modules: {len(entries)} entries, {threads} thread(s), {WEIGHTS_NOTE}", file=out)
    result = run_benchmark(config, entries, settings, threads=threads, log=out)
    table = format_table([Row(**r) for r in result["rows"]])
    print(f"\n{result['caption']}\n\n{table}", file=out)
    save_results("modules", result, table, args.json_path, args.quick, out)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return standalone_main("python -m benchmarks.modules", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
