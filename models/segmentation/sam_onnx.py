"""Export SAM / MobileSAM to the two ONNX files `SamSegmenter` runs in ONNX Runtime.

- decoder: the package's own `SamOnnxModel` (prompt encoder + mask decoder + upscaling to the
  original size), all mask tokens returned (`return_single_mask=False`) so the segmenter can take
  the single-mask token for box prompts; the number of prompt points is a dynamic axis.
- encoder: the image encoder alone, (1, 3, 1024, 1024) preprocessed image -> (1, 256, 64, 64).
  Measured here on 1 thread: TinyViT 3.1 s in torch vs 1.6 s in ONNX Runtime; ViT-B ~13 s in ORT.

The legacy TorchScript exporter is used (opset 17, one self-contained file): the dynamo exporter
emits opset 18 with external `.onnx.data` files (FINDINGS), which is harder to copy to a robot.

    python -m models.segmentation.sam_onnx --variant vit_t --checkpoint checkpoints/mobile_sam.pt \\
        --out checkpoints/ [--encoder]
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from models._loading import require
from models.segmentation.sam import DECODER_INPUTS, VARIANTS, build_sam
from models.types import ModelError

OPSET = 17


def _package_of(sam: Any) -> str:
    """segment_anything or mobile_sam: each ships its own `SamOnnxModel` for its own `Sam`."""
    return type(sam).__module__.split(".")[0]


def export_decoder(sam: Any, path: Path, *, opset: int = OPSET) -> Path:
    """Write the prompt decoder of `sam` (a built SAM module) to `path`; returns `path`."""
    torch = require("torch")
    onnx_model = require(f"{_package_of(sam)}.utils.onnx").SamOnnxModel(
        sam, return_single_mask=False
    )
    side = sam.prompt_encoder.image_embedding_size
    mask_side = 4 * side[0]
    dummy = (
        torch.randn(1, sam.prompt_encoder.embed_dim, *side),
        torch.randint(0, sam.image_encoder.img_size, (1, 2, 2)).float(),
        torch.tensor([[2.0, 3.0]]),
        torch.zeros(1, 1, mask_side, mask_side),
        torch.zeros(1),
        torch.tensor([480.0, 640.0]),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow
        torch.onnx.export(
            onnx_model,
            dummy,
            str(path),
            input_names=list(DECODER_INPUTS),
            output_names=["masks", "iou_predictions", "low_res_masks"],
            dynamic_axes={"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}},
            opset_version=opset,
            dynamo=False,
        )
    return path


def export_encoder(sam: Any, path: Path, *, opset: int = OPSET) -> Path:
    """Write the image encoder of `sam` to `path` (input "image", output "image_embeddings")."""
    torch = require("torch")
    side = sam.image_encoder.img_size
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            sam.image_encoder,
            (torch.zeros(1, 3, side, side),),
            str(path),
            input_names=["image"],
            output_names=["image_embeddings"],
            opset_version=opset,
            dynamo=False,
        )
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m models.segmentation.sam_onnx",
        description="Export SAM / MobileSAM to ONNX for the sam and mobile_sam segmenters.",
    )
    parser.add_argument("--variant", choices=list(VARIANTS), required=True)
    parser.add_argument("--checkpoint", type=Path, required=True, help="local .pth / .pt file")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--encoder", action="store_true", help="also export the image encoder")
    args = parser.parse_args(argv)
    try:
        if not args.checkpoint.is_file():
            raise ModelError(f"checkpoint not found: {args.checkpoint}")
        sam = build_sam(args.variant, args.checkpoint)
        written = [export_decoder(sam, args.out / f"sam_{args.variant}_decoder.onnx")]
        if args.encoder:
            written.append(export_encoder(sam, args.out / f"sam_{args.variant}_encoder.onnx"))
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
