"""The GPU table's modules: each builds its random-weight network on the device and returns
the calls to time (`Target`s) and the rows summed from them (`Derived`); `REGISTRY` lists them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks.gpu_modules.variants import Built, Context, Derived, Entry, Target
from benchmarks.table4 import TASK_PHRASES, identity, million_params

#: The runtime's defaults for the ONNX tracker's crops (config section `onnx_tracker`).
TRACKER_TEMPLATE, TRACKER_SEARCH = 112, 224
#: Grounding DINO's model input for the CPU table's 224x224 frame (short side 800).
DINO_INPUT = 800
#: The camera frame SAM's masks are post-processed to (the CPU table's frame side).
FRAME = 224


def _params(model: Any) -> str:
    return f"{million_params(model):.1f}M params"


def tpm(ctx: Context) -> Built:
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


def tracker(ctx: Context) -> Built:
    from models.tracking.standin import mixformer_v2_s

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


def sam(ctx: Context, variant: str, label: str, paper: str) -> Built:
    """Encoder; prompt encoder + mask decoder (+ mask post-processing) with 1 and 2 boxes.

    For ViT variants also the encoder with SDPA attention (a copy of it, rebound by
    `use_sdpa_attention`), and the 2-box decoder once more for the SDPA variants' per-frame sum.
    """
    import copy

    from models.segmentation.sam import build_sam
    from models.segmentation.sam_attention import use_sdpa_attention
    from models.segmentation.standin import tiny_sam

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
        from models.detection.standin import standin_bert

        standin_bert(partial_folder, TASK_PHRASES)
        partial_folder.rename(folder)
    return folder


def grounding_dino(ctx: Context, variant: str, label: str, paper: str | None) -> Built:
    from models.detection.grounding_dino import build_caption
    from models.detection.standin import grounding_dino_model

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


def _entry(key: str, build: Callable[[Context], Built], budget_s: float, **more: Any) -> Entry:
    return Entry(key, build=build, budget_s=budget_s, **identity(key), **more)


#: The table, in the order the children run (the paper's own network first: it matters most);
#: family and paper module come from the key (`benchmarks.table4.identity`).
#: Budgets are caps in seconds, imports and model building included (the first child also
#: pays the cold torch import and CUDA start); what a child leaves unused stays in `--total`.
REGISTRY: tuple[Entry, ...] = (
    _entry("policy/tpm_paper", tpm, 45.0, compile=True, compile_budget_s=80.0),
    _entry("tracker/onnx", tracker, 35.0, compile=True, compile_budget_s=50.0),
    _entry(
        "segmenter/sam_vit_b",
        partial(sam, variant="vit_b", label="SAM ViT-B", paper="SAM-B"),
        70.0,
        compile_budget_s=100.0,
        sdpa=True,
    ),
    _entry(
        "segmenter/mobile_sam",
        partial(sam, variant="vit_t", label="MobileSAM", paper="SAM-T"),
        35.0,
    ),
    _entry(
        "detector/grounding_dino_swinb",
        partial(grounding_dino, variant="swinb_cogcoor", label="Swin-B", paper="GroundingDINO-B"),
        50.0,
    ),
    _entry(
        "detector/grounding_dino_swint",
        partial(grounding_dino, variant="swint_ogc", label="Swin-T", paper=None),
        40.0,
    ),
)
