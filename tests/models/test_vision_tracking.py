"""The ONNX tracker backend, run on tiny models of MixFormerV2's interface exported to ONNX here.

No MixFormerV2 weights exist on this machine, so the tests export a small torch module with the
same inputs and outputs (templates + search crop in, normalised cxcywh box + score out) whose
"learned" part is a fixed colour detector: it finds the red patch in the search crop by weighted
pixel moments. That makes the box meaningful, so the tests check the whole path a user's file
takes: ONNX Runtime session, input discovery, cropping, normalisation, mapping the box back to
image pixels, the score threshold and the shared health checks.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from models.tracking.base import TrackResult
from models.tracking.health import TrackHealth
from models.tracking.onnx_tracker import OnnxTrackerFactory, crop_square, read_signature
from models.tracking.standin import INPUT_NAMES, OUTPUT_NAMES, export_tracker, mixformer_v2_s
from models.types import Box, ModelError
from tests.synthetic import SyntheticObject, render_scene, textured_background

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the legacy ONNX exporter
pytest.importorskip("onnxruntime")
torch.set_num_threads(1)

TEMPLATE, SEARCH = 32, 64  # small crops keep the test fast; the backend reads them from the file
BACKGROUND = textured_background(160, 200, seed=3)
PATCH = (48, 36)


class RedPatchTracker(torch.nn.Module):
    """MixFormer-like interface; finds the reddest region by moments (exact for rectangles)."""

    def __init__(self, online: bool, logit: bool) -> None:
        super().__init__()
        self.online, self.logit = online, logit
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def _weights(self, image: torch.Tensor) -> torch.Tensor:
        rgb = image * self.std + self.mean
        redness = rgb[:, 0] - torch.maximum(rgb[:, 1], rgb[:, 2])
        return torch.sigmoid((redness - 80.0) / 4.0)  # (1, S, S); the table stays below ~50

    def _forward(self, template: torch.Tensor, search: torch.Tensor) -> tuple[torch.Tensor, ...]:
        w = self._weights(search)[0]
        side = search.shape[-1]
        coords = (torch.arange(side, dtype=torch.float32) + 0.5) / side
        total = w.sum() + 1e-6
        cx = (w.sum(0) * coords).sum() / total
        cy = (w.sum(1) * coords).sum() / total
        width = torch.sqrt(12 * (w.sum(0) * (coords - cx) ** 2).sum() / total)
        height = torch.sqrt(12 * (w.sum(1) * (coords - cy) ** 2).sum() / total)
        # same object seen at the search scale vs the template scale (factors 4.5 and 2.0)
        expected = self._weights(template).sum() * ((SEARCH / 4.5) / (TEMPLATE / 2.0)) ** 2
        score = torch.clamp(total / (expected + 1e-6), 0.0, 1.0).reshape(1, 1)
        if self.logit:
            score = torch.logit(score.clamp(1e-4, 1 - 1e-4))
        return torch.stack([cx, cy, width, height]).reshape(1, 4), score

    def forward(self, *images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # with an online template, both templates count (else the exporter drops the input)
        template = (images[0] + images[1]) / 2 if self.online else images[0]
        return self._forward(template, images[-1])


def _export(path: Path, *, online: bool, logit: bool = False, names: bool = True) -> Path:
    input_names = ["img_t", "img_ot", "img_search"] if online else ["template", "search"]
    if not names:
        input_names = [f"input_{i}" for i in range(len(input_names))]
    return export_tracker(
        RedPatchTracker(online, logit),
        path,
        TEMPLATE,
        SEARCH,
        online=online,
        input_names=input_names,
        output_names=OUTPUT_NAMES if names else ("out_0", "out_1"),
    )


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("onnx_trackers")
    return {
        "online": _export(folder / "online.onnx", online=True),
        "plain": _export(folder / "plain.onnx", online=False, logit=True, names=False),
    }


def _frame(x: float, y: float, visible: bool = True) -> np.ndarray:
    objects = [
        SyntheticObject(
            "patch", (round(x), round(y), round(x) + PATCH[0], round(y) + PATCH[1]), (220, 60, 40)
        )
    ]
    return render_scene(objects if visible else [], size=(160, 200), background=BACKGROUND).rgb


def _box(x: float, y: float) -> Box:
    return Box(round(x), round(y), round(x) + PATCH[0], round(y) + PATCH[1])


def test_crop_maps_back_to_image_pixels() -> None:
    image = np.zeros((100, 120, 3), np.uint8)
    image[40:60, 50:80] = 255
    crop = crop_square(image, Box(50, 40, 80, 60), factor=2.0, size=64)
    ys, xs = np.nonzero(crop.patch[..., 0] > 127)
    back = Box(
        crop.x0 + xs.min() / crop.scale,
        crop.y0 + ys.min() / crop.scale,
        crop.x0 + (xs.max() + 1) / crop.scale,
        crop.y0 + (ys.max() + 1) / crop.scale,
    )
    assert back.iou(Box(50, 40, 80, 60)) > 0.9
    # outside the image the crop is zero padding, not clamped edge pixels
    corner = crop_square(image, Box(0, 0, 20, 20), factor=4.0, size=32)
    assert corner.patch[0, 0].sum() == 0


@pytest.mark.parametrize("kind", ["online", "plain"])
def test_follows_a_moving_patch(models: dict[str, Path], kind: str) -> None:
    factory = OnnxTrackerFactory(
        models[kind],
        score_activation="sigmoid" if kind == "plain" else "none",
        update_interval=3,
        threads=1,
    )
    assert factory.signature.template_size == TEMPLATE
    assert factory.signature.search_size == SEARCH
    tracker = factory()
    tracker.init(_frame(40, 50), _box(40, 50))
    for step in range(1, 16):
        x, y = 40 + 5 * step, 50 + 2 * math.sin(step)
        result = tracker.update(_frame(x, y))
        assert result.ok, f"lost at step {step}"
        assert result.box.iou(_box(x, y)) > 0.8, (step, result.box)
        assert 0.0 < result.score <= 1.0
        assert (
            0 <= result.box.x0 < result.box.x1 <= 200 and 0 <= result.box.y0 < result.box.y1 <= 160
        )


def test_low_score_is_lost_then_recovers_in_place(models: dict[str, Path]) -> None:
    """The arm covers the object: the model's score drops, the track is lost but not moved."""
    tracker = OnnxTrackerFactory(models["online"], threads=1)()
    tracker.init(_frame(60, 50), _box(60, 50))
    hidden = tracker.update(_frame(60, 50, visible=False))
    assert not hidden.ok and hidden.score == 0.0
    assert hidden.box == _box(60, 50)
    back = tracker.update(_frame(62, 50))
    assert back.ok and back.box.iou(_box(62, 50)) > 0.8


def test_health_rejects_a_confident_jump(models: dict[str, Path]) -> None:
    """A box far away (a distractor) fails the shared geometry check whatever the model's score."""

    def update(max_jump: float) -> TrackResult:
        factory = OnnxTrackerFactory(
            models["online"], threads=1, search_factor=8.0, min_score=0.0, max_jump=max_jump
        )
        tracker = factory()
        tracker.init(_frame(40, 40), _box(40, 40))
        return tracker.update(_frame(80, 70))

    rejected = update(max_jump=0.3)
    assert not rejected.ok and rejected.box == _box(40, 40)
    accepted = update(max_jump=2.0)  # the same proposal passes a looser limit
    assert accepted.ok and accepted.box.iou(_box(80, 70)) > 0.7


def test_signature_by_name_or_size(models: dict[str, Path]) -> None:
    online = OnnxTrackerFactory(models["online"]).signature
    assert (online.template, online.online, online.search) == ("img_t", "img_ot", "img_search")
    assert (online.box, online.score) == ("pred_boxes", "pred_scores")
    plain = OnnxTrackerFactory(models["plain"]).signature
    assert (plain.template, plain.online, plain.search) == ("input_0", None, "input_1")
    assert (plain.box, plain.score) == ("out_0", "out_1")


def test_wrong_interface_is_one_line(tmp_path: Path) -> None:
    class One(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean().reshape(1, 1)

    path = tmp_path / "one.onnx"
    torch.onnx.export(One(), (torch.zeros(1, 3, 8, 8),), str(path), opset_version=17, dynamo=False)
    with pytest.raises(ModelError, match="2 or 3 image inputs") as info:
        OnnxTrackerFactory(path)
    assert "\n" not in str(info.value)


def test_missing_model_names_the_file_and_key(tmp_path: Path) -> None:
    missing = tmp_path / "mixformer.onnx"
    with pytest.raises(ModelError) as info:
        OnnxTrackerFactory(missing)
    message = str(info.value)
    assert str(missing) in message and "onnx_tracker.model" in message and "\n" not in message


def test_track_health_validates_like_the_opencv_factory(models: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="max_area_ratio"):
        TrackHealth(max_area_ratio=1.0)
    with pytest.raises(ValueError, match="min_appearance"):
        OnnxTrackerFactory(models["online"], min_appearance=1.5)


def test_read_signature_rejects_non_image_inputs(models: dict[str, Path]) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(str(models["plain"]), providers=["CPUExecutionProvider"])
    signature = read_signature(session, 112, 224)
    assert signature.search_size == SEARCH  # static sizes in the file win over the defaults


def test_the_mixformer_standin_is_what_the_backend_and_benchmarks_load(tmp_path: Path) -> None:
    """The one MixFormerV2-S-sized stand-in (models.tracking.standin): its size at the defaults
    (what the modules tables' notes report) and, at a test's size, a file the backend reads by
    MixFormerV2's names and tracks with (random weights: the box is in the frame, not right)."""
    full = mixformer_v2_s(112, 224)
    assert sum(p.numel() for p in full.parameters()) / 1e6 == pytest.approx(14.9, abs=0.05)
    tiny = mixformer_v2_s(TEMPLATE, SEARCH, dim=32, depth=1, heads=2)
    factory = OnnxTrackerFactory(export_tracker(tiny, tmp_path / "standin.onnx", TEMPLATE, SEARCH))
    sig = factory.signature
    assert (sig.template, sig.online, sig.search) == INPUT_NAMES
    assert (sig.template_size, sig.search_size, sig.box, sig.score) == (
        TEMPLATE,
        SEARCH,
        *OUTPUT_NAMES,
    )
    tracker = factory()
    tracker.init(_frame(60, 50), _box(60, 50))
    result = tracker.update(_frame(64, 52))
    assert isinstance(result, TrackResult) and 0.0 <= result.score <= 1.0
    if result.ok:
        box = result.box
        assert 0 <= box.x0 < box.x1 <= 200 and 0 <= box.y0 < box.y1 <= 160
