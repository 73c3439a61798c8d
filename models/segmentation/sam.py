"""SAM (segment-anything: vit_b, vit_l, vit_h) and MobileSAM (mobilesam-mirror: vit_t) from boxes.

The paper turns every tracked box into a mask with SAM; its "SAM-T" is MobileSAM's TinyViT. The
image encoder is the expensive part (measured here, 1 thread: ViT-B ~21-45 s, TinyViT ~2-3 s per
1024 x 1024 input; the decoder ~0.1 s per box), so it runs once per frame and all boxes of that
frame share the embedding; the prompt decoder then runs once for all boxes (torch) or once per
box (ONNX Runtime, whose exported decoder takes one prompt).

Both halves can run in ONNX Runtime instead of torch: `onnx_decoder` takes a file exported with
segment-anything's `SamOnnxModel` (inputs image_embeddings, point_coords, point_labels,
mask_input, has_mask_input, orig_im_size), `onnx_encoder` a file mapping the preprocessed
(1, 3, 1024, 1024) image to the (1, 256, 64, 64) embedding; `models.segmentation.sam_onnx`
exports both. The checkpoint is needed only for the halves that run in torch.

Box prompts use SAM's single-mask output (the first mask token), which SAM's authors recommend
for unambiguous prompts such as boxes; with the ONNX decoder the same token is taken.

`fast_attention` (vit_b/l/h in torch) runs the image encoder's attention through PyTorch's fused
scaled_dot_product_attention (`models.segmentation.sam_attention`): the same output up to float
rounding, faster on a GPU, and the encoder can then be captured in a CUDA graph.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from models._loading import (
    Device,
    Settings,
    first_line,
    load_state_dict,
    onnx_session,
    require,
    require_file,
    set_torch_threads,
    torch_device,
)
from models.segmentation.base import Labels, Segmenter, Truth
from models.types import Box, ModelError

#: variant -> (package providing it, official checkpoint file name).
VARIANTS: dict[str, tuple[str, str]] = {
    "vit_b": ("segment_anything", "sam_vit_b_01ec64.pth"),
    "vit_l": ("segment_anything", "sam_vit_l_0b3195.pth"),
    "vit_h": ("segment_anything", "sam_vit_h_4b8939.pth"),
    "vit_t": ("mobile_sam", "mobile_sam.pt"),
}
CHECKPOINT_DIR = Path("checkpoints")
#: SAM's input normalisation (the builders of both packages use these pixel statistics).
PIXEL_MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)
PIXEL_STD = np.array([58.395, 57.12, 57.375], dtype=np.float32)


class _SamFiles(Settings):
    checkpoint: Path | None = Field(
        None, description="Local checkpoint (None: checkpoints/<official file name>)."
    )
    onnx_encoder: Path | None = Field(
        None, description="Image encoder in ONNX Runtime (python -m models.segmentation.sam_onnx)."
    )
    onnx_decoder: Path | None = Field(
        None, description="Prompt decoder in ONNX Runtime (SamOnnxModel export)."
    )
    device: Device = "cpu"


class SamConfig(_SamFiles):
    """`[sam]`: segment-anything SAM; the checkpoint is needed for the halves that run in torch."""

    variant: Literal["vit_b", "vit_l", "vit_h"] = "vit_b"
    fast_attention: bool = Field(
        False, description="Encoder attention via torch's fused SDPA (same output; faster on GPU)."
    )


class MobileSamConfig(_SamFiles):
    """`[mobile_sam]`: MobileSAM (TinyViT, the paper's SAM-T) from mobilesam-mirror."""


DECODER_INPUTS = (
    "image_embeddings",
    "point_coords",
    "point_labels",
    "mask_input",
    "has_mask_input",
    "orig_im_size",
)


def default_checkpoint(variant: str) -> Path:
    """Where the official checkpoint of `variant` is looked for when the config names none."""
    return CHECKPOINT_DIR / VARIANTS[variant][1]


def build_sam(variant: str, checkpoint: Path | None) -> Any:
    """The real SAM module of `variant` from its package, weights from `checkpoint` (or random).

    The model is built without weights and the state dict loaded here (strictly), so that a
    user's file and a test's file go through the same reading and checking code.
    """
    package = require(VARIANTS[variant][0])
    model = package.sam_model_registry[variant](checkpoint=None)
    if checkpoint is not None:
        state = load_state_dict(checkpoint, f"SAM {variant} checkpoint")
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise ModelError(
                f"SAM checkpoint {checkpoint} does not fit {variant}: {first_line(exc)}"
            ) from None
    return model.eval()


class SamSegmenter(Segmenter):
    """Box-prompted SAM / MobileSAM behind the `Segmenter` protocol.

    `checkpoint` defaults to `checkpoints/<official file name>`; `onnx_encoder` / `onnx_decoder`
    move either half to ONNX Runtime; `config_section` is the config section that error messages
    name (default: "sam", or "mobile_sam" for vit_t). `fast_attention` routes the torch image
    encoder's attention through scaled_dot_product_attention (ViT variants only, see the module
    docstring). `encoder_calls` counts image encodings (one per `segment` call with at least one
    box), so callers and tests can check that boxes share the embedding. Raises ModelError (one
    line) when a checkpoint, ONNX file or package is missing, a file does not fit the variant,
    or fast_attention is asked of an encoder it does not apply to.
    """

    def __init__(
        self,
        variant: str = "vit_b",
        checkpoint: str | Path | None = None,
        *,
        onnx_encoder: str | Path | None = None,
        onnx_decoder: str | Path | None = None,
        device: Device = "cpu",
        threads: int | None = None,
        config_section: str | None = None,
        fast_attention: bool = False,
    ) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"unknown SAM variant {variant!r}; allowed: {', '.join(VARIANTS)}")
        section = config_section or ("mobile_sam" if variant == "vit_t" else "sam")
        if fast_attention and (variant == "vit_t" or onnx_encoder is not None):
            why = "MobileSAM's TinyViT" if variant == "vit_t" else f"{section}.onnx_encoder is set"
            raise ModelError(
                f"{section}.fast_attention applies to the ViT image encoders in torch (vit_b, "
                f"vit_l, vit_h), not here: {why}"
            )
        self.name = "mobile_sam" if variant == "vit_t" else "sam"
        self.variant = variant
        self.encoder_calls = 0
        set_torch_threads(threads)
        transforms = require(f"{VARIANTS[variant][0]}.utils.transforms")
        self._resize = transforms.ResizeLongestSide(1024)
        self.image_size = 1024
        encoder_file = (
            require_file(onnx_encoder, "SAM ONNX encoder", f"{section}.onnx_encoder")
            if onnx_encoder is not None
            else None
        )
        decoder_file = (
            require_file(onnx_decoder, "SAM ONNX decoder", f"{section}.onnx_decoder")
            if onnx_decoder is not None
            else None
        )
        self.model: Any = None
        self._torch: Any = None
        self.device = "cpu"
        if encoder_file is None or decoder_file is None:
            file = require_file(
                checkpoint if checkpoint is not None else default_checkpoint(variant),
                f"SAM {variant} checkpoint",
                f"{section}.checkpoint",
            )
            self._torch = require("torch")
            self.device = torch_device(device)
            self.model = build_sam(variant, file).to(self.device)
            self.image_size = int(self.model.image_encoder.img_size)
            if fast_attention:
                from models.segmentation.sam_attention import use_sdpa_attention

                use_sdpa_attention(self.model.image_encoder)
        self.fast_attention = fast_attention
        self._encoder = (
            onnx_session(encoder_file, device=device, threads=threads, what="SAM ONNX encoder")
            if encoder_file is not None
            else None
        )
        self._decoder = (
            onnx_session(decoder_file, device=device, threads=threads, what="SAM ONNX decoder")
            if decoder_file is not None
            else None
        )
        if self._decoder is not None:
            names = {i.name for i in self._decoder.get_inputs()}
            missing = [n for n in DECODER_INPUTS if n not in names]
            if missing:
                raise ModelError(
                    f"SAM ONNX decoder {decoder_file} lacks the SamOnnxModel inputs {missing}"
                )

    # ------------------------------------------------------------------ the protocol

    def masks(self, image: np.ndarray, boxes: list[Box], labels: Labels, truth: Truth) -> list:
        """One (H, W) bool mask per box (pixel xyxy), from one image encoding; labels unused."""
        if not boxes:
            return []
        embedding = self.embed(image)
        prompts = self._resize.apply_boxes(
            np.array([b.as_tuple() for b in boxes], dtype=np.float64), image.shape[:2]
        ).astype(np.float32)
        if self._decoder is not None:
            return [self._decode_onnx(embedding, prompt, image.shape[:2]) for prompt in prompts]
        return self._decode_torch(embedding, prompts, image.shape[:2])

    # ------------------------------------------------------------------ encoder

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
        """SAM's encoder input (1, 3, 1024, 1024) float32 and the resized (H, W).

        Longest side resized to 1024 by the package's own transform, normalised with SAM's pixel
        statistics, zero-padded bottom-right: what `Sam.preprocess` does, in numpy, so that the
        ONNX encoder gets the same input without torch.
        """
        resized = self._resize.apply_image(image)
        height, width = resized.shape[:2]
        normalised = (resized.astype(np.float32) - PIXEL_MEAN) / PIXEL_STD
        padded = np.zeros((1, 3, self.image_size, self.image_size), dtype=np.float32)
        padded[0, :, :height, :width] = normalised.transpose(2, 0, 1)
        return padded, (height, width)

    def embed(self, image: np.ndarray) -> Any:
        """The image embedding (1, 256, 64, 64): a torch tensor or, with the ONNX encoder, numpy."""
        self.encoder_calls += 1
        pixels, _ = self.preprocess(image)
        if self._encoder is not None:
            name = self._encoder.get_inputs()[0].name
            embedding = self._encoder.run(None, {name: pixels})[0]
            return embedding if self._decoder is not None else self._torch.from_numpy(embedding)
        torch = self._torch
        with torch.inference_mode():
            embedding = self.model.image_encoder(torch.from_numpy(pixels).to(self.device))
        return embedding.cpu().numpy() if self._decoder is not None else embedding

    # ------------------------------------------------------------------ decoders

    def _decode_torch(
        self, embedding: Any, prompts: np.ndarray, original: tuple[int, int]
    ) -> list[np.ndarray]:
        torch, model = self._torch, self.model
        input_size = tuple(self._resize.get_preprocess_shape(*original, self.image_size))
        with torch.inference_mode():
            sparse, dense = model.prompt_encoder(
                points=None, boxes=torch.from_numpy(prompts).to(self.device), masks=None
            )
            low_res, _ = model.mask_decoder(
                image_embeddings=embedding.to(self.device),
                image_pe=model.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=False,
            )
            masks = model.postprocess_masks(low_res, input_size, original) > model.mask_threshold
        return [m for m in masks[:, 0].cpu().numpy()]

    def _decode_onnx(
        self, embedding: np.ndarray, prompt: np.ndarray, original: tuple[int, int]
    ) -> np.ndarray:
        feeds = {
            "image_embeddings": np.ascontiguousarray(embedding, dtype=np.float32),
            "point_coords": prompt.reshape(1, 2, 2).astype(np.float32),
            "point_labels": np.array([[2.0, 3.0]], dtype=np.float32),  # box corners
            "mask_input": np.zeros((1, 1, 256, 256), dtype=np.float32),
            "has_mask_input": np.zeros(1, dtype=np.float32),
            "orig_im_size": np.array(original, dtype=np.float32),
        }
        assert self._decoder is not None  # only called when the ONNX decoder is configured
        masks = self._decoder.run(None, feeds)[0]
        if masks.ndim != 4 or tuple(masks.shape[2:]) != original:
            raise ModelError(f"SAM ONNX decoder returned masks of shape {masks.shape}")
        return masks[0, 0] > 0.0  # SAM's mask_threshold
