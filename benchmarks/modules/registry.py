"""The CPU table's rows, in the paper's order of the pipeline: `REGISTRY`, one line per module,
and the reasoner and policy builders.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from functools import partial

import numpy as np

from benchmarks.modules.core import Bench, Entry, Probe, Unavailable, ort_engine
from benchmarks.modules.perception import (
    ground_truth_detector,
    grounding_dino,
    onnx_tracker,
    opencv_tracker,
    sam,
    simple_segmenter,
)
from benchmarks.table4 import identity, million_params


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
    from models.tpm.checkpoint import Normaliser
    from models.tpm.config import preset
    from models.tpm.export import PolicyGraph, write_policy_onnx
    from models.tpm.inputs import prepare_views
    from models.tpm.network import TPMNet
    from models.tpm.onnx_policy import OnnxTPMPolicy
    from models.types import PICK_MASK_VALUE, PLACE_MASK_VALUE, Observation

    torch = require("torch")
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

    note = f"{million_params(graph):.1f}M params"
    return [
        Probe(f"TPM {name} (PyTorch eager)", "torch", size, call=eager, note=note),
        Probe(
            f"TPM {name} (ONNX Runtime policy)",
            ort_engine(policy.session),
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


def _entry(key: str, build: Callable[[Bench], list[Probe]], heavy: bool = False) -> Entry:
    return Entry(key, build=build, heavy=heavy, **identity(key))


#: The table, in the paper's order of the pipeline. One line per module; family and paper
#: module come from the key (`benchmarks.table4.identity`).
REGISTRY: tuple[Entry, ...] = (
    _entry("reasoner/rules", partial(reasoner, name="rules")),
    _entry("reasoner/offline", partial(reasoner, name="offline")),
    _entry("reasoner/openai", partial(reasoner, name="openai")),
    _entry("detector/ground_truth", ground_truth_detector),
    _entry(
        "detector/grounding_dino_swint",
        partial(grounding_dino, variant="swint_ogc", paper=None),
        heavy=True,
    ),
    _entry(
        "detector/grounding_dino_swinb",
        partial(grounding_dino, variant="swinb_cogcoor", paper="GroundingDINO-B"),
        heavy=True,
    ),
    _entry("tracker/csrt", partial(opencv_tracker, kind="csrt")),
    _entry("tracker/kcf", partial(opencv_tracker, kind="kcf")),
    _entry("tracker/mil", partial(opencv_tracker, kind="mil")),
    _entry("tracker/onnx", onnx_tracker),
    _entry("tracker/mixformer_b", not_yet("no MixFormer-B export here")),
    _entry(
        "segmenter/ground_truth",
        partial(simple_segmenter, name="ground_truth", label="ground truth (sim)"),
    ),
    _entry("segmenter/box", partial(simple_segmenter, name="box", label="box")),
    _entry("segmenter/grabcut", partial(simple_segmenter, name="grabcut", label="GrabCut")),
    _entry(
        "segmenter/sam_vit_b",
        partial(sam, name="sam", variant="vit_b", label="SAM ViT-B", paper="SAM-B"),
        heavy=True,
    ),
    _entry(
        "segmenter/mobile_sam",
        partial(sam, name="mobile_sam", variant="vit_t", label="MobileSAM", paper="SAM-T"),
        heavy=True,
    ),
    _entry("policy/tpm_paper", partial(tpm, name="paper"), heavy=True),
    _entry("policy/tpm_cpu", partial(tpm, name="cpu")),
)
