"""A learned single-object tracker exported to ONNX (MixFormerV2-style), run by ONNX Runtime.

The paper tracks with MixFormer. Its released trackers (and community exports of MixFormerV2)
take a template crop around the first box, optionally an online template that is refreshed with
confident later crops, and a search crop around the last box, and return one box in the search
crop plus a confidence. This backend implements that protocol around any `.onnx` file with:

- inputs: 2 (template, search) or 3 (template, online template, search) float32 NCHW images,
  RGB, ImageNet-normalised. The search input is the one whose name contains "search", else the
  larger one (static shapes), else the last; static input sizes override the configured ones;
- outputs: the box as normalised (cx, cy, w, h) in the search crop (an output named "*box*", or of
  4 values; several rows are averaged, as MixFormerV2's tracker does), and optionally a score (an
  output named "*score*", or of 1 value), a probability unless `score_activation="sigmoid"`.

Crops are squares of side sqrt(w * h) * factor centred on the box, zero-padded outside the image
(MixFormerV2's defaults: template 112 px at factor 2.0, search 224 px at factor 4.5).

Health: the model's score must pass `min_score`, then the same geometric and appearance checks as
the OpenCV trackers (`TrackHealth`), so a confident jump to a distractor still counts as lost and
the pipeline re-detects.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from pydantic import Field

from models._loading import Device, Settings, onnx_session, require_file
from models.tracking.base import TrackResult
from models.tracking.health import TrackHealth
from models.types import Box, ModelError

CHECKPOINT_DIR = Path("checkpoints")
DEFAULT_MODEL = CHECKPOINT_DIR / "mixformerv2_small.onnx"
_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32) * 255.0
_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32) * 255.0


@dataclass(frozen=True, slots=True)
class Crop:
    """A square patch and how it maps back: image x = x0 + patch x / scale (same for y)."""

    patch: np.ndarray
    x0: float
    y0: float
    scale: float


def crop_square(image: np.ndarray, box: Box, factor: float, size: int) -> Crop:
    """A `size` x `size` patch of the square of side sqrt(w * h) * factor centred on `box`.

    Coordinates are continuous (pixel i covers [i, i + 1)); warpAffine works on pixel centres,
    hence the half-pixel terms. Outside the image the patch is black (zero padding).
    """
    side = max(math.sqrt(max(box.area, 1.0)) * factor, 1.0)
    scale = size / side
    x0 = (box.x0 + box.x1) / 2 - side / 2
    y0 = (box.y0 + box.y1) / 2 - side / 2
    matrix = np.array(
        [[scale, 0.0, (0.5 - x0) * scale - 0.5], [0.0, scale, (0.5 - y0) * scale - 0.5]],
        dtype=np.float64,
    )
    patch = cv2.warpAffine(
        image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
    )
    return Crop(patch=patch, x0=x0, y0=y0, scale=scale)


def to_input(patch: np.ndarray) -> np.ndarray:
    """RGB uint8 (S, S, 3) -> ImageNet-normalised float32 (1, 3, S, S)."""
    normalised = (patch.astype(np.float32) - _MEAN) / _STD
    return np.ascontiguousarray(normalised.transpose(2, 0, 1)[None])


@dataclass(frozen=True, slots=True)
class Signature:
    """Which model inputs and outputs play which role; see the module docstring."""

    template: str
    online: str | None
    search: str
    template_size: int
    search_size: int
    box: str
    score: str | None


def _static_side(shape: Sequence[Any]) -> int | None:
    side = shape[-1] if len(shape) == 4 else None
    return side if isinstance(side, int) and side > 0 else None


def read_signature(session: Any, template_size: int, search_size: int) -> Signature:
    """Map a session's inputs and outputs to roles, or raise a ModelError saying what is off."""
    inputs = list(session.get_inputs())
    if len(inputs) not in (2, 3) or any(len(i.shape) != 4 for i in inputs):
        shapes = ", ".join(f"{i.name}{list(i.shape)}" for i in inputs)
        raise ModelError(
            f"ONNX tracker needs 2 or 3 image inputs (template, [online template,] search), "
            f"got {shapes}"
        )
    named = [i for i in inputs if "search" in i.name.lower()]
    sides = [_static_side(i.shape) for i in inputs]
    if named:
        search = named[0]
    elif all(s is not None for s in sides) and len(set(sides)) > 1:
        search = inputs[int(np.argmax([s or 0 for s in sides]))]
    else:
        search = inputs[-1]
    templates = [i for i in inputs if i is not search]
    outputs = list(session.get_outputs())
    box = next((o.name for o in outputs if "box" in o.name.lower()), None)
    if box is None:
        box = next((o.name for o in outputs if o.shape and o.shape[-1] == 4), outputs[0].name)
    score = next((o.name for o in outputs if "score" in o.name.lower() and o.name != box), None)
    if score is None and len(outputs) > 1:
        score = next(o.name for o in outputs if o.name != box)
    return Signature(
        template=templates[0].name,
        online=templates[1].name if len(templates) > 1 else None,
        search=search.name,
        template_size=_static_side(templates[0].shape) or template_size,
        search_size=_static_side(search.shape) or search_size,
        box=box,
        score=score,
    )


class OnnxTracker:
    """Follows one box with the shared session; create through `OnnxTrackerFactory`."""

    def __init__(self, factory: OnnxTrackerFactory) -> None:
        self._f = factory
        self._health = TrackHealth(
            max_area_ratio=factory.max_area_ratio,
            max_jump=factory.max_jump,
            min_appearance=factory.min_appearance,
        )
        self._template: np.ndarray | None = None
        self._online: np.ndarray | None = None
        self._best: tuple[float, np.ndarray] | None = None
        self._frames = 0

    def _template_input(self, image: np.ndarray, box: Box) -> np.ndarray:
        sig = self._f.signature
        return to_input(crop_square(image, box, self._f.template_factor, sig.template_size).patch)

    def init(self, image: np.ndarray, box: Box) -> None:
        """Start following `box` in the RGB (H, W, 3) uint8 `image`."""
        if box.width < 2 or box.height < 2:
            raise ValueError(f"cannot track a box with no area: {box}")
        self._health.reset(image, box)
        self._template = self._template_input(image, self._health.last)
        self._online = self._template
        self._best = None
        self._frames = 0

    def update(self, image: np.ndarray) -> TrackResult:
        """Search around the last accepted box; ok=False on a low score or an implausible box."""
        if self._template is None or self._online is None:
            raise RuntimeError("OnnxTracker.update called before init")
        f, sig = self._f, self._f.signature
        crop = crop_square(image, self._health.last, f.search_factor, sig.search_size)
        feeds = {sig.template: self._template, sig.search: to_input(crop.patch)}
        if sig.online is not None:
            feeds[sig.online] = self._online
        names = [sig.box] + ([sig.score] if sig.score else [])
        outputs = f.session.run(names, feeds)
        rows = np.asarray(outputs[0], dtype=np.float64).reshape(-1, 4)
        if rows.shape[0] == 0 or not np.all(np.isfinite(rows)):
            return self._health.lost()
        cx, cy, w, h = rows.mean(axis=0) * sig.search_size / crop.scale
        score = 1.0
        if sig.score is not None:
            score = float(np.asarray(outputs[1], dtype=np.float64).reshape(-1)[0])
            if f.score_activation == "sigmoid":
                score = 1.0 / (1.0 + math.exp(-score))
        if not score >= f.min_score:
            return self._health.lost()
        candidate = Box(
            crop.x0 + cx - w / 2, crop.y0 + cy - h / 2, crop.x0 + cx + w / 2, crop.y0 + cy + h / 2
        )
        result = self._health.check(image, candidate, confidence=min(score, 1.0))
        if result.ok and sig.online is not None:
            self._refresh_online(image, result.box, score)
        return result

    def _refresh_online(self, image: np.ndarray, box: Box, score: float) -> None:
        """MixFormerV2's online template: the best-scoring crop of each `update_interval` frames."""
        self._frames += 1
        if score > 0.5 and (self._best is None or score > self._best[0]):
            self._best = (score, self._template_input(image, box))
        if self._frames % self._f.update_interval == 0 and self._best is not None:
            self._online = self._best[1]
            self._best = None


class OnnxTrackerConfig(Settings):
    """`[onnx_tracker]`: a MixFormerV2-style tracker exported to ONNX (template + search crops ->
    box, score). `OnnxTrackerFactory(**config.model_dump(), threads=...)` builds it."""

    model: Path = Field(DEFAULT_MODEL, description="The exported tracker.")
    template_size: int = Field(112, ge=8, description="Template crop side (static inputs win).")
    search_size: int = Field(224, ge=8, description="Search crop side (static inputs win).")
    template_factor: float = Field(2.0, gt=0, description="Template crop / box side.")
    search_factor: float = Field(4.5, gt=0, description="Search crop / box side.")
    min_score: float = Field(0.3, ge=0, le=1, description="A lower score counts as lost.")
    score_activation: Literal["none", "sigmoid"] = Field(
        "none", description="sigmoid when the model outputs a logit."
    )
    update_interval: int = Field(200, ge=1, description="Frames between online-template updates.")
    device: Device = "cpu"


class OnnxTrackerFactory:
    """Loads the `.onnx` file once; each call makes a tracker for one object sharing the session.

    `model`: the exported tracker (default `checkpoints/mixformerv2_small.onnx`); sizes and factors
    as in the module docstring; `min_score`: a lower model score counts as lost; `update_interval`:
    frames between online-template refreshes (3-input models only); health parameters as for
    `OpenCVTrackerFactory`. Raises ModelError when the file is missing or does not fit.
    """

    name = "onnx"

    def __init__(
        self,
        model: str | Path = DEFAULT_MODEL,
        *,
        template_size: int = 112,
        search_size: int = 224,
        template_factor: float = 2.0,
        search_factor: float = 4.5,
        min_score: float = 0.3,
        score_activation: Literal["none", "sigmoid"] = "none",
        update_interval: int = 200,
        max_area_ratio: float = 4.0,
        max_jump: float = 0.5,
        min_appearance: float = 0.35,
        device: Device = "cpu",
        threads: int | None = None,
    ) -> None:
        if min(template_size, search_size) < 8 or min(template_factor, search_factor) <= 0:
            raise ValueError("template/search sizes must be >= 8 and factors > 0")
        if score_activation not in ("none", "sigmoid"):
            raise ValueError(
                f"score_activation must be 'none' or 'sigmoid', got {score_activation!r}"
            )
        if update_interval < 1:
            raise ValueError(f"update_interval must be >= 1, got {update_interval}")
        TrackHealth(  # validate the health parameters now, not at the first init
            max_area_ratio=max_area_ratio, max_jump=max_jump, min_appearance=min_appearance
        )
        self.model = require_file(model, "ONNX tracker model", "onnx_tracker.model")
        self.template_factor = template_factor
        self.search_factor = search_factor
        self.min_score = min_score
        self.score_activation = score_activation
        self.update_interval = update_interval
        self.max_area_ratio = max_area_ratio
        self.max_jump = max_jump
        self.min_appearance = min_appearance
        self.session = onnx_session(
            self.model, device=device, threads=threads, what="ONNX tracker model"
        )
        self.signature = read_signature(self.session, template_size, search_size)

    def __call__(self) -> OnnxTracker:
        return OnnxTracker(self)
