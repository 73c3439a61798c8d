"""The CPU table's perception rows: detectors, trackers and segmenters, built through the
runtime's own backends (`agent.backends`) from random-weight stand-ins saved here.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks.modules.core import Bench, Probe, ort_engine
from benchmarks.table4 import million_params
from models._loading import require


def _standin_grounding_dino(bench: Bench, variant: str) -> tuple[Path, Path]:
    """(checkpoint, BERT folder) of random weights for a shipped Grounding DINO variant."""
    from models.detection.standin import standin_bert, write_grounding_dino

    bert = bench.cached("bert", lambda: standin_bert(bench.workdir / "bert", bench.scene.phrases))
    checkpoint = bench.workdir / f"groundingdino_{variant}.pth"
    return write_grounding_dino(variant, bert, checkpoint), bert


def _standin_sam(bench: Bench, variant: str) -> Path:
    from models.segmentation.sam import build_sam

    torch = require("torch")
    torch.manual_seed(0)
    path = bench.workdir / f"sam_{variant}.pth"
    torch.save(build_sam(variant, None).state_dict(), path)
    return path


def _standin_tracker(bench: Bench) -> tuple[Path, float]:
    """The MixFormerV2-S-sized stand-in exported to ONNX; (its file, million parameters)."""
    from models.tracking.standin import export_tracker, mixformer_v2_s

    section = bench.config.onnx_tracker
    model = mixformer_v2_s(section.template_size, section.search_size)
    path = bench.workdir / "mixformerv2_small_standin.onnx"
    export_tracker(model, path, section.template_size, section.search_size)
    return path, million_params(model)


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
        ort_engine(factory.session),
        paper="MixFormerV2-S",
    )
    note = (
        f"stand-in ViT {params:.1f}M params; template {sig.template_size}, "
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
