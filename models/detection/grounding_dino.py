"""Grounding DINO (groundingdino-py) as the open-vocabulary detector of the first frame.

The paper prompts Grounding DINO with the object names the reasoner chose and takes the best box
per object. Everything is local: the checkpoint, the model config (shipped in the package or a
user file) and the BERT text encoder folder (config, vocabulary and weights; `text_encoder_type`
of groundingdino accepts a folder). The hub is switched off (`HF_HUB_OFFLINE`) before
transformers loads, so a wrong path fails at load time instead of downloading during a run.

Phrase-to-box matching: the phrases are joined into one caption ("red apple . bowl ."), as the
model was trained on; every query gets one probability per caption token. A phrase's score for a
query is the highest probability over that phrase's tokens (found through the tokenizer's offset
mapping, so multi-token names work). A query is a candidate when its best token passes
`box_threshold` (groundingdino's own box filter) and it votes for the phrase it scores highest, if
that score passes `text_threshold`; each phrase gets its best-scoring candidate. Voting keeps one
box from being reported as two different objects.

Boxes: the model returns normalised (cx, cy, w, h) relative to the resized image; because the
resize keeps the aspect ratio and nothing is padded for a single image, they are relative to the
original image too, and are turned into pixel (x0, y0, x1, y1) clipped to it.

Measured on this 2-core machine, 1 thread, Swin-T OGC (with a tiny text encoder; BERT-base adds
its share): a 224 x 224 frame takes ~13 s at the default `image_size` 800 and ~1.3 s at 224
(FINDINGS: ~32 s at 800 x 1066). It runs once per episode and on re-detection, which is why the
pipeline tracks in between; with small camera frames a smaller `image_size` is the first knob.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from pydantic import Field, model_validator

from models._boxes import clip_box, trackable
from models._loading import (
    Device,
    Settings,
    first_line,
    load_state_dict,
    offline_hub,
    require,
    require_dir,
    require_file,
    set_torch_threads,
    torch_device,
)
from models.types import Box, Detection, GroundTruth, ModelError

log = logging.getLogger(__name__)

#: variant -> (model config shipped in groundingdino/config, official checkpoint file name).
VARIANTS: dict[str, tuple[str, str]] = {
    "swint_ogc": ("GroundingDINO_SwinT_OGC.py", "groundingdino_swint_ogc.pth"),
    "swinb_cogcoor": ("GroundingDINO_SwinB_cfg.py", "groundingdino_swinb_cogcoor.pth"),
}
CHECKPOINT_DIR = Path("checkpoints")
DEFAULT_TEXT_ENCODER = CHECKPOINT_DIR / "bert-base-uncased"
_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


class GroundingDinoConfig(Settings):
    """`[grounding_dino]`: Grounding DINO from local files; nothing is fetched from the hub at run
    time. `GroundingDinoDetector(**config.model_dump(), threads=...)` builds it."""

    variant: Literal["swint_ogc", "swinb_cogcoor"] = Field(
        "swint_ogc", description="Which model config shipped with groundingdino-py."
    )
    config_path: Path | None = Field(
        None, description="A groundingdino model config (.py) replacing the variant's."
    )
    checkpoint: Path | None = Field(
        None, description="Local .pth (None: checkpoints/groundingdino_<variant>.pth)."
    )
    text_encoder: Path = Field(
        DEFAULT_TEXT_ENCODER, description="Local BERT folder (config.json, vocab.txt, weights)."
    )
    box_threshold: float = Field(0.35, ge=0, lt=1, description="Least best-token probability.")
    text_threshold: float = Field(0.25, ge=0, lt=1, description="Least phrase probability.")
    image_size: int = Field(800, ge=32, le=2048, description="Short side of the model input.")
    max_size: int = Field(1333, ge=32, le=4096, description="Cap on the long side.")
    device: Device = "cpu"

    @model_validator(mode="after")
    def _sizes(self) -> GroundingDinoConfig:
        if self.max_size < self.image_size:
            raise ValueError(
                f"max_size ({self.max_size}) must be >= image_size ({self.image_size})"
            )
        return self


def default_checkpoint(variant: str) -> Path:
    """Where the official checkpoint of `variant` is looked for when the config names none."""
    return CHECKPOINT_DIR / VARIANTS[variant][1]


# ---------------------------------------------------------------- pure helpers (no torch)


def build_caption(phrases: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
    """The caption for `phrases` and each phrase's (start, end) character span in it.

    Phrases are lower-cased, with whitespace collapsed and the separators "." and "?" removed
    (they end sub-sentences for the model); the caption ends with " ." as groundingdino expects.
    """
    parts, spans, position = [], [], 0
    for phrase in phrases:
        text = " ".join(phrase.lower().replace(".", " ").replace("?", " ").split())
        if not text:
            raise ValueError(f"cannot detect an empty phrase ({phrase!r})")
        spans.append((position, position + len(text)))
        parts.append(text)
        position += len(text) + len(" . ")
    return " . ".join(parts) + " .", spans


def phrase_token_masks(
    offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]]
) -> np.ndarray:
    """(P, T) bool: token t belongs to phrase p when its character range lies in p's span.

    Special tokens have the empty range (0, 0) and belong to no phrase.
    """
    masks = np.zeros((len(spans), len(offsets)), dtype=bool)
    for t, (start, end) in enumerate(offsets):
        if end <= start:
            continue
        for p, (lo, hi) in enumerate(spans):
            if lo <= start and end <= hi:
                masks[p, t] = True
    return masks


@dataclass(frozen=True, slots=True)
class Match:
    """Query `query` is the best box for phrase `phrase`, with probability `score`."""

    phrase: int
    query: int
    score: float


def match_phrases(
    probs: np.ndarray, token_masks: np.ndarray, box_threshold: float, text_threshold: float
) -> list[Match]:
    """Best query per phrase from token probabilities `probs` (Q, T); see the module docstring."""
    if probs.ndim != 2 or token_masks.ndim != 2 or probs.shape[1] < token_masks.shape[1]:
        raise ValueError(f"shapes do not fit: probs {probs.shape}, token masks {token_masks.shape}")
    n_phrases, n_tokens = token_masks.shape
    probs = probs[:, :n_tokens]
    per_phrase = np.full((probs.shape[0], n_phrases), -1.0, dtype=np.float64)
    for p in range(n_phrases):
        if token_masks[p].any():
            per_phrase[:, p] = probs[:, token_masks[p]].max(axis=1)
    candidate = probs.max(axis=1) > box_threshold
    vote = per_phrase.argmax(axis=1)
    matches = []
    for p in range(n_phrases):
        scores = np.where(candidate & (vote == p), per_phrase[:, p], -1.0)
        query = int(scores.argmax())
        if scores[query] > text_threshold:
            matches.append(Match(phrase=p, query=query, score=float(scores[query])))
    return matches


def cxcywh_to_pixel_box(box: Sequence[float], width: int, height: int) -> Box:
    """A normalised (cx, cy, w, h) box as pixel (x0, y0, x1, y1), clipped to the image."""
    cx, cy, w, h = (float(v) for v in box)
    raw = Box(
        (cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height
    )
    return clip_box(raw, (height, width))


def resized_shape(height: int, width: int, short_side: int, max_size: int) -> tuple[int, int]:
    """(H, W) after scaling the short side to `short_side`, the long side capped at `max_size`.

    This is groundingdino's evaluation transform (`RandomResize([800], max_size=1333)`).
    """
    scale = short_side / min(height, width)
    if max(height, width) * scale > max_size:
        scale = max_size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


# ---------------------------------------------------------------- the backend


class GroundingDinoDetector:
    """Loads Grounding DINO once (at construction) and detects phrases in RGB uint8 frames.

    `checkpoint`: a local .pth (default `checkpoints/<official name of variant>`);
    `text_encoder`: a local BERT folder (config.json, vocab.txt or tokenizer.json, weights);
    `config_path`: a groundingdino model config (.py) replacing the variant's shipped one;
    `image_size` / `max_size`: the short side the frame is resized to and the long-side cap.
    Raises ModelError (one line) for a missing file, package, or a checkpoint that does not fit.
    """

    name = "grounding_dino"

    def __init__(
        self,
        checkpoint: str | Path | None = None,
        text_encoder: str | Path = DEFAULT_TEXT_ENCODER,
        *,
        variant: str = "swint_ogc",
        config_path: str | Path | None = None,
        box_threshold: float = 0.35,
        text_threshold: float = 0.25,
        image_size: int = 800,
        max_size: int = 1333,
        device: Device = "cpu",
        threads: int | None = None,
    ) -> None:
        if variant not in VARIANTS:
            raise ValueError(
                f"unknown Grounding DINO variant {variant!r}; allowed: {list(VARIANTS)}"
            )
        for label, value in (("box_threshold", box_threshold), ("text_threshold", text_threshold)):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{label} must be in [0, 1), got {value}")
        if image_size < 32 or max_size < image_size:
            raise ValueError(f"need 32 <= image_size <= max_size, got {image_size}, {max_size}")
        self.variant = variant
        self.box_threshold = box_threshold
        self.text_threshold = text_threshold
        self.image_size = image_size
        self.max_size = max_size
        self.checkpoint = require_file(
            checkpoint if checkpoint is not None else default_checkpoint(variant),
            "Grounding DINO checkpoint",
            "grounding_dino.checkpoint",
        )
        self.text_encoder = require_dir(
            text_encoder,
            "Grounding DINO text encoder (BERT) folder",
            "grounding_dino.text_encoder",
            ("vocab.txt", "tokenizer.json"),
        )
        self.config_path = (
            require_file(config_path, "Grounding DINO model config", "grounding_dino.config_path")
            if config_path is not None
            else None
        )
        set_torch_threads(threads)
        self.device = torch_device(device)
        self._torch = require("torch")
        self.model = self._load()

    def _model_config(self) -> Any:
        require("groundingdino")
        from groundingdino.util.slconfig import SLConfig

        if self.config_path is not None:
            return SLConfig.fromfile(str(self.config_path))
        shipped = resources.files("groundingdino") / "config" / VARIANTS[self.variant][0]
        with resources.as_file(shipped) as path:
            return SLConfig.fromfile(str(path))

    def _load(self) -> Any:
        offline_hub()
        args = self._model_config()
        from groundingdino.models import build_model

        args.device = self.device
        args.text_encoder_type = str(self.text_encoder)
        # groundingdino prints the text encoder path on stdout; the runtime logs, it never prints.
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                model = build_model(args)
            except OSError as exc:  # transformers: the folder lacks weights or a tokenizer file
                raise ModelError(
                    f"text encoder folder {self.text_encoder} is not a loadable BERT: "
                    f"{first_line(exc)}"
                ) from None
        state = load_state_dict(self.checkpoint, "Grounding DINO checkpoint")
        try:
            result = model.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # shape mismatches: another variant or text encoder size
            raise ModelError(
                f"Grounding DINO checkpoint {self.checkpoint} does not fit the {self.variant} "
                f"model: {first_line(exc)}"
            ) from None
        if result.missing_keys:
            raise ModelError(
                f"Grounding DINO checkpoint {self.checkpoint} lacks {len(result.missing_keys)} "
                f"weights of the {self.variant} model (e.g. {result.missing_keys[0]})"
            )
        if result.unexpected_keys:  # the official files carry e.g. label_enc, unused at inference
            log.debug("ignored checkpoint keys: %s", result.unexpected_keys)
        tokenizer = getattr(model, "tokenizer", None)
        if not getattr(tokenizer, "is_fast", False):
            raise ModelError(
                f"text encoder folder {self.text_encoder} gives no fast tokenizer "
                "(phrase matching needs offsets; add tokenizer.json or vocab.txt)"
            )
        return model.to(self.device).eval()

    def _tensor(self, image: np.ndarray) -> Any:
        height, width = image.shape[:2]
        new_h, new_w = resized_shape(height, width, self.image_size, self.max_size)
        resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        normalised = (resized.astype(np.float32) / 255.0 - _IMAGENET_MEAN) / _IMAGENET_STD
        chw = np.ascontiguousarray(normalised.transpose(2, 0, 1))
        return self._torch.from_numpy(chw).to(self.device)

    def detect(
        self, image: np.ndarray, phrases: Sequence[str], truth: GroundTruth | None = None
    ) -> list[Detection]:
        """Best box per phrase in an RGB (H, W, 3) uint8 image; phrases not found are left out."""
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ModelError(
                f"grounding_dino needs an (H, W, 3) uint8 image, got {image.shape} {image.dtype}"
            )
        if not phrases:
            return []
        caption, spans = build_caption(phrases)
        tokens = self.model.tokenizer(caption, return_offsets_mapping=True)
        offsets = tokens["offset_mapping"][: self.model.max_text_len]
        torch = self._torch
        with torch.inference_mode():
            outputs = self.model(self._tensor(image)[None], captions=[caption])
        probs = outputs["pred_logits"][0].float().sigmoid().cpu().numpy()
        boxes = outputs["pred_boxes"][0].float().cpu().numpy()
        matches = match_phrases(
            probs, phrase_token_masks(offsets, spans), self.box_threshold, self.text_threshold
        )
        height, width = image.shape[:2]
        detections = []
        for match in matches:
            box = cxcywh_to_pixel_box(boxes[match.query], width, height)
            if trackable(box, image.shape):  # slivers: nothing for a tracker to follow
                detections.append(Detection(phrases[match.phrase], box, match.score))
        return detections
